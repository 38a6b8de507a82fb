"""The ``fencekit`` command.

Exit codes: 0 success, 1 the operation failed (not verified, device
unreachable...), 2 bad input (arguments, configuration, credentials),
130 interrupted. Errors are one line on standard error, never a
traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from fencekit.cli import (
    _common,
    agent,
    demo,
    fence,
    install,
    power,
    probe,
    storage,
)

__all__ = ["main"]

_COMMANDS = (power, fence, install, probe, agent, demo, storage)


class _Parser(argparse.ArgumentParser):
    """No abbreviated options: a fencing command must say what it means.

    Every subcommand also takes ``-v``, so that it works after the
    subcommand's name as well as before it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        top = kwargs.pop("top", False)
        super().__init__(*args, **kwargs)
        if not top:
            self.add_argument(
                "-v",
                "--verbose",
                action="count",
                default=argparse.SUPPRESS,
                help="log more (-v info, -vv debug) to standard error",
            )


def build_parser() -> argparse.ArgumentParser:
    """Return the parser for every ``fencekit`` subcommand."""
    parser = _Parser(
        top=True,
        prog="fencekit",
        description="Verified fencing and health checks for HA clusters.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log more (-v info, -vv debug) to standard error",
    )
    parser.add_argument(
        "--version", action=_VersionAction, help="print the version"
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    sub.required = True
    for module in _COMMANDS:
        module.register(sub)
    return parser


class _VersionAction(argparse.Action):
    """Print the version; looked up only when asked (it costs 25 ms)."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, **kw: object
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kw.get("help"))  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        print(f"fencekit {_version()}")
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fencekit")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _common.run(args)
    except BrokenPipeError:
        # The reader went away (`fencekit history | head`): not an error
        # worth a traceback.
        _drop_stdout()
        return _common.EXIT_FAILED
    except OSError as exc:
        # Output that cannot be written (a full disk): one line.
        _drop_stdout()
        _common.error(f"cannot write the output: {exc.strerror or exc}")
        return _common.EXIT_FAILED


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so Python's final flush cannot raise."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
