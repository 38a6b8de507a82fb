"""Credentials: where they come from, and a type that will not print.

A :class:`Secret` masks itself in ``str``, ``repr`` and formatting. Its
value is handed out only by :meth:`Secret.reveal`, at the moment a driver
puts it on the wire. Secrets are read from a file, an environment variable
or the output of a command, and never from a command line.
"""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Final

from fencekit.errors import SecretError

__all__ = ["MASK", "Secret", "from_command", "from_env", "from_file"]

MASK: Final = "********"

_COMMAND_TIMEOUT = 10.0
# A secret is one line; reading more than this from a file or command
# means a wrong path (a disk, /dev/zero) and must not exhaust memory.
_MAX_BYTES = 64 * 1024


class Secret:
    """A credential that masks itself wherever it could be printed.

    Args:
        value: the secret text.
        source: where it came from, for messages (never the value).
    """

    __slots__ = ("_source", "_value")

    def __init__(self, value: str, *, source: str = "value") -> None:
        self._value = value
        self._source = source

    @property
    def source(self) -> str:
        """Where the secret came from, safe to print."""
        return self._source

    def reveal(self) -> str:
        """Return the secret text, for the wire only."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK}, source={self._source!r})"

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> str:
        raise TypeError("a Secret cannot be pickled")


def _first_line(text: str) -> str:
    lines = text.splitlines()
    return lines[0] if lines else ""


def _decode(raw: bytes, what: str) -> str:
    """The text of ``raw``, which must hold a first line within limits.

    Raises:
        SecretError: no line ends within the size limit.
    """
    if len(raw) > _MAX_BYTES and b"\n" not in raw[:_MAX_BYTES]:
        raise SecretError(f"{what}: no line within {_MAX_BYTES} bytes")
    return raw[:_MAX_BYTES].decode("utf-8")


def from_file(path: str | os.PathLike[str]) -> Secret:
    """Read a secret from the first line of a file.

    A file that group or others can read still works, with a warning:
    the secret may already be known to other accounts on the machine.

    Raises:
        SecretError: the file cannot be read or its first line is empty.
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        with file.open("rb") as stream:
            raw = stream.read(_MAX_BYTES + 1)
        text = _decode(raw, f"credentials file {file}")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or type(exc).__name__
        raise SecretError(
            f"cannot read credentials file {file}: {reason}"
        ) from exc

    if mode & (stat.S_IRGRP | stat.S_IROTH):
        from fencekit._log import get_logger

        get_logger(__name__).warning(
            "credentials_file_readable_by_others",
            path=str(file),
            mode=oct(stat.S_IMODE(mode)),
        )

    value = _first_line(text)
    if not value:
        raise SecretError(f"credentials file {file} is empty")
    return Secret(value, source=f"file {file}")


def from_env(name: str) -> Secret:
    """Read a secret from an environment variable.

    Raises:
        SecretError: the variable is unset or empty.
    """
    value = os.environ.get(name, "")
    if not value:
        raise SecretError(f"environment variable {name} is unset or empty")
    return Secret(value, source=f"environment variable {name}")


def from_command(command: str, *, timeout: float = _COMMAND_TIMEOUT) -> Secret:
    """Run a command (no shell) and take the first line it prints.

    The command line names where the secret is kept, never the secret.

    Raises:
        SecretError: the command fails, times out or prints nothing.
    """
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise SecretError(f"cannot parse password command: {exc}") from exc
    if not argv:
        raise SecretError("password command is empty")

    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SecretError(
            f"password command {argv[0]} did not finish in {timeout:g} s"
        ) from exc
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretError(
            f"password command {argv[0]} failed: {reason}"
        ) from exc

    if done.returncode != 0:
        raise SecretError(
            f"password command {argv[0]} exited {done.returncode}"
        )
    value = _first_line(done.stdout.decode("utf-8", "replace"))
    if not value:
        raise SecretError(f"password command {argv[0]} printed nothing")
    return Secret(value, source=f"command {argv[0]}")
