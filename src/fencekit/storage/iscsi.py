"""iSCSI transport: libiscsi's C API through ctypes.

fencekit logs in to the target itself, as the initiator name it is
given, and keeps one session per transport. Only the runtime library is
needed (Debian package ``libiscsi7``). libiscsi is blocking and its
context is not thread-safe, so every call for one transport runs on one
dedicated thread.

A persistent reservation registration belongs to the I_T nexus, which
for iSCSI is this session: registering here registers this session, not
the kernel initiator's session of the same host.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import dataclasses
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

from fencekit.errors import (
    ConfigError,
    DeviceTimeoutError,
    ProtocolError,
    UnreachableError,
    UnsupportedError,
)
from fencekit.storage.spc import CommandResult, Status

__all__ = ["IscsiTransport", "IscsiUrl", "parse_url"]

_SESSION_NORMAL: Final = 2
_XFER_NONE, _XFER_READ, _XFER_WRITE = 0, 1, 2

# libiscsi's own status values for commands that never got a SCSI status
# (scsi-lowlevel.h: SCSI_STATUS_CANCELLED, _ERROR, _TIMEOUT).
_CANCELLED: Final = 0x0F000000
_ERROR: Final = 0x0F000001
_TIMEOUT: Final = 0x0F000002

# Slack on top of libiscsi's own timeout before the thread is given up.
_GRACE: Final = 5.0

_URL = re.compile(
    r"^iscsi://(?P<host>\[[0-9a-fA-F:.]+\]|[^/:\[\]]+)(?::(?P<port>\d+))?"
    r"/(?P<target>[^/]+)/(?P<lun>\d+)$"
)


@dataclasses.dataclass(frozen=True)
class IscsiUrl:
    """A parsed ``iscsi://HOST[:PORT]/TARGET-IQN/LUN``."""

    host: str
    port: int
    target: str
    lun: int

    @property
    def portal(self) -> str:
        """``host:port`` as libiscsi takes it."""
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> IscsiUrl:
    """Parse an ``iscsi://`` URL.

    Raises:
        ConfigError: it is malformed, or the port or LUN is out of range.
    """
    match = _URL.match(url.strip())
    if match is None:
        raise ConfigError(
            "not an iSCSI URL (iscsi://HOST[:PORT]/TARGET-IQN/LUN)",
            where=url,
        )
    port = int(match["port"] or 3260)
    lun = int(match["lun"])
    if not 0 < port < 65536:
        raise ConfigError(f"port out of range: {port}", where=url)
    if lun > 0x3FFF:
        raise ConfigError(f"LUN out of range: {lun}", where=url)
    return IscsiUrl(match["host"], port, match["target"], lun)


class _Data(ctypes.Structure):
    """``struct iscsi_data`` and ``struct scsi_data``: size, pointer."""

    _fields_ = (("size", ctypes.c_int), ("data", ctypes.c_void_p))


class _Task(ctypes.Structure):
    """The leading members of ``struct scsi_task`` (libiscsi 1.19
    scsi-lowlevel.h), up to the data-in buffer; the rest is not read."""

    _fields_ = (
        ("status", ctypes.c_int),
        ("cdb_size", ctypes.c_int),
        ("xfer_dir", ctypes.c_int),
        ("expxferlen", ctypes.c_int),
        ("cdb", ctypes.c_ubyte * 16),
        ("residual_status", ctypes.c_int),
        ("residual", ctypes.c_size_t),
        ("sense_error_type", ctypes.c_ubyte),
        ("sense_key", ctypes.c_int),
        ("sense_ascq", ctypes.c_int),
        # Three one-bit fields, bit_pointer and field_pointer: 4 bytes.
        ("sense_tail", ctypes.c_uint32),
        ("datain", _Data),
    )


_LIBRARY: Any = None


