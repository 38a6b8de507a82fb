"""IPMI power driver over pyghmi's RMCP+ session.

Chassis control and chassis status are sent as raw IPMI commands on one
pyghmi session per BMC per process. pyghmi's ``Command`` class is not
used: it loads every OEM handler on import (150-220 ms) and re-sends Get
Device ID before each power call.

pyghmi is blocking. Each BMC gets one daemon worker thread that owns its
session and runs its calls in order; async callers wait on futures. A
call cut off by its deadline is abandoned, never cancelled inside pyghmi,
and a process may exit while it is still blocked.

Two pyghmi 1.6.19 bugs are worked around here, each in one place:
:func:`_credentials_as_bytes` and :func:`_install_wakeup_fix`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import queue
import struct
import threading
from collections.abc import Callable
from typing import Any, Final, TypeVar

from fencekit._log import get_logger
from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    FencekitError,
    ProtocolError,
    UnreachableError,
    UnsupportedError,
)
from fencekit.outcome import Action, PowerState
from fencekit.secrets import Secret

__all__ = ["PRIVILEGES", "IpmiDriver"]

T = TypeVar("T")

PRIVILEGES: Final = {"user": 2, "operator": 3, "administrator": 4}

# IPMI 2.0 table 28: Chassis netfn, Get Chassis Status and Chassis Control.
_NETFN_CHASSIS: Final = 0x00
_CMD_CHASSIS_STATUS: Final = 0x01
_CMD_CHASSIS_CONTROL: Final = 0x02
_CONTROL: Final = {Action.OFF: 0x00, Action.ON: 0x01, Action.DIAG: 0x04}

# IPMI 2.0 table 5-2: completion codes that say "not now" rather than
# "never": node busy, timeout while processing, response could not be
# provided, duplicated request, SDR or firmware update mode, BMC
# initialisation in progress, unspecified error.
_TRANSIENT_CODES: Final = frozenset(
    {0xC0, 0xC3, 0xCE, 0xCF, 0xD0, 0xD1, 0xD2, 0xFF}
)
_CODE_NOT_SUPPORTED: Final = frozenset({0xC1, 0xCC, 0xD5, 0xD6})
_CODE_PRIVILEGE: Final = 0xD4

# pyghmi's error texts for refused credentials (RMCP+ status codes and
# RAKP checks) and for a BMC that never answered.
_AUTH_WORDS: Final = (
    "password",
    "unauthorized",
    "invalid role",
    "privilege",
    "kg",
    "integrity check",
    "username",
)
_SILENT_WORDS: Final = ("timeout", "no longer connected", "unable to transmit")

_CLOSE_GRACE: Final = 2.0


@dataclasses.dataclass(frozen=True)
class _LinkKey:
    host: str
    port: int
    username: str
    password: Secret
    kg: Secret | None


class IpmiDriver:
    """Power control of one node through its BMC over IPMI 2.0 (RMCP+).

    Args:
        host: the BMC's address.
        username: the BMC user.
        password: the user's password.
        port: the BMC's UDP port.
        cipher: cipher suite 17 or 3 to pin; by default 17 is proposed
            and 3 taken when the BMC refuses it.
        privilege: ``administrator``, ``operator`` or ``user``.
        kg: the BMC key (Kg), when the BMC requires one.
        allow_ipmi15: accept a BMC that only offers IPMI 1.5.

    Raises:
        ConfigError: an option is out of range.
    """

    method = "ipmi"

    def __init__(
        self,
        host: str,
        *,
        username: str,
        password: Secret,
        port: int = 623,
        cipher: int | None = None,
        privilege: str = "administrator",
        kg: Secret | None = None,
        allow_ipmi15: bool = False,
    ) -> None:
        if cipher not in (None, 3, 17):
            raise ConfigError("supported suites are 3 and 17", where="cipher")
        if privilege not in PRIVILEGES:
            names = ", ".join(PRIVILEGES)
            raise ConfigError(f"must be one of {names}", where="privilege")
        if not 0 < port < 65536:
            raise ConfigError("must be 1-65535", where="port")
        if len(username.encode()) > 16:
            raise ConfigError("IPMI allows 16 bytes at most", where="username")

        self.device = f"{host}:{port}" if port != 623 else host
        self._key = _LinkKey(host, port, username, password, kg)
        self._cipher = cipher
        self._privilege = PRIVILEGES[privilege]
        self._allow_ipmi15 = allow_ipmi15
        self._link: _BmcLink | None = None

    def __repr__(self) -> str:
        return f"IpmiDriver({self.device!r}, username={self._key.username!r})"

    async def __aenter__(self) -> IpmiDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def read_state(self, timeout: float) -> PowerState:
        """Read the chassis power state (Get Chassis Status).

        Raises:
            TransportError: the BMC could not be read.
        """
        reply = await self._call(_chassis_status, timeout)
        if not reply:
            raise ProtocolError(
                "empty Get Chassis Status reply", device=self.device
            )
        return PowerState.ON if reply[0] & 0x01 else PowerState.OFF

    async def send(self, action: Action, timeout: float) -> None:
        """Send Chassis Control for ``ON``, ``OFF`` or ``DIAG`` (NMI).

        Raises:
            TransportError: the BMC did not accept the command.
            UnsupportedError: the action has no chassis control code.
        """
        code = _CONTROL.get(action)
        if code is None:
            raise UnsupportedError(
                f"IPMI has no single command for {action.value}",
                device=self.device,
                action=action.value,
            )
        await self._call(_chassis_control(code), timeout)

    async def close(self) -> None:
        """Release this driver's share of the BMC session."""
        link, self._link = self._link, None
        if link is not None:
            await _REGISTRY.release(link)

    async def _call(
        self, request: Callable[[Any], bytes], timeout: float
    ) -> bytes:
        if self._link is None:
            self._link = _REGISTRY.acquire(self._key, self._options())
        return await self._link.call(request, timeout)

    def _options(self) -> _LinkOptions:
        return _LinkOptions(
            cipher=self._cipher,
            privilege=self._privilege,
            allow_ipmi15=self._allow_ipmi15,
        )


