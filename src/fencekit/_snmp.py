"""What every SNMP part of fencekit shares: credentials, engines, errors.

The SNMP fence devices, the SNMP check and the notifier all talk through
pysnmp 7's asyncio API. This module builds pysnmp's engine, credentials
and transport from fencekit values, runs GET, SET, walks and
notifications, and translates pysnmp's errors into fencekit's once.
Every workaround for a pysnmp behaviour lives here, next to a comment
naming it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import re
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any, Final

from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    FencekitError,
    ProtocolError,
)
from fencekit.secrets import Secret

__all__ = [
    "AUTH_PROTOCOLS",
    "PRIV_PROTOCOLS",
    "SnmpClient",
    "SnmpCredentials",
    "Value",
    "new_engine",
    "send_notification",
]

#: A value read over SNMP, as plain Python: numbers as ``int``, strings
#: as ``str``, object identifiers as dotted ``str``.
Value = int | str

#: SNMPv3 authentication protocols (RFC 3414, RFC 7860 for SHA-2).
AUTH_PROTOCOLS: Final = (
    "md5",
    "sha",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
)
#: SNMPv3 privacy protocols (RFC 3414 DES, RFC 3826 AES-128; AES-192
#: and AES-256 as most agents implement them, draft-blumenthal).
PRIV_PROTOCOLS: Final = ("des", "aes", "aes128", "aes192", "aes256")

_VERSIONS: Final = ("1", "2c", "3")
_DEFAULT_PORT: Final = 161
# RFC 3414 section 11.2: a passphrase shorter than 8 characters gives a
# weak key; net-snmp refuses it, so fencekit refuses it up front.
_MIN_KEY: Final = 8
# pysnmp's own timeout gets this share of a call's deadline, so that its
# error (which names the likely cause) wins over the caller's cut-off.
_SHARE: Final = 0.9
_TRANSIENT_STATUS: Final = frozenset({"resourceUnavailable"})
_AUTH_INDICATIONS: Final = frozenset(
    {
        "AuthenticationFailure",
        "DecryptionError",
        "UnknownCommunityName",
        "UnknownSecurityName",
        "UnknownUserName",
        "UnsupportedSecurityLevel",
        "WrongDigest",
    }
)

_hlapi_module: ModuleType | None = None


def hlapi() -> ModuleType:
    """pysnmp's asyncio high-level API, imported on first use.

    pysnmp 7.1 imports pysmi, when it is installed, to compile MIB
    files on demand. fencekit speaks numeric OIDs only, so pysmi is kept
    out of that import: it would cost half a second (pysmi loads
    requests and its parsers) and warn about names pysmi 1.5 and later
    deprecated (``getReadersFromUrls``, ``smiV1Relaxed``, in
    pysnmp/smi/compiler.py). pysnmp then runs without a MIB compiler,
    which it supports. When another module has already imported pysmi,
    the warning is silenced for this import instead.
    """
    global _hlapi_module
    if _hlapi_module is None:
        blocked = "pysmi" not in sys.modules
        if blocked:
            # A None entry makes "import pysmi..." raise ImportError.
            sys.modules["pysmi"] = None  # type: ignore[assignment]
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings(
                    "ignore",
                    category=DeprecationWarning,
                    module=r"pysnmp\.smi\.compiler",
                )
                _hlapi_module = importlib.import_module(
                    "pysnmp.hlapi.v3arch.asyncio"
                )
        finally:
            if blocked:
                del sys.modules["pysmi"]
    return _hlapi_module


@dataclasses.dataclass(frozen=True)
class SnmpCredentials:
    """How fencekit authenticates to an SNMP peer.

    Attributes:
        version: ``"1"``, ``"2c"`` or ``"3"``.
        community: the community (versions 1 and 2c).
        user: the SNMPv3 user name.
        auth_protocol: one of :data:`AUTH_PROTOCOLS`.
        auth_key: the SNMPv3 authentication passphrase.
        priv_protocol: one of :data:`PRIV_PROTOCOLS`.
        priv_key: the SNMPv3 privacy passphrase.
        engine_id: for SNMPv3 traps, fencekit's own engine ID in hex:
            the receiver knows the user under this ID (the sender of a
            trap is the authoritative engine, RFC 3414 section 1.5.1).

    Raises:
        ConfigError: a required value is missing or a name is unknown.
    """

    version: str = "2c"
    community: Secret | None = None
    user: str | None = None
    auth_protocol: str = "sha"
    auth_key: Secret | None = None
    priv_protocol: str = "aes"
    priv_key: Secret | None = None
    engine_id: str | None = None

    def __post_init__(self) -> None:
        if self.version not in _VERSIONS:
            raise ConfigError(
                f"SNMP version must be one of {', '.join(_VERSIONS)}",
                where="version",
            )
        if self.version == "3":
            self._check_v3()
        elif self.community is None:
            raise ConfigError(
                f"SNMP version {self.version} needs a community",
                where="community",
            )

    def _check_v3(self) -> None:
        if not self.user:
            raise ConfigError("SNMPv3 needs a user name", where="user")
        if self.auth_protocol not in AUTH_PROTOCOLS:
            raise ConfigError(
                f"must be one of {', '.join(AUTH_PROTOCOLS)}",
                where="auth_protocol",
            )
        if self.priv_protocol not in PRIV_PROTOCOLS:
            raise ConfigError(
                f"must be one of {', '.join(PRIV_PROTOCOLS)}",
                where="priv_protocol",
            )
        if self.priv_key is not None and self.auth_key is None:
            raise ConfigError(
                "SNMPv3 privacy needs an authentication key too",
                where="auth_key",
            )
        for name, key in (
            ("auth_key", self.auth_key),
            ("priv_key", self.priv_key),
        ):
            if key is not None and len(key.reveal()) < _MIN_KEY:
                raise ConfigError(
                    f"must be at least {_MIN_KEY} characters"
                    " (RFC 3414 section 11.2)",
                    where=name,
                )
        if self.engine_id is not None and not re.fullmatch(
            r"(0x)?([0-9a-fA-F]{2}){5,32}", self.engine_id
        ):
            raise ConfigError(
                "must be 5 to 32 bytes in hex", where="engine_id"
            )

    @property
    def security_level(self) -> str:
        """``authPriv``, ``authNoPriv`` or ``noAuthNoPriv`` (v3)."""
        if self.priv_key is not None:
            return "authPriv"
        if self.auth_key is not None:
            return "authNoPriv"
        return "noAuthNoPriv"

    def describe(self) -> str:
        """The version and user, safe to print."""
        if self.version == "3":
            return f"SNMPv3 user {self.user} ({self.security_level})"
        return f"SNMPv{self.version}"


def auth_data(credentials: SnmpCredentials) -> Any:
    """pysnmp's ``CommunityData`` or ``UsmUserData`` for ``credentials``.

    The secrets are revealed here, into pysnmp's own objects, and
    nowhere else.
    """
    api = hlapi()
    if credentials.version != "3":
        assert credentials.community is not None
        return api.CommunityData(
            credentials.community.reveal(),
            mpModel=0 if credentials.version == "1" else 1,
        )

    auth = credentials.auth_key
    priv = credentials.priv_key
    return api.UsmUserData(
        credentials.user,
        authKey=auth.reveal() if auth is not None else None,
        privKey=priv.reveal() if priv is not None else None,
        authProtocol=_auth_protocol(api, credentials),
        privProtocol=_priv_protocol(api, credentials),
    )


def _auth_protocol(api: ModuleType, credentials: SnmpCredentials) -> Any:
    if credentials.auth_key is None:
        return api.USM_AUTH_NONE
    return {
        "md5": api.USM_AUTH_HMAC96_MD5,
        "sha": api.USM_AUTH_HMAC96_SHA,
        "sha224": api.USM_AUTH_HMAC128_SHA224,
        "sha256": api.USM_AUTH_HMAC192_SHA256,
        "sha384": api.USM_AUTH_HMAC256_SHA384,
        "sha512": api.USM_AUTH_HMAC384_SHA512,
    }[credentials.auth_protocol]


def _priv_protocol(api: ModuleType, credentials: SnmpCredentials) -> Any:
    if credentials.priv_key is None:
        return api.USM_PRIV_NONE
    # AES-192/256 key extension: agents (net-snmp, most switches and
    # PDUs) follow draft-blumenthal-aes-usm-04, which pysnmp calls
    # "Blumenthal"; its plain AES192/256 constants are the rarer
    # Reeder variant.
    return {
        "des": api.USM_PRIV_CBC56_DES,
        "aes": api.USM_PRIV_CFB128_AES,
        "aes128": api.USM_PRIV_CFB128_AES,
        "aes192": api.USM_PRIV_CFB192_AES_BLUMENTHAL,
        "aes256": api.USM_PRIV_CFB256_AES_BLUMENTHAL,
    }[credentials.priv_protocol]


def new_engine(engine_id: str | None = None) -> Any:
    """A new pysnmp ``SnmpEngine``, with ``engine_id`` (hex) if given.

    Each notifier destination and each client gets its own engine:
    pysnmp 7 keeps per-peer state in an engine, and informs sent from an
    engine that earlier sent GETs to other peers time out although they
    arrive, so notifications never share an engine with requests.

    fencekit speaks only numeric OIDs, so the engine is given a MIB
    compiler that compiles nothing: otherwise pysnmp 7.1, when it was
    imported with pysmi (see :func:`hlapi`), attaches pysmi on the first
    var-bind it resolves (through deprecated pysmi names that warn) and
    would compile MIB files found under /usr/share/snmp/mibs.
    """
    api = hlapi()
    if engine_id is None:
        engine = api.SnmpEngine()
    else:
        from pysnmp.proto.rfc1902 import OctetString

        hex_id = engine_id.removeprefix("0x")
        # pysnmp 7.1 reads the engine's boots counter from
        # $TMPDIR/__pysnmp/<engine id>/boots with open().read() and
        # never closes the file: a ResourceWarning with no consequence.
        # TODO: that counter lives under the temporary directory; when
        # it is cleared (reboot), boots restarts at 1 and a manager
        # that remembers a higher count may drop SNMPv3 traps (RFC 3414
        # section 3.2 step 7) until it forgets; informs are unaffected,
        # as their receiver is the authoritative engine.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            engine = api.SnmpEngine(OctetString(hexValue=hex_id))
    mib_builder = engine.get_mib_builder()
    own_mibs = mib_builder.get_mib_sources()[0].full_path()
    mib_builder.set_mib_compiler(_NoMibCompiler(), own_mibs)
    return engine


class _NoMibCompiler:
    """A MIB compiler that finds nothing (see :func:`new_engine`)."""

    def compile(self, *names: str, **_options: Any) -> dict[str, str]:
        return {name: "missing" for name in names}


def close_engine(engine: Any) -> None:
    """Close an engine's sockets; safe to call twice.

    An engine may outlive the event loop it ran on (a probe kept across
    ``asyncio.run`` calls). asyncio closes a transport through its loop,
    so pysnmp's ``close_dispatcher`` then raises RuntimeError and leaves
    the UDP socket open; the sockets are closed directly instead.
    """
    dispatcher = getattr(engine, "transport_dispatcher", None)
    if dispatcher is None:
        return
    try:
        engine.close_dispatcher()
    except RuntimeError:
        _close_orphaned_sockets(dispatcher)


def _close_orphaned_sockets(dispatcher: Any) -> None:
    # pysnmp 7.1 keeps its transports in a private mapping of the
    # dispatcher, and asyncio keeps a datagram transport's socket in
    # the private ``_sock``; neither is reachable otherwise once the
    # loop is closed. Clearing ``_sock`` keeps the transport's __del__
    # from warning about a socket that is already closed.
    carriers = getattr(
        dispatcher, "_AbstractTransportDispatcher__transports", {}
    )
    for carrier in list(carriers.values()):
        transport = getattr(carrier, "transport", None)
        sock = getattr(transport, "_sock", None)
        if sock is not None:
            sock.close()
            transport._sock = None  # type: ignore[union-attr]


async def _target(host: str, port: int, timeout: float, retries: int) -> Any:
    api = hlapi()
    from pysnmp.error import PySnmpError

    try:
        return await api.UdpTransportTarget.create(
            (host, port), timeout=timeout, retries=retries
        )
    except PySnmpError as exc:
        # pysnmp wraps the resolver's failure in its own error.
        inner = exc.__cause__ or exc.__context__
        reason = getattr(inner, "strerror", None) or "unknown host"
        raise ConfigError(
            f"cannot resolve SNMP address {host}: {reason}", where="host"
        ) from exc


def _oid(text: str) -> Any:
    api = hlapi()
    return api.ObjectIdentity(text)


def to_python(value: Any) -> Value | None:
    """A pysnmp value as plain Python; None for "no such object".

    Raises:
        ProtocolError: the agent returned a type fencekit cannot read.
    """
    from pysnmp.proto import rfc1902, rfc1905

    if isinstance(
        value,
        rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView,
    ):
        return None
    if isinstance(value, rfc1902.ObjectIdentifier):
        return str(value)
    if isinstance(value, rfc1902.OctetString):
        raw = bytes(value)
        return raw.decode("utf-8", "replace")
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(
            f"unreadable SNMP value of type {type(value).__name__}"
        ) from exc


def check_oid(text: str, where: str) -> str:
    """``text`` as a dotted numeric OID without a leading dot.

    Raises:
        ConfigError: it is not a numeric OID.
    """
    oid = text.strip().removeprefix(".")
    if not re.fullmatch(r"\d+(\.\d+)+", oid):
        raise ConfigError(
            f"{text!r} is not a numeric OID (such as 1.3.6.1.2.1.1.3.0)",
            where=where,
        )
    return oid


class SnmpClient:
    """GET, SET and walk against one SNMP agent, on its own engine.

    Args:
        host: the agent's address.
        port: its UDP port (161).
        credentials: how to authenticate.
        retries: pysnmp's own retransmissions of a request that got no
            answer, within each call's timeout.

    Every call takes a ``timeout`` for the whole call; the request is
    resent ``retries`` times within it.
    """

    def __init__(
        self,
        host: str,
        *,
        credentials: SnmpCredentials,
        port: int = _DEFAULT_PORT,
        retries: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.credentials = credentials
        self.retries = retries
        self.address = host if port == _DEFAULT_PORT else f"{host}:{port}"
        self._engine: Any = None

    def __repr__(self) -> str:
        return f"SnmpClient({self.address!r}, {self.credentials.describe()!r})"

    def _get_engine(self) -> Any:
        if self._engine is None:
            self._engine = new_engine()
        return self._engine

    async def _call(
        self, name: str, timeout: float, *var_binds: Any
    ) -> Sequence[Any]:
        api = hlapi()
        per_try = max(0.1, _SHARE * timeout / (self.retries + 1))
        target = await _target(self.host, self.port, per_try, self.retries)
        command = {"get": api.get_cmd, "set": api.set_cmd}[name]
        try:
            result = await asyncio.wait_for(
                command(
                    self._get_engine(),
                    auth_data(self.credentials),
                    target,
                    api.ContextData(),
                    *var_binds,
                    lookupMib=False,
                ),
                timeout,
            )
        except TimeoutError as exc:
            raise self._timeout(timeout) from exc
        indication, status, index, bound = result
        self._raise_for(indication, status, index, name, var_binds)
        return list(bound)

    def _timeout(self, timeout: float) -> DeviceTimeoutError:
        return timeout_error(self.address, self.credentials, timeout)

    def _raise_for(
        self,
        indication: Any,
        status: Any,
        index: Any,
        name: str,
        var_binds: Sequence[Any],
    ) -> None:
        if indication:
            raise translate_indication(
                indication, self.address, self.credentials
            )
        if status and int(status) != 0:
            raise _status_error(status, index, name, var_binds, self.address)

    async def get(
        self, oids: Sequence[str], timeout: float
    ) -> dict[str, Value | None]:
        """Read ``oids`` in one request.

        Returns:
            Each OID's value; None where the agent has no such object.

        Raises:
            AuthenticationError: the agent refused the credentials.
            DeviceTimeoutError: no answer in time.
            ProtocolError: the agent answered with an error.
        """
        api = hlapi()
        binds = [api.ObjectType(_oid(oid)) for oid in oids]
        bound = await self._call("get", timeout, *binds)
        return {
            str(name).removeprefix("."): to_python(value)
            for name, value in bound
        }

    async def set_integer(self, oid: str, value: int, timeout: float) -> None:
        """Write an INTEGER to ``oid``.

        Raises:
            AuthenticationError: the agent refused the credentials.
            DeviceTimeoutError: no answer in time; the SET may or may
                not have been carried out.
            ProtocolError: the agent refused the SET (``notWritable``,
                ``wrongValue``...); ``code`` holds its error status.
        """
        from pysnmp.proto.rfc1902 import Integer

        api = hlapi()
        await self._call(
            "set", timeout, api.ObjectType(_oid(oid), Integer(value))
        )

    async def walk(self, column: str, timeout: float) -> dict[str, Value]:
        """Read every row of a table column.

        Returns:
            The value under each row index (the OID suffix after
            ``column``), in the agent's order.

        Raises:
            AuthenticationError: the agent refused the credentials.
            DeviceTimeoutError: no answer in time.
            ProtocolError: the agent answered with an error.
        """
        try:
            return await asyncio.wait_for(self._walk(column, timeout), timeout)
        except TimeoutError as exc:
            raise self._timeout(timeout) from exc

    async def _walk(self, column: str, timeout: float) -> dict[str, Value]:
        api = hlapi()
        per_try = max(0.1, _SHARE * timeout / (self.retries + 1))
        target = await _target(self.host, self.port, per_try, self.retries)
        rows: dict[str, Value] = {}
        prefix = column + "."
        walker = api.walk_cmd(
            self._get_engine(),
            auth_data(self.credentials),
            target,
            api.ContextData(),
            api.ObjectType(_oid(column)),
            lookupMib=False,
            lexicographicMode=False,
        )
        async for indication, status, index, bound in walker:
            self._raise_for(indication, status, index, "walk", ())
            for name, value in bound:
                oid = str(name).removeprefix(".")
                python = to_python(value)
                if oid.startswith(prefix) and python is not None:
                    rows[oid[len(prefix) :]] = python
        return rows

    async def close(self) -> None:
        """Close the engine's sockets; safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            close_engine(engine)


