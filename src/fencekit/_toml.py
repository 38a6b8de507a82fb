"""Reading a TOML configuration file, with one-line errors."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any

from fencekit.errors import ConfigError

# No configuration is this large; a larger "file" is a wrong path (a
# disk, /dev/zero) that must not be read into memory.
_MAX_BYTES = 16 * 1024 * 1024


def read(file: Path) -> dict[str, Any]:
    """The table in ``file``.

    Raises:
        ConfigError: it cannot be read, is not a regular file of a sane
            size, or is not TOML (or not UTF-8); the message names it.
    """
    try:
        with file.open("rb") as stream:
            if not stat.S_ISREG(os.fstat(stream.fileno()).st_mode):
                raise ConfigError("not a regular file", where=str(file))
            raw = stream.read(_MAX_BYTES + 1)
        if len(raw) > _MAX_BYTES:
            raise ConfigError(
                f"larger than {_MAX_BYTES} bytes", where=str(file)
            )
        return tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read: {reason}", where=str(file)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(file)) from exc
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file before parsing it (TOML 1.0:
        # UTF-8 only) and lets the codec's error through.
        raise ConfigError(
            f"not valid TOML: not UTF-8 at byte {exc.start}", where=str(file)
        ) from exc