@dataclasses.dataclass(frozen=True)
class _LinkOptions:
    cipher: int | None
    privilege: int
    allow_ipmi15: bool


def _chassis_status(session: Any) -> bytes:
    return _raw(session, _CMD_CHASSIS_STATUS, ())


def _chassis_control(code: int) -> Callable[[Any], bytes]:
    def request(session: Any) -> bytes:
        return _raw(session, _CMD_CHASSIS_CONTROL, (code,))

    return request


def _raw(session: Any, command: int, data: tuple[int, ...]) -> bytes:
    reply = session.raw_command(
        netfn=_NETFN_CHASSIS, command=command, data=data
    )
    if "error" in reply and reply.get("code") in (None, 0xFFFF):
        raise _PyghmiFailure(str(reply["error"]))
    code = int(reply.get("code", 0))
    if code:
        raise _PyghmiFailure(str(reply.get("error", "")), code=code)
    return bytes(reply.get("data", b""))


class _PyghmiFailure(Exception):
    """A pyghmi failure, raised inside the worker thread.

    Attributes:
        code: the IPMI completion code, when the BMC gave one.
        login: whether the session could not be established.
    """

    def __init__(
        self,
        text: str,
        *,
        code: int | None = None,
        login: bool = False,
        internal: bool = False,
    ) -> None:
        super().__init__(text)
        self.code = code
        self.login = login
        self.internal = internal