def timeout_error(
    address: str, credentials: SnmpCredentials, timeout: float | None
) -> DeviceTimeoutError:
    """The error for an SNMP request that got no answer.

    SNMP agents drop a request with a wrong community or a wrong SNMPv3
    privacy key without a word, so the message names those causes.
    """
    hint = (
        "wrong community"
        if credentials.version != "3"
        else ("wrong privacy key")
    )
    within = f" within {timeout:g} s" if timeout is not None else ""
    return DeviceTimeoutError(
        f"no SNMP answer from {address}{within} ({hint}, or nothing"
        " listening)",
        device=address,
    )


def translate_indication(
    indication: Any, address: str, credentials: SnmpCredentials
) -> FencekitError:
    """The fencekit error for a pysnmp error indication."""
    kind = type(indication).__name__
    text = str(indication)
    if kind == "RequestTimedOut":
        return timeout_error(address, credentials, None)
    if kind in _AUTH_INDICATIONS:
        return AuthenticationError(
            f"{address} refused {credentials.describe()}: {text}",
            device=address,
        )
    return ProtocolError(f"SNMP error from {address}: {text}", device=address)


def _status_error(
    status: Any,
    index: Any,
    name: str,
    var_binds: Sequence[Any],
    address: str,
) -> ProtocolError:
    label = (
        status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
    )
    where = ""
    position = int(index or 0)
    if 0 < position <= len(var_binds):
        where = f" on {var_binds[position - 1][0]}"
    return ProtocolError(
        f"{address} refused the SNMP {name.upper()}{where}: {label}",
        code=int(status),
        transient=label in _TRANSIENT_STATUS,
        device=address,
    )


