import sys

from fencekit.cli import main

sys.exit(main())