def _library() -> Any:
    """Load libiscsi once and declare the functions fencekit calls.

    Raises:
        UnsupportedError: the library is not installed.
    """
    global _LIBRARY
    if _LIBRARY is not None:
        return _LIBRARY
    name = ctypes.util.find_library("iscsi") or "libiscsi.so.7"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise UnsupportedError(
            "libiscsi is not installed (Debian package libiscsi7)"
        ) from exc
    ptr, text, cint = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    signatures: dict[str, tuple[Any, list[Any]]] = {
        "iscsi_create_context": (ptr, [text]),
        "iscsi_destroy_context": (cint, [ptr]),
        "iscsi_set_targetname": (cint, [ptr, text]),
        "iscsi_set_session_type": (cint, [ptr, cint]),
        "iscsi_set_noautoreconnect": (None, [ptr, cint]),
        "iscsi_set_timeout": (cint, [ptr, cint]),
        "iscsi_full_connect_sync": (cint, [ptr, text, cint]),
        "iscsi_logout_sync": (cint, [ptr]),
        "iscsi_get_error": (text, [ptr]),
        "scsi_create_task": (ptr, [cint, text, cint, cint]),
        "scsi_free_scsi_task": (None, [ptr]),
        "iscsi_scsi_command_sync": (ptr, [ptr, cint, ptr, ptr]),
    }
    for function, (restype, argtypes) in signatures.items():
        symbol = getattr(lib, function)
        symbol.restype = restype
        symbol.argtypes = argtypes
    _LIBRARY = lib
    return lib