class _BmcLink:
    """One pyghmi session to one BMC, owned by one worker thread."""

    def __init__(self, key: _LinkKey, options: _LinkOptions) -> None:
        self.key = key
        self.options = options
        self.device = f"{key.host}:{key.port}"
        self.users = 0
        self.busy = False
        self._session: Any = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._work, name=f"fencekit-ipmi-{self.device}", daemon=True
        )
        self._thread.start()

    async def call(
        self, request: Callable[[Any], bytes], timeout: float
    ) -> bytes:
        """Run ``request(session)`` in the worker, waiting ``timeout``."""
        future: concurrent.futures.Future[bytes] = concurrent.futures.Future()
        self._queue.put((request, future))
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(future), max(timeout, 0.0)
            )
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"BMC {self.device} did not answer in time",
                device=self.device,
            ) from exc
        except _PyghmiFailure as exc:
            raise _translate(exc, self.device) from exc

    async def shutdown(self) -> None:
        """Log out and stop the worker.

        When the worker is still blocked in an abandoned call, the logout
        is queued behind it and not waited for: a deadline already passed.
        """
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue.put((None, done))
        if self.busy:
            return
        try:
            await asyncio.wait_for(asyncio.wrap_future(done), _CLOSE_GRACE)
        except (TimeoutError, Exception):
            get_logger(__name__).debug(
                "ipmi_logout_abandoned", bmc=self.device
            )

    def _work(self) -> None:
        while True:
            request, future = self._queue.get()
            if request is None:
                self._logout()
                future.set_result(None)
                return
            if not future.set_running_or_notify_cancel():
                continue
            self.busy = True
            try:
                future.set_result(self._run(request))
            except BaseException as exc:
                self._forget_if_broken()
                future.set_exception(exc)
            finally:
                self.busy = False

    def _run(self, request: Callable[[Any], bytes]) -> bytes:
        try:
            session = self._login()
        except _PyghmiFailure:
            raise
        except Exception as exc:
            raise _PyghmiFailure(_text(exc), login=True) from None
        try:
            return request(session)
        except _PyghmiFailure:
            raise
        except Exception as exc:
            internal = not _is_ipmi(exc)
            raise _PyghmiFailure(_text(exc), internal=internal) from None

    def _login(self) -> Any:
        if self._session is not None and not self._session.broken:
            return self._session
        try:
            session = self._open(self.options.cipher)
        except struct.error:
            # Some BMCs (pyghmi's own BMC class among them) accept the
            # proposal for suite 17 but answer RAKP2 with the SHA-1 code
            # of suite 3, which pyghmi fails to unpack. Retrying in the
            # same process finds pyghmi's half-open session, so say what
            # to do instead.
            raise _PyghmiFailure(
                "the BMC accepted cipher suite 17 but answered as suite 3;"
                " pin cipher suite 3",
                login=True,
            ) from None
        if session.broken:
            # pyghmi 1.6.19: Session() joins a login to the same BMC that
            # is still in progress (one an earlier deadline abandoned) and,
            # when that login fails, returns the broken session without
            # raising. It never negotiated a version: do not report 1.5.
            error = getattr(session, "errormsg", None)
            raise _PyghmiFailure(_text(Exception(error)), login=True)
        if session.ipmiversion < 2 and not self.options.allow_ipmi15:
            session.logout()
            raise _PyghmiFailure("ipmi15", login=True)
        self._session = session
        return session

    def _open(self, cipher: int | None) -> Any:
        user, password, kg = _credentials_as_bytes(self.key)
        return _session_class(cipher)(
            bmc=self.key.host,
            userid=user,
            password=password,
            port=self.key.port,
            kg=kg,
            privlevel=self.options.privilege,
            keepalive=False,
        )

    def _forget_if_broken(self) -> None:
        if self._session is not None and self._session.broken:
            self._session = None

    def _logout(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.broken:
            try:
                session.logout()
            except Exception as exc:
                get_logger(__name__).debug(
                    "ipmi_logout_failed", bmc=self.device, reason=str(exc)
                )


def _text(exc: BaseException) -> str:
    # pyghmi 1.6.19 marks a session broken without a message when its
    # retries run out (Session._timedout calls _mark_broken() with no
    # error), then raises IpmiException(None): the BMC went quiet.
    if exc.args == (None,):
        return "timeout: no answer to any retry"
    if not _is_ipmi(exc):
        return f"{type(exc).__name__}: {exc}"
    return str(exc) or type(exc).__name__


def _is_ipmi(exc: BaseException) -> bool:
    """Whether pyghmi raised it on purpose (IpmiException)."""
    return type(exc).__name__ == "IpmiException"


def _translate(exc: _PyghmiFailure, device: str) -> FencekitError:
    """Map a pyghmi failure to the most specific fencekit error."""
    text = str(exc)
    lowered = text.lower()
    code = exc.code

    if code is None and text == "ipmi15":
        return UnsupportedError(
            f"BMC {device} offers only IPMI 1.5; allow it explicitly to use"
            " it (ipmi15 option)",
            device=device,
        )
    if code == _CODE_PRIVILEGE:
        return AuthenticationError(
            f"BMC {device} refused the command: the account's privilege"
            " is too low (operator or administrator needed)",
            device=device,
        )
    if code is None and any(w in lowered for w in _AUTH_WORDS):
        return AuthenticationError(
            f"BMC {device} refused the login: {text}", device=device
        )
    if code is None and any(w in lowered for w in _SILENT_WORDS):
        if exc.login:
            return UnreachableError(
                f"no IPMI answer from {device} ({text})", device=device
            )
        return DeviceTimeoutError(
            f"BMC {device} stopped answering ({text})", device=device
        )
    if exc.internal:
        # An exception pyghmi did not mean to raise (a race in its shared
        # session tables under concurrency): nothing was learnt about the
        # power state, so it may be retried within the deadline.
        return ProtocolError(
            f"BMC {device}: pyghmi failed inside a request ({text})",
            device=device,
            transient=True,
        )
    if code is None:
        return ProtocolError(f"BMC {device}: {text}", device=device)
    return ProtocolError(
        f"BMC {device} answered completion code 0x{code:02x}"
        + (f" ({text})" if text else ""),
        code=code,
        transient=code in _TRANSIENT_CODES,
        device=device,
    )


class _Registry:
    """One link per BMC and credentials in this process, shared."""

    def __init__(self) -> None:
        self._links: dict[_LinkKey, _BmcLink] = {}
        self._lock = threading.Lock()

    def acquire(self, key: _LinkKey, options: _LinkOptions) -> _BmcLink:
        _install_wakeup_fix()
        with self._lock:
            link = self._links.get(key)
            if link is None:
                link = self._links[key] = _BmcLink(key, options)
            link.users += 1
            return link

    async def release(self, link: _BmcLink) -> None:
        with self._lock:
            link.users -= 1
            if link.users > 0:
                return
            del self._links[link.key]
        await link.shutdown()


_REGISTRY = _Registry()


def _credentials_as_bytes(key: _LinkKey) -> tuple[bytes, bytes, bytes | None]:
    """Hand pyghmi its credentials as bytes.

    pyghmi 1.6.19 bug: ``Session.__new__`` files a logging-in session in
    ``Session.initting_sessions`` under ``(bmc, userid, password, ...)``
    as given, but removes it under the byte-encoded userid and password.
    With str credentials the entry is never removed, and the next session
    to the same BMC in the process finds the stale one and hangs (or
    raises TypeError after a logout). With bytes both keys are equal.
    """
    kg = key.kg.reveal().encode() if key.kg is not None else None
    return key.username.encode(), key.password.reveal().encode(), kg


_session_classes: dict[int | None, type] = {}


def _session_class(cipher: int | None) -> type:
    """pyghmi's Session, pinned to a cipher suite when asked.

    pyghmi proposes suite 17 (SHA-256) and falls back to suite 3 (SHA-1)
    when the BMC refuses it; ``attemptedhash`` names the one in use.
    """
    if cipher in _session_classes:
        return _session_classes[cipher]
    from pyghmi.ipmi.private import session as pyghmi_session

    base = pyghmi_session.Session
    if cipher is None:
        cls: type = base
    elif cipher == 3:

        class Suite3Session(base):  # type: ignore[misc, valid-type]
            def _initsession(self) -> None:
                super()._initsession()
                self.attemptedhash = 1

        cls = Suite3Session
    else:

        class Suite17Session(base):  # type: ignore[misc, valid-type]
            def _open_rmcpplus_request(self) -> None:
                if self.attemptedhash != 256:
                    self.onlogon(
                        {"error": "No Cipher suite match (17 pinned)"}
                    )
                    return
                super()._open_rmcpplus_request()

        cls = Suite17Session
    _session_classes[cipher] = cls
    return cls


_wakeup_fix_lock = threading.Lock()
_wakeup_fix_installed = False


def _install_wakeup_fix() -> None:
    """Stop pyghmi from handling an arrived reply 0.5-1 s late.

    pyghmi 1.6.19 bug (a race in its IO thread): the caller sends a
    request, then queues a wait for the BMC's address. When the reply
    arrives before the wait is queued, the IO thread moves the packet to
    the session's queue and goes back to ``select``; the wait queued
    after it then sleeps until its retry timer (0.5-1 s) although the
    reply is already there. Here the wait is queued first, and returns at
    once when a packet for that address is already waiting.
    """
    global _wakeup_fix_installed
    with _wakeup_fix_lock:
        if _wakeup_fix_installed:
            return
        from pyghmi.ipmi.private import session as ps

        original = ps._io_wait

        def io_wait(
            timeout: float, myaddr: Any = None, evq: Any = None
        ) -> None:
            if myaddr is None:
                original(timeout, myaddr, evq)
                return
            evt = threading.Event()
            if evq is not None:
                evq.append(evt)
            deadline = timeout + ps._monotonic_time()
            ps.ioqueue.append((deadline, evt, myaddr))
            handlers = ps.Session.bmc_handlers.get(myaddr, {})
            if any(s.pktqueue for s in list(handlers.values())):
                return
            if deadline < ps.selectdeadline:
                ps.iosockets[0].sendto(
                    b"\x01", (ps.myself, ps.iosockets[0].getsockname()[1])
                )
            evt.wait()

        ps._io_wait = io_wait
        _wakeup_fix_installed = True
