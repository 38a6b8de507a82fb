"""The journal: a durable, append-only record of fence operations.

One JSON object per line, one line per event of a fence:

- ``requested``: a fence of a node was asked for;
- ``delay``: the node's race delay is being waited out;
- ``attempt``: one device of one level was tried, with its outcome;
- ``outcome``: the fence's final outcome.

Every record carries ``time`` (UTC, ISO 8601), ``event``, ``op`` (the
fence operation's id, shared by its records), ``node``, ``action``,
``pid`` and ``host``. A record is written with one ``write`` under an
exclusive ``flock`` and made durable with ``fsync`` before
:meth:`Journal.append` returns, so an outcome is on disk before any
caller sees it.

A crash can leave the last line torn (written only in part). Reading
skips any line that is not a whole JSON object, with a warning, and goes
on; the next append first ends the torn line, so it never swallows a
whole record. Records hold names, addresses, states and reasons, never a
credential.

TODO: the journal is never rotated; it grows by about 1 KB per fence.
Rotating it needs a rename under the same ``flock`` (or logrotate's
``copytruncate``, which is safe with ``O_APPEND`` writers).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import fcntl
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from fencekit._log import get_logger
from fencekit.errors import ConfigError, FencekitError

__all__ = ["Journal", "ReadResult", "read"]


@dataclasses.dataclass(frozen=True)
class ReadResult:
    """The records of a journal, and how many lines were skipped.

    Attributes:
        records: the records in the order they were written.
        skipped: line numbers that were not whole records (torn).
    """

    records: tuple[dict[str, Any], ...]
    skipped: tuple[int, ...] = ()


class Journal:
    """An append-only journal file shared by every fencer on a machine.

    Args:
        path: the journal file; its directory is created if missing.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._host = socket.gethostname()
        self._lock = threading.Lock()

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record and fsync it; return the record written.

        Raises:
            FencekitError: the record could not be written and synced.
        """
        record = {
            "time": _now(),
            "event": event,
            **fields,
            "pid": os.getpid(),
            "host": self._host,
        }
        line = json.dumps(record, sort_keys=True, default=str) + "\n"
        with self._lock:
            try:
                self._write(line.encode())
            except OSError as exc:
                raise FencekitError(
                    f"cannot write the journal {self.path}: {exc.strerror}"
                ) from exc
        return record

    async def record(self, event: str, **fields: Any) -> dict[str, Any]:
        """:meth:`append` in a thread, so fsync never stalls the loop.

        Raises:
            FencekitError: the record could not be written and synced.
        """
        return await asyncio.to_thread(self.append, event, **fields)

    def read(self) -> ReadResult:
        """Read every whole record; see :func:`read`."""
        return read(self.path)

    def _write(self, data: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not _ends_whole(fd):
                # A writer died mid-record: end its torn line so that it
                # stays one skipped line and this record stays whole.
                data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def _ends_whole(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="microseconds")


def read(
    path: str | os.PathLike[str], *, node: str | None = None
) -> ReadResult:
    """Read a journal, skipping torn lines with a warning.

    Args:
        path: the journal file; a missing file has no records.
        node: keep only the records of this node.

    Raises:
        ConfigError: the file exists but cannot be read.
    """
    file = Path(path)
    try:
        if not stat.S_ISREG(file.stat().st_mode):
            # /dev/zero or a disk named by mistake: never read it all.
            raise ConfigError(
                "the journal is not a regular file", where=str(file)
            )
        raw = file.read_bytes()
    except FileNotFoundError:
        return ReadResult(())
    except OSError as exc:
        raise ConfigError(
            f"cannot read the journal: {exc.strerror}", where=str(file)
        ) from exc

    records: list[dict[str, Any]] = []
    skipped: list[int] = []
    for number, record in _records(raw):
        if record is None:
            skipped.append(number)
        elif node is None or record.get("node") == node:
            records.append(record)

    if skipped:
        get_logger(__name__).warning(
            "journal_lines_skipped", path=str(file), lines=skipped
        )
    return ReadResult(tuple(records), tuple(skipped))


def _records(raw: bytes) -> Iterator[tuple[int, dict[str, Any] | None]]:
    for number, line in enumerate(raw.split(b"\n"), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            yield number, None
            continue
        is_record = isinstance(value, Mapping) and "event" in value
        yield number, dict(value) if is_record else None
