"""What every subcommand shares: exit codes, errors, output, secrets."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Final

from fencekit.errors import ConfigError, FencekitError, SecretError
from fencekit.secrets import Secret, from_command, from_env, from_file

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

Handler = Callable[[argparse.Namespace], int]

# A day: no timeout, wait or off time of a fencing command needs more.
_MAX_SECONDS: Final = 86400.0


def run(args: argparse.Namespace) -> int:
    """Configure logging, run the subcommand, turn errors into one line."""
    from fencekit.logging import configure

    configure(verbosity=args.verbose)
    handler: Handler = args.handler
    # SIGTERM stops a command the way Ctrl-C does, so that fences are
    # journalled as interrupted and lab processes are stopped. Commands
    # with their own handling (the agent) install theirs over this one.
    # A process started in the background by a script inherits SIGINT
    # ignored; restore it, or SIGTERM (turned into SIGINT) would be lost.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return handler(args)
    except (ConfigError, SecretError) as exc:
        error(str(exc))
        return EXIT_USAGE
    except FencekitError as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        error("interrupted")
        return EXIT_INTERRUPTED


def _interrupt(signum: int, frame: object) -> None:
    # Turned into SIGINT rather than raised here: inside asyncio.run,
    # SIGINT cancels the main task cleanly (its handlers run), whereas
    # an exception raised from a signal handler can land in any task.
    os.kill(os.getpid(), signal.SIGINT)


def error(message: str) -> None:
    """Print one error line on standard error."""
    line = " ".join(message.split())
    print(f"fencekit: error: {line}", file=sys.stderr)


def emit(data: dict[str, Any], text: str, as_json: bool) -> None:
    """Print one JSON object or the human text on standard output."""
    if as_json:
        print(json.dumps(data, sort_keys=True))
    else:
        print(text)


def add_password_options(
    parser: argparse.ArgumentParser, *, required: bool = True
) -> None:
    """Add the three ways of giving a password (never on argv)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--password-file", metavar="FILE", help="read it from FILE"
    )
    group.add_argument(
        "--password-env", metavar="VAR", help="read it from variable VAR"
    )
    group.add_argument(
        "--password-command",
        metavar="CMD",
        help="run CMD (no shell) and read the first line it prints",
    )


def password(args: argparse.Namespace) -> Secret:
    """Read the password from the source the options name.

    Raises:
        SecretError: the source gave no secret.
    """
    if args.password_file:
        return from_file(args.password_file)
    if args.password_env:
        return from_env(args.password_env)
    if args.password_command:
        return from_command(args.password_command)
    raise SecretError("no password source given")


def positive_float(text: str) -> float:
    """argparse type: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be above zero and at most {_MAX_SECONDS:g}: {text!r}"
        )
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number of seconds, zero or more."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 <= value <= _MAX_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be from 0 to {_MAX_SECONDS:g}: {text!r}"
        )
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a whole number: {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP or UDP port."""
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return value
