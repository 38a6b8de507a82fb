"""Linux SG_IO transport: one ioctl per command on a block or sg device.

The production path for local disks. The request is a packed
``struct sg_io_hdr`` (``<scsi/sg.h>``, interface ``'S'``) whose pointers
refer to buffers owned by this module for the length of the call. The
ioctl blocks, so it runs in a worker thread. The ``ioctl`` callable is
injectable so that recorded command/response pairs can stand in for a
kernel that has no SCSI disks.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable
from typing import Any, Final

from fencekit.errors import (
    DeviceTimeoutError,
    ProtocolError,
    UnreachableError,
)
from fencekit.storage.spc import CommandResult

__all__ = ["HEADER", "SG_IO", "SgioTransport", "pack_header", "unpack_reply"]

SG_IO: Final = 0x2285
SG_DXFER_NONE: Final = -1
SG_DXFER_TO_DEV: Final = -2
SG_DXFER_FROM_DEV: Final = -3
SENSE_MAX: Final = 252

# struct sg_io_hdr on LP64: interface_id, dxfer_direction, cmd_len,
# mx_sb_len, iovec_count, dxfer_len, dxferp, cmdp, sbp, timeout, flags,
# pack_id, usr_ptr, status, masked_status, msg_status, sb_len_wr,
# host_status, driver_status, resid, duration, info (88 bytes).
HEADER: Final = struct.Struct("=iiBBHIQQQIIi4xQBBBBHHiII4x")

# host_status values (Linux scsi.h) that mean the path itself failed.
_DID_NO_CONNECT, _DID_TIME_OUT = 0x01, 0x03
# driver_status: DRIVER_SENSE only says that sense data is present.
_DRIVER_SENSE: Final = 0x08
_DRIVER_TIMEOUT: Final = 0x06

Ioctl = Callable[[int, int, bytearray], Any]


def pack_header(
    cdb_address: int,
    cdb_length: int,
    direction: int,
    data_address: int,
    data_length: int,
    sense_address: int,
    timeout_ms: int,
) -> bytearray:
    """A packed ``sg_io_hdr`` asking for one command."""
    return bytearray(
        HEADER.pack(
            ord("S"),
            direction,
            cdb_length,
            SENSE_MAX,
            0,
            data_length,
            data_address,
            cdb_address,
            sense_address,
            timeout_ms,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        )
    )


def unpack_reply(header: bytes | bytearray) -> dict[str, int]:
    """The output fields of a ``sg_io_hdr`` after the ioctl."""
    fields = HEADER.unpack(bytes(header))
    names = (
        "status", "masked_status", "msg_status", "sb_len_wr",
        "host_status", "driver_status", "resid", "duration", "info",
    )  # fmt: skip
    return dict(zip(names, fields[13:], strict=True))


def _kernel_ioctl(fd: int, request: int, buffer: bytearray) -> Any:
    return fcntl.ioctl(fd, request, buffer, True)


# TODO: never run against a kernel SCSI device here (this machine has
# none); the packing and the status mapping are tested on recorded tgtd
# pairs replayed through the ioctl, not on a real disk.
class SgioTransport:
    """SG_IO on a local block (``/dev/sdb``) or sg (``/dev/sg2``) device.

    Args:
        path: the device node.
        ioctl: the ioctl to call (recorded pairs in tests).
        opener: opens the path, returning a descriptor.
    """

    def __init__(
        self,
        path: str,
        *,
        ioctl: Ioctl = _kernel_ioctl,
        opener: Callable[[str], int] | None = None,
    ) -> None:
        self.device = path
        self._ioctl = ioctl
        self._opener = opener or _open
        self._fd: int | None = None

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        timeout: float,
    ) -> CommandResult:
        """Send one command with SG_IO (see ``ScsiTransport``).

        Raises:
            UnreachableError: the device cannot be opened, or the path
                to it failed.
            DeviceTimeoutError: the command timed out.
            ProtocolError: the kernel refused the request.
        """
        return await asyncio.to_thread(
            self.execute_sync, cdb, data_out, data_in, timeout
        )

    def execute_sync(
        self, cdb: bytes, data_out: bytes, data_in: int, timeout: float
    ) -> CommandResult:
        """:meth:`execute` for a caller already in a thread."""
        if self._fd is None:
            self._fd = self._opener(self.device)
        cdb_buffer = ctypes.create_string_buffer(cdb, len(cdb))
        sense = ctypes.create_string_buffer(SENSE_MAX)
        direction, length = SG_DXFER_NONE, 0
        if data_out:
            data = ctypes.create_string_buffer(data_out, len(data_out))
            direction, length = SG_DXFER_TO_DEV, len(data_out)
        else:
            data = ctypes.create_string_buffer(max(data_in, 1))
            if data_in:
                direction, length = SG_DXFER_FROM_DEV, data_in
        header = pack_header(
            ctypes.addressof(cdb_buffer), len(cdb), direction,
            ctypes.addressof(data) if length else 0, length,
            ctypes.addressof(sense), max(1, int(timeout * 1000)),
        )  # fmt: skip

        try:
            self._ioctl(self._fd, SG_IO, header)
        except OSError as exc:
            raise _os_error(self.device, exc) from exc

        return self._reply(unpack_reply(header), data, sense, length)

    def _reply(
        self, reply: dict[str, int], data: Any, sense: Any, length: int
    ) -> CommandResult:
        host, driver = reply["host_status"], reply["driver_status"]
        if host == _DID_TIME_OUT or driver & 0x0F == _DRIVER_TIMEOUT:
            raise DeviceTimeoutError(
                f"{self.device}: SCSI command timed out", device=self.device
            )
        if host != 0:
            raise UnreachableError(
                f"{self.device}: path failed (host status {host:#x})",
                device=self.device,
            )
        if driver & ~_DRIVER_SENSE & 0xFF:
            raise ProtocolError(
                f"{self.device}: driver status {driver:#x}",
                device=self.device,
            )
        received = 0
        if length and reply["masked_status"] == 0 and reply["status"] == 0:
            received = max(0, min(length, length - reply["resid"]))
        sense_length = min(reply["sb_len_wr"], SENSE_MAX)
        return CommandResult(
            status=reply["status"] & 0xFF,
            data=data.raw[:received],
            sense=sense.raw[:sense_length],
        )

    async def close(self) -> None:
        """Close the device; safe to call twice."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UnreachableError(
            f"{path}: cannot open: {exc.strerror}", device=path
        ) from exc


def _os_error(device: str, exc: OSError) -> Exception:
    if exc.errno in (errno.ENOTTY, errno.EINVAL):
        return ProtocolError(
            f"{device}: not a SCSI device (SG_IO refused: {exc.strerror})",
            device=device,
        )
    if exc.errno == errno.ETIMEDOUT:
        return DeviceTimeoutError(f"{device}: SG_IO timed out", device=device)
    return UnreachableError(f"{device}: SG_IO: {exc.strerror}", device=device)
