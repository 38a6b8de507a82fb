"""Disk I/O probe: an O_DIRECT read (and optional heartbeat write).

Hung storage shows up as a read that never returns, which no page cache
may hide: the block is read with ``O_DIRECT`` into a page-aligned buffer
(an anonymous ``mmap``), in a thread, under a deadline. With a heartbeat
offset the probe also writes a block carrying a fresh nonce with
``O_DIRECT | O_DSYNC`` and reads it back.
"""

from __future__ import annotations

import mmap
import os
import secrets
import struct
import time
from collections.abc import Mapping
from typing import Any

from fencekit.probes._options import Options
from fencekit.probes.base import (
    ProbeOutcome,
    ProbeTimeoutError,
    in_thread,
    outcome,
)

__all__ = ["DiskProbe", "from_options"]

_HEARTBEAT_MAGIC = b"FKHB"
_HEARTBEAT = struct.Struct("!4sd16s")


class DiskProbe:
    """Read one block with O_DIRECT; optionally write and re-read one.

    Args:
        path: a block device or a file (on a file system that supports
            O_DIRECT: not tmpfs).
        offset: where to read, a multiple of ``block_size``.
        block_size: bytes to read, a multiple of 512.
        heartbeat_offset: where to write the heartbeat block; no write
            when None. It must not hold data: it is overwritten.
        timeout: deadline in seconds.

    Raises:
        ConfigError: offsets or sizes are not aligned.
    """

    kind = "disk"

    def __init__(
        self,
        path: str,
        *,
        offset: int = 0,
        block_size: int = 4096,
        heartbeat_offset: int | None = None,
        timeout: float = 5.0,
    ) -> None:
        from fencekit.errors import ConfigError

        # O_DIRECT needs offsets and lengths aligned to the logical
        # block size (512 or 4096); 512 is the least any device accepts.
        if block_size < 512 or block_size % 512:
            raise ConfigError("must be a multiple of 512", where="block_size")
        for name, value in (
            ("offset", offset),
            ("heartbeat_offset", heartbeat_offset),
        ):
            if value is not None and (value < 0 or value % block_size):
                raise ConfigError(
                    f"must be a multiple of block_size ({block_size})",
                    where=name,
                )
        self.path = path
        self.target = path
        self.offset = offset
        self.block_size = block_size
        self.heartbeat_offset = heartbeat_offset
        self.timeout = timeout

    async def run(self) -> ProbeOutcome:
        """Do the I/O within the deadline; never raises."""
        started = time.monotonic()
        try:
            reason = await in_thread(self._io, self.timeout)
        except ProbeTimeoutError as exc:
            reason = f"I/O hung: {exc}"
        except OSError as exc:
            reason = f"{exc.strerror or exc}"
        return outcome(self, started, not reason, reason)

    def _io(self) -> str:
        flags = os.O_RDONLY if self.heartbeat_offset is None else os.O_RDWR
        fd = os.open(self.path, flags | os.O_DIRECT | os.O_CLOEXEC)
        try:
            with mmap.mmap(-1, self.block_size) as buffer:
                got = os.preadv(fd, [buffer], self.offset)
                if got != self.block_size:
                    return f"short read: {got} of {self.block_size} bytes"
                if self.heartbeat_offset is not None:
                    return self._heartbeat(fd, buffer)
        finally:
            os.close(fd)
        return ""

    def _heartbeat(self, fd: int, buffer: mmap.mmap) -> str:
        assert self.heartbeat_offset is not None
        nonce = secrets.token_bytes(16)
        buffer.seek(0)
        buffer.write(b"\0" * self.block_size)
        buffer.seek(0)
        buffer.write(_HEARTBEAT.pack(_HEARTBEAT_MAGIC, time.time(), nonce))
        written = os.pwritev(fd, [buffer], self.heartbeat_offset)
        if written != self.block_size:
            return f"short heartbeat write: {written} bytes"
        os.fdatasync(fd)

        buffer.seek(0)
        buffer.write(b"\0" * self.block_size)
        got = os.preadv(fd, [buffer], self.heartbeat_offset)
        magic, _, echoed = _HEARTBEAT.unpack_from(buffer, 0)
        if got != self.block_size or magic != _HEARTBEAT_MAGIC:
            return "heartbeat block read back differs"
        if echoed != nonce:
            return "heartbeat read back an older write"
        return ""


def from_options(table: Mapping[str, Any], where: str = "") -> DiskProbe:
    """Build a :class:`DiskProbe` from an option table.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
    """
    opts = Options(table, where)
    with opts.located():
        probe = DiskProbe(
            opts.text("path"),
            offset=opts.integer("offset", 0),
            block_size=opts.integer("block_size", 4096, minimum=512),
            heartbeat_offset=opts.integer("heartbeat_offset", None),
            timeout=opts.number("timeout", 5.0, minimum=0.001),
        )
    opts.finish()
    return probe
