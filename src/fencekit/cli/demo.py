"""``fencekit demo``: a whole takeover on an embedded lab."""

from __future__ import annotations

import argparse
from typing import Any

from fencekit.cli import _common


def register(sub: Any) -> None:
    """Add ``demo`` to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run a takeover on an embedded lab on loopback",
        description=(
            "Start two nodes (BMC and web service each) and the agent on"
            " loopback, stop node-b's service, and watch the agent detect"
            " it and the fencer fence node-b and verify its power off."
        ),
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="leave the lab up after the scenario, until Ctrl-C",
    )
    parser.add_argument(
        "--simulated-bmc",
        action="store_true",
        help="use fencekit's simulated BMC even if ipmi_sim is installed",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the demo; exit 0 when node-b was fenced and verified off."""
    from fencekit.demo import run_demo
    from fencekit.logging import configure

    # The timeline tells the story; the log adds errors only, unless -v.
    configure(verbosity=args.verbose, quiet=args.verbose == 0)

    result = run_demo(
        keep_running=args.keep_running, simulated_bmc=args.simulated_bmc
    )
    return _common.EXIT_OK if result.fenced else _common.EXIT_FAILED