async def send_notification(
    engine: Any,
    credentials: SnmpCredentials,
    host: str,
    port: int,
    *,
    inform: bool,
    var_binds: Sequence[tuple[str, Any]],
    timeout: float,
    retries: int,
) -> None:
    """Send one trap or inform.

    ``var_binds`` follow ``snmpTrapOID.0``; each value is a pysnmp
    value. pysnmp puts ``sysUpTime.0`` first. For a trap, success means
    the datagram left; for an inform, that the receiver acknowledged it.

    Raises:
        AuthenticationError: the receiver refused the credentials
            (informs only: a trap gets no answer).
        DeviceTimeoutError: no acknowledgement in time (informs).
        ProtocolError: pysnmp or the receiver reported another error.
    """
    api = hlapi()
    address = f"{host}:{port}"
    per_try = max(0.1, timeout / (retries + 1))
    target = await _target(host, port, per_try, retries)
    binds = [api.ObjectType(_oid(oid), value) for oid, value in var_binds]
    try:
        result = await asyncio.wait_for(
            api.send_notification(
                engine,
                auth_data(credentials),
                target,
                api.ContextData(),
                "inform" if inform else "trap",
                *binds,
                lookupMib=False,
            ),
            timeout + 1.0,
        )
    except TimeoutError as exc:
        raise DeviceTimeoutError(
            f"no acknowledgement from {address} within {timeout:g} s",
            device=address,
        ) from exc
    indication, status, _index, _bound = result
    if indication:
        raise translate_indication(indication, address, credentials)
    if status and int(status) != 0:
        raise ProtocolError(
            f"{address} answered the inform with an error: {status}",
            code=int(status),
            device=address,
        )