class IscsiTransport:
    """One iSCSI session to one LUN, logged in at the first command.

    Args:
        url: ``iscsi://HOST[:PORT]/TARGET-IQN/LUN``.
        initiator: the initiator name (IQN) to log in as.

    Raises:
        ConfigError: the URL is malformed.
    """

    def __init__(self, url: str, *, initiator: str) -> None:
        self.url = parse_url(url)
        self.initiator = initiator
        self.device = url
        self._context: int | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="fencekit-iscsi"
        )
        self._closed = False

    async def connect(self, timeout: float = 10.0) -> None:
        """Log in now rather than at the first command.

        Raises:
            UnreachableError: the target refused the login or the
                connection.
            DeviceTimeoutError: no answer within ``timeout``.
        """
        await self._run(self._connect_sync, timeout, timeout=timeout)

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        timeout: float,
    ) -> CommandResult:
        """Send one command on the session (see ``ScsiTransport``).

        Raises:
            UnreachableError: no session could be set up, or it broke.
            DeviceTimeoutError: no answer within ``timeout``.
            ProtocolError: libiscsi failed the command.
            UnsupportedError: libiscsi is not installed.
        """
        result: CommandResult = await self._run(
            self._execute_sync, cdb, data_out, data_in, timeout,
            timeout=timeout,
        )  # fmt: skip
        return result

    async def close(self) -> None:
        """Log out and free the session; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._drop, True)
        finally:
            self._executor.shutdown(wait=False)

    async def _run(self, function: Any, *args: Any, timeout: float) -> Any:
        if self._closed:
            raise UnreachableError(
                "the iSCSI session is closed", device=self.device
            )
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, function, *args)
        try:
            return await asyncio.wait_for(future, timeout + _GRACE)
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"{self.device}: no answer in {timeout:g} s",
                device=self.device,
            ) from exc

    def _connect_sync(self, timeout: float) -> int:
        if self._context is not None:
            return self._context
        lib = _library()
        context: int | None = lib.iscsi_create_context(self.initiator.encode())
        if not context:
            raise ProtocolError("libiscsi could not create a context")
        # TODO: no CHAP: targets that require it refuse the login. It
        # needs iscsi_set_initiator_username_pwd fed from a Secret, and a
        # credential option on the CLI and in the inventory.
        lib.iscsi_set_targetname(context, self.url.target.encode())
        lib.iscsi_set_session_type(context, _SESSION_NORMAL)
        # A silent reconnect would log in as a new I_T nexus, whose
        # registrations differ from this one's: fail, and let the caller
        # decide (it registers again before acting).
        lib.iscsi_set_noautoreconnect(context, 1)
        lib.iscsi_set_timeout(context, _seconds(timeout))
        portal = self.url.portal.encode()
        if lib.iscsi_full_connect_sync(context, portal, self.url.lun) != 0:
            reason = _error(lib, context)
            lib.iscsi_destroy_context(context)
            raise UnreachableError(
                f"{self.device}: iSCSI login as {self.initiator} failed:"
                f" {reason}",
                device=self.device,
            )
        self._context = int(context)
        return self._context

    def _execute_sync(
        self, cdb: bytes, data_out: bytes, data_in: int, timeout: float
    ) -> CommandResult:
        started = time.monotonic()
        context = self._connect_sync(timeout)
        remaining = max(timeout - (time.monotonic() - started), 0.001)
        lib = _library()
        lib.iscsi_set_timeout(context, _seconds(remaining))

        direction, length = _XFER_NONE, 0
        if data_out:
            direction, length = _XFER_WRITE, len(data_out)
        elif data_in:
            direction, length = _XFER_READ, data_in
        task = lib.scsi_create_task(len(cdb), cdb, direction, length)
        if not task:
            raise ProtocolError("libiscsi could not create a task")
        out = ctypes.create_string_buffer(data_out, len(data_out))
        payload = _Data(len(data_out), ctypes.cast(out, ctypes.c_void_p))
        before = _error(lib, context)
        done = lib.iscsi_scsi_command_sync(
            context,
            self.url.lun,
            task,
            ctypes.byref(payload) if data_out else None,
        )
        if not done:
            # The command never completed, so libiscsi may still hold it
            # in a queue whose callback points into its returned sync
            # call: freeing the task or destroying the context could run
            # that callback on freed memory. Both are abandoned instead
            # (one context per lost session, not per command).
            self._context = None
            self._fail(_fresh(lib, context, before), None)
        try:
            return self._result(_Task.from_address(task), lib, context, before)
        finally:
            lib.scsi_free_scsi_task(task)

    def _result(
        self, task: _Task, lib: Any, context: int, before: str
    ) -> CommandResult:
        status = task.status
        if status in (_CANCELLED, _ERROR, _TIMEOUT):
            self._fail(_fresh(lib, context, before), status)
        data = b""
        if task.datain.data and task.datain.size > 0:
            data = ctypes.string_at(task.datain.data, task.datain.size)
        if status == Status.CHECK_CONDITION:
            # libiscsi leaves the sense data in the data-in buffer after
            # its two-byte length (iSCSI RFC 7143 11.4.7.2).
            size = int.from_bytes(data[:2], "big") if len(data) >= 2 else 0
            return CommandResult(status, b"", data[2 : 2 + size])
        return CommandResult(status & 0xFF, data)

    def _fail(self, reason: str, status: int | None) -> None:
        """Drop the broken session and raise the transport error."""
        self._drop(False)
        if status == _TIMEOUT:
            raise DeviceTimeoutError(
                f"{self.device}: no answer: {reason}", device=self.device
            )
        raise UnreachableError(
            f"{self.device}: iSCSI session lost: {reason}",
            device=self.device,
        )

    def _drop(self, logout: bool) -> None:
        context, self._context = self._context, None
        if context is None:
            return
        lib = _library()
        if logout:
            lib.iscsi_set_timeout(context, 2)
            lib.iscsi_logout_sync(context)
        lib.iscsi_destroy_context(context)


def _seconds(timeout: float) -> int:
    return max(1, math.ceil(timeout))


def _fresh(lib: Any, context: int, before: str) -> str:
    """libiscsi's error text if this command set it (it keeps the last
    one, which may belong to an earlier command)."""
    text = _error(lib, context)
    return text if text != before else "the connection was lost"


def _error(lib: Any, context: int) -> str:
    raw = lib.iscsi_get_error(context)
    text = raw.decode("utf-8", errors="replace") if raw else ""
    return text or "no reason given by libiscsi"
