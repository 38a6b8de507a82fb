"""Redfish power driver over requests, with the Fujitsu iRMC profile.

One :class:`requests.Session` per BMC carries keep-alive connections and
the Redfish session token. requests is blocking: each driver owns one
worker thread that runs its HTTP calls in order, and async callers wait
on futures. Every request gets connect and read timeouts taken from what
is left of the caller's deadline; a call cut off by the deadline is
abandoned in its thread and ends there within its own timeout.

The driver reads and switches power only. :func:`fencekit.power.operate`
decides what to send and verifies the result: PowerState must read back
exactly ``Off``.

The parsers below (service root, systems, reset action, ActionInfo, task,
error body) are pure functions over decoded JSON, tested on recorded
payloads of several vendors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from fencekit._log import get_logger
from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    FencekitError,
    ProtocolError,
    TransportError,
    UnreachableError,
    UnsupportedError,
)
from fencekit.outcome import Action, PowerState
from fencekit.secrets import Secret

__all__ = [
    "AUTH_MODES",
    "IRMC",
    "STANDARD",
    "Profile",
    "RedfishDriver",
    "ResetAction",
    "ServiceRoot",
    "SystemInfo",
    "choose_reset",
    "error_message",
    "parse_action_info",
    "parse_members",
    "parse_service_root",
    "parse_system",
    "parse_task",
]

T = TypeVar("T")

AUTH_MODES: Final = ("auto", "session", "basic")

# Redfish specification (DSP0266) 8.1: clients send Accept and
# OData-Version on every request, Content-Type on requests with a body.
_HEADERS: Final = {"Accept": "application/json", "OData-Version": "4.0"}
_JSON_BODY: Final = {"Content-Type": "application/json"}

# ComputerSystem.Reset ResetType values that carry out each action, in
# order of preference. Off is ForceOff only: GracefulShutdown and
# PushPowerButton ask the operating system, which is what a fence must
# not depend on. On may use any value that powers a stopped system up.
_RESET_TYPES: Final[Mapping[Action, tuple[str, ...]]] = {
    Action.OFF: ("ForceOff",),
    Action.ON: ("On", "ForceOn", "PushPowerButton"),
    Action.DIAG: ("Nmi",),
}

# DSP0268 ComputerSystem.PowerState; the transitional values (PoweringOn,
# PoweringOff, Paused) read as unknown so that only "Off" verifies off.
# ResetType values whose effect depends on the state they find.
_TOGGLES: Final = frozenset({"PushPowerButton"})

_POWER: Final = {"On": PowerState.ON, "Off": PowerState.OFF}

# HTTP statuses that say "not now" rather than "never": conflict (an
# operation in progress), too many requests, and server-side failures
# other than 501 Not Implemented.
_TRANSIENT_STATUS: Final = frozenset({409, 429, 500, 502, 503, 504})

# DSP0268 Task.TaskState values that end a task.
_TASK_DONE: Final = frozenset(
    {"Completed", "Exception", "Killed", "Cancelled", "Interrupted"}
)
_READ_SHARE: Final = 0.5
_MIN_READ: Final = 2.0
_TASK_POLL: Final = 0.1
_LOGOUT_TIMEOUT: Final = 3.0


@dataclasses.dataclass(frozen=True)
class Profile:
    """What one BMC family does differently from the standard.

    Attributes:
        name: the profile's name, also the driver's method.
        default_system: the system id to use when none is configured and
            the Systems collection is not consulted.
        oem_reset: the OEM reset action's key ending and its argument
            name, used when the standard reset is refused.
        oem_types: the OEM reset value for each action.
    """

    name: str
    default_system: str | None = None
    oem_reset: tuple[str, str] | None = None
    oem_types: Mapping[Action, str] = dataclasses.field(default_factory=dict)


STANDARD: Final = Profile("redfish")

# Fujitsu iRMC S5/S6: the one system is /redfish/v1/Systems/0, and the
# OEM action FTSComputerSystem.Reset (argument FTSResetType) is accepted
# where firmware refuses a standard ResetType for the current state.
IRMC: Final = Profile(
    "irmc",
    default_system="0",
    oem_reset=("#FTSComputerSystem.Reset", "FTSResetType"),
    oem_types={
        Action.OFF: "PowerOff",
        Action.ON: "PowerOn",
        Action.DIAG: "PulseNmi",
    },
)

_PROFILES: Final = {p.name: p for p in (STANDARD, IRMC)}


# -- parsers ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServiceRoot:
    """The parts of ``/redfish/v1`` the driver needs.

    Attributes:
        systems: the Systems collection's URI.
        sessions: the Sessions collection's URI, when sessions exist.
        vendor: the service's vendor, when it names one.
        irmc: whether the service is a Fujitsu iRMC.
    """

    systems: str | None
    sessions: str | None
    vendor: str | None
    irmc: bool


@dataclasses.dataclass(frozen=True)
class ResetAction:
    """A reset action of a system.

    Attributes:
        target: the URI to POST to.
        allowed: the values the system allows, None when not listed.
        action_info: the ActionInfo resource listing them, if any.
        parameter: the name of the reset type argument.
    """

    target: str
    allowed: tuple[str, ...] | None = None
    action_info: str | None = None
    parameter: str = "ResetType"


@dataclasses.dataclass(frozen=True)
class SystemInfo:
    """The parts of a ComputerSystem the driver needs.

    Attributes:
        uri: the system's ``@odata.id``.
        id: its ``Id``.
        uuid: its ``UUID``.
        serial: its ``SerialNumber``.
        power_text: ``PowerState`` as the BMC wrote it.
        power: that state as fencekit reads it.
        reset: the standard ComputerSystem.Reset action.
        oem_reset: the profile's OEM reset action, when present.
    """

    uri: str
    id: str | None
    uuid: str | None
    serial: str | None
    power_text: str | None
    power: PowerState
    reset: ResetAction | None
    oem_reset: ResetAction | None = None


def _link(doc: Mapping[str, Any], *path: str) -> str | None:
    node: Any = doc
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    if isinstance(node, Mapping):
        node = node.get("@odata.id")
    return node if isinstance(node, str) and node else None


def parse_service_root(doc: Mapping[str, Any]) -> ServiceRoot:
    """Read the service root.

    The Sessions collection is found under ``Links.Sessions`` (DSP0266
    13.3.4) or, on older services, through ``SessionService``.
    """
    oem = doc.get("Oem")
    vendor = doc.get("Vendor")
    irmc = (isinstance(oem, Mapping) and "ts_fujitsu" in oem) or (
        isinstance(vendor, str) and vendor.lower().startswith("fujitsu")
    )
    sessions = _link(doc, "Links", "Sessions")
    if sessions is None and _link(doc, "SessionService"):
        service = _link(doc, "SessionService") or ""
        sessions = service.rstrip("/") + "/Sessions"
    return ServiceRoot(
        systems=_link(doc, "Systems"),
        sessions=sessions,
        vendor=vendor if isinstance(vendor, str) else None,
        irmc=bool(irmc),
    )


def parse_members(doc: Mapping[str, Any]) -> list[str]:
    """The member URIs of a collection.

    Raises:
        ProtocolError: the document is not a collection.
    """
    members = doc.get("Members")
    if not isinstance(members, list):
        raise ProtocolError("the Systems collection has no Members")
    return [uri for m in members if (uri := _link({"m": m}, "m"))]


def _strings(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def _reset_action(
    node: Any, parameter: str = "ResetType"
) -> ResetAction | None:
    if not isinstance(node, Mapping):
        return None
    target = node.get("target")
    if not isinstance(target, str) or not target:
        return None
    info = node.get("@Redfish.ActionInfo")
    return ResetAction(
        target=target,
        allowed=_strings(node.get(f"{parameter}@Redfish.AllowableValues")),
        action_info=info if isinstance(info, str) else None,
        parameter=parameter,
    )


def _oem_reset(
    actions: Mapping[str, Any], profile: Profile
) -> ResetAction | None:
    if profile.oem_reset is None:
        return None
    suffix, parameter = profile.oem_reset
    oem = actions.get("Oem")
    if not isinstance(oem, Mapping):
        return None
    for key, node in oem.items():
        if isinstance(key, str) and key.endswith(suffix):
            return _reset_action(node, parameter)
    return None


def parse_system(
    doc: Mapping[str, Any], profile: Profile = STANDARD
) -> SystemInfo:
    """Read a ComputerSystem.

    Raises:
        ProtocolError: the document has no ``@odata.id`` or no
            ``PowerState`` member.
    """
    uri = doc.get("@odata.id")
    if not isinstance(uri, str) or not uri:
        raise ProtocolError("the system document has no @odata.id")
    if "PowerState" not in doc:
        raise ProtocolError(f"system {uri} reports no PowerState")
    text = doc.get("PowerState")
    power_text = text if isinstance(text, str) else None
    actions = doc.get("Actions")
    actions = actions if isinstance(actions, Mapping) else {}

    def field(name: str) -> str | None:
        value = doc.get(name)
        return value if isinstance(value, str) and value else None

    return SystemInfo(
        uri=uri,
        id=field("Id"),
        uuid=field("UUID"),
        serial=field("SerialNumber"),
        power_text=power_text,
        power=_POWER.get(power_text or "", PowerState.UNKNOWN),
        reset=_reset_action(actions.get("#ComputerSystem.Reset")),
        oem_reset=_oem_reset(actions, profile),
    )


def parse_action_info(
    doc: Mapping[str, Any], parameter: str = "ResetType"
) -> tuple[str, ...] | None:
    """The allowable values of ``parameter`` in an ActionInfo resource."""
    params = doc.get("Parameters")
    if not isinstance(params, list):
        return None
    for param in params:
        if isinstance(param, Mapping) and param.get("Name") == parameter:
            return _strings(param.get("AllowableValues"))
    return None


def _messages(items: Any) -> list[str]:
    texts = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, Mapping):
            continue
        text = item.get("Message")
        ident = item.get("MessageId")
        if isinstance(text, str) and text:
            texts.append(text)
        elif isinstance(ident, str) and ident:
            texts.append(ident)
    return texts


def error_message(doc: Any) -> str | None:
    """The BMC's own words in a Redfish error body (DSP0266 9.6).

    ``error.message`` comes first, then each ``@Message.ExtendedInfo``
    message (or its MessageId when it has no text), without repeats.
    """
    if not isinstance(doc, Mapping):
        return None
    error = doc.get("error")
    if not isinstance(error, Mapping):
        error = doc
    texts = []
    head = error.get("message")
    if isinstance(head, str) and head:
        texts.append(head)
    texts += _messages(error.get("@Message.ExtendedInfo"))
    unique = list(dict.fromkeys(texts))
    return "; ".join(unique) if unique else None


def parse_task(doc: Mapping[str, Any]) -> tuple[str | None, str | None, str]:
    """A task's TaskState, TaskStatus and messages joined."""
    state = doc.get("TaskState")
    status = doc.get("TaskStatus")
    return (
        state if isinstance(state, str) else None,
        status if isinstance(status, str) else None,
        "; ".join(_messages(doc.get("Messages"))),
    )


def choose_reset(
    action: Action,
    allowed: Sequence[str] | None,
    current: PowerState = PowerState.UNKNOWN,
) -> str:
    """The ResetType that carries out ``action``.

    When the system lists no allowable values, every value is allowed
    (DSP0266 7.4.3) and the first preference is taken. PushPowerButton
    toggles power, so it stands in for ``On`` only when the system was
    just read ``Off``.

    Raises:
        UnsupportedError: none of the values for ``action`` is allowed;
            the message names the allowed ones.
    """
    wanted = _RESET_TYPES.get(action)
    if wanted is None:
        raise UnsupportedError(
            f"Redfish has no reset type for {action.value}",
            action=action.value,
        )
    if allowed is None:
        return wanted[0]
    for value in wanted:
        if value in _TOGGLES and current is not PowerState.OFF:
            continue
        if value in allowed:
            return value
    listed = ", ".join(allowed) or "none"
    raise UnsupportedError(
        f"the system allows no reset type for {action.value}"
        f" (wanted {' or '.join(wanted)}; allowed: {listed})",
        action=action.value,
    )


# -- the driver ------------------------------------------------------------


class RedfishDriver:
    """Power control of one system through its BMC's Redfish service.

    Args:
        host: the BMC's address.
        username: the BMC account.
        password: its password.
        port: the HTTPS port.
        system: the system to act on: its id, URI, UUID or serial
            number; by default the only system of the service (or the
            profile's default).
        ca_file: a PEM file of the CA that signed the BMC's certificate;
            when None, requests' own CA bundle (certifi), never the
            environment's REQUESTS_CA_BUNDLE.
        insecure: do not verify the BMC's certificate (logged at
            WARNING).
        auth: ``auto`` (a Redfish session when offered, else Basic),
            ``session`` or ``basic``.
        profile: ``redfish``, ``irmc``, or None to detect it from the
            service root.
        connect_timeout: the most seconds a connection may take to open;
            by default all that is left of the deadline.

    Raises:
        ConfigError: an option is invalid or the CA file is missing.
    """

    def __init__(
        self,
        host: str,
        *,
        username: str,
        password: Secret,
        port: int = 443,
        system: str | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        insecure: bool = False,
        auth: str = "auto",
        profile: str | None = None,
        connect_timeout: float | None = None,
    ) -> None:
        _validate(host, port, ca_file, insecure, auth, profile)
        if connect_timeout is not None and connect_timeout <= 0:
            raise ConfigError("must be positive", where="connect_timeout")

        self.device = host if port == 443 else f"{host}:{port}"
        self._profile = _PROFILES[profile] if profile else None
        self.method = self._profile.name if self._profile else "redfish"
        self._client = _Client(
            base=f"https://{_bracket(host)}:{port}",
            device=self.device,
            username=username,
            password=password,
            verify=str(ca_file) if ca_file else not insecure,
            auth=auth,
            connect_timeout=connect_timeout,
            system=system,
            profile=self._profile,
        )
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        if insecure:
            _warn_insecure(self.device)

    def __repr__(self) -> str:
        return (
            f"RedfishDriver({self.device!r},"
            f" username={self._client.username!r})"
        )

    async def __aenter__(self) -> RedfishDriver:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def reached(self) -> bool:
        """Whether the service has answered at least once."""
        return self._client.root is not None

    @property
    def profile(self) -> str | None:
        """The profile in use, once configured or detected."""
        profile = self._client.profile
        return profile.name if profile else None

    async def read_state(self, timeout: float) -> PowerState:
        """Read the system's PowerState (``On``, ``Off``, else unknown).

        Raises:
            TransportError: the service could not be read.
            ConfigError: the configured system does not exist.
        """
        state = await self._run(self._client.read_power, timeout)
        self._sync_method()
        return state

    async def send(self, action: Action, timeout: float) -> None:
        """POST the reset that carries out ``ON``, ``OFF`` or ``DIAG``.

        A 202 answer is followed to the end of its task.

        Raises:
            TransportError: the reset was refused (the BMC's message is
                in the error) or not answered.
            UnsupportedError: the system allows no reset for ``action``.
        """

        def reset(deadline: float) -> None:
            self._client.reset(action, deadline)

        await self._run(reset, timeout)
        self._sync_method()

    async def close(self) -> None:
        """Delete the Redfish session and close connections."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._client.close)
        try:
            await asyncio.wait_for(future, _LOGOUT_TIMEOUT + 0.5)
        except (TimeoutError, FencekitError) as exc:
            get_logger(__name__).debug(
                "redfish_logout_abandoned", device=self.device, reason=str(exc)
            )
        finally:
            executor.shutdown(wait=False)

    def _sync_method(self) -> None:
        if self._client.profile is not None:
            self.method = self._client.profile.name

    async def _run(self, call: Callable[[float], T], timeout: float) -> T:
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix=f"fencekit-redfish-{self.device}"
            )
        deadline = time.monotonic() + max(timeout, 0.0)
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, call, deadline)
        try:
            # The thread ends its own request at the deadline; the small
            # margin lets its more precise error arrive first.
            return await asyncio.wait_for(future, max(timeout, 0.0) + 0.25)
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"Redfish service {self.device} did not answer in time",
                device=self.device,
            ) from exc


def _validate(
    host: str,
    port: int,
    ca_file: str | os.PathLike[str] | None,
    insecure: bool,
    auth: str,
    profile: str | None,
) -> None:
    if not host or "/" in host:
        raise ConfigError("must be a host name or address", where="host")
    if not 0 < port < 65536:
        raise ConfigError("must be 1-65535", where="port")
    if auth not in AUTH_MODES:
        raise ConfigError(
            f"must be one of {', '.join(AUTH_MODES)}", where="auth"
        )
    if profile is not None and profile not in _PROFILES:
        raise ConfigError(
            f"must be one of {', '.join(_PROFILES)}", where="profile"
        )
    if ca_file and insecure:
        raise ConfigError(
            "a CA file and insecure exclude each other", where="ca_file"
        )
    if ca_file and not os.path.isfile(ca_file):
        raise ConfigError(f"no such file: {ca_file}", where="ca_file")


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _warn_insecure(device: str) -> None:
    import urllib3

    get_logger(__name__).warning(
        "redfish_tls_unverified",
        device=device,
        reason="certificate verification is off by configuration",
    )
    # urllib3 warns on every unverified request; the WARNING above says
    # it once per device. This filter is process-wide and only silences
    # that one warning class.
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)


class _Client:
    """The blocking half of the driver; runs in the worker thread only."""

    def __init__(
        self,
        *,
        base: str,
        device: str,
        username: str,
        password: Secret,
        verify: str | bool,
        auth: str,
        connect_timeout: float | None,
        system: str | None,
        profile: Profile | None,
    ) -> None:
        self.base = base
        self.device = device
        self.username = username
        self.password = password
        self.verify = verify
        self.auth = auth
        self.connect_timeout = connect_timeout
        self.system = system
        self.profile = profile
        self.root: ServiceRoot | None = None
        self.mode: str | None = None
        self.token: Secret | None = None
        self.session_uri: str | None = None
        self.system_uri: str | None = None
        self.latest: SystemInfo | None = None
        self.allowed_cache: dict[str, tuple[str, ...] | None] = {}
        self._http: Any = None
        self._warned_basic = False

    # -- operations ---------------------------------------------------------

    def read_power(self, deadline: float) -> PowerState:
        if self.system_uri is None:
            info = self._discover(deadline)
        else:
            info = self._read_system(self.system_uri, deadline)
        self.latest = info
        if info.power is PowerState.UNKNOWN:
            get_logger(__name__).debug(
                "redfish_power_transitional",
                device=self.device,
                power_state=info.power_text,
            )
        return info.power

    def reset(self, action: Action, deadline: float) -> None:
        info = self.latest
        if info is None or self.system_uri is None:
            self.read_power(deadline)
            info = self.latest
        assert info is not None

        standard = info.reset
        oem = info.oem_reset if self._profile().oem_reset else None
        if standard is None and oem is None:
            raise UnsupportedError(
                f"system {info.uri} offers no reset action",
                device=self.device,
                action=action.value,
            )
        if standard is None:
            assert oem is not None
            self._oem(oem, action, deadline)
            return

        try:
            allowed = self._allowed(standard, deadline)
            value = choose_reset(action, allowed, info.power)
        except UnsupportedError as exc:
            if oem is None:
                raise self._refine(exc, action) from None
            self._fallback_note(action, str(exc))
            self._oem(oem, action, deadline)
            return

        try:
            self._post(standard, value, deadline)
        except ProtocolError as exc:
            if oem is None or exc.transient or exc.code not in (400, 405):
                raise
            self._fallback_note(action, str(exc))
            self._oem(oem, action, deadline)

    def close(self) -> None:
        http, self._http = self._http, None
        if http is None:
            return
        try:
            if self.session_uri and self.token is not None:
                self._logout(http)
        finally:
            self.token = self.session_uri = None
            http.close()

    # -- discovery ----------------------------------------------------------

    def _discover(self, deadline: float) -> SystemInfo:
        root = self._service_root(deadline)
        if self.profile is None:
            self.profile = IRMC if root.irmc else STANDARD
        self._decide_auth(root, deadline)

        info = self._find_system(root, deadline)
        self.system_uri = info.uri
        get_logger(__name__).debug(
            "redfish_system_found",
            device=self.device,
            system=info.uri,
            profile=self._profile().name,
            auth=self.mode,
        )
        return info

    def _service_root(self, deadline: float) -> ServiceRoot:
        # DSP0266 13.3.1: the service root answers without credentials;
        # some BMCs still ask for them, and then Basic is sent.
        response = self._send("GET", "/redfish/v1/", deadline, auth=False)
        if response.status_code == 401:
            response = self._send("GET", "/redfish/v1/", deadline, basic=True)
        doc = self._json(self._check(response), "service root")
        self.root = parse_service_root(doc)
        return self.root

    def _find_system(self, root: ServiceRoot, deadline: float) -> SystemInfo:
        systems = root.systems or "/redfish/v1/Systems"
        wanted = self.system or self._profile().default_system
        if wanted and wanted.startswith("/"):
            return self._read_system(wanted, deadline)
        if wanted and "/" not in wanted:
            # An id names the member directly: one round trip instead of
            # the collection, then each member.
            uri = f"{systems.rstrip('/')}/{wanted}"
            info = self._try_system(uri, deadline)
            if info is not None:
                return info

        doc = self._json(self._get(systems, deadline), "Systems collection")
        members = parse_members(doc)
        if not wanted:
            if len(members) == 1:
                return self._read_system(members[0], deadline)
            ids = ", ".join(m.rsplit("/", 1)[-1] for m in members) or "none"
            raise ConfigError(
                f"{self.device} has {len(members)} systems ({ids}):"
                " choose one",
                where="system",
            )
        for uri in members:
            info = self._read_system(uri, deadline)
            if _matches(info, wanted):
                return info
        raise ConfigError(
            f"{self.device} has no system with id, UUID or serial number"
            f" {wanted}",
            where="system",
        )

    def _try_system(self, uri: str, deadline: float) -> SystemInfo | None:
        response = self._authed("GET", uri, deadline)
        if response.status_code == 404:
            return None
        doc = self._json(self._check(response), f"system {uri}")
        return parse_system(doc, self._profile())

    def _read_system(self, uri: str, deadline: float) -> SystemInfo:
        doc = self._json(self._get(uri, deadline), f"system {uri}")
        return parse_system(doc, self._profile())

    def _profile(self) -> Profile:
        return self.profile or STANDARD

    # -- authentication -----------------------------------------------------

    def _decide_auth(self, root: ServiceRoot, deadline: float) -> None:
        if self.auth == "basic":
            self.mode = "basic"
            return
        if root.sessions is None:
            if self.auth == "session":
                raise UnsupportedError(
                    f"{self.device} offers no Redfish sessions",
                    device=self.device,
                )
            self._basic_fallback("the service root lists no sessions")
            return
        self._login(root.sessions, deadline)

    def _login(self, sessions: str, deadline: float) -> None:
        body = {
            "UserName": self.username,
            "Password": self.password.reveal(),
        }
        response = self._send("POST", sessions, deadline, body=body)
        if response.status_code in (404, 405, 501) and self.auth == "auto":
            self._basic_fallback(
                f"session login answered HTTP {response.status_code}"
            )
            return
        self._check(response)
        token = response.headers.get("X-Auth-Token")
        if not token:
            raise ProtocolError(
                f"{self.device} created a session without X-Auth-Token",
                device=self.device,
            )
        self.mode = "session"
        self.token = Secret(token, source="Redfish session")
        location = response.headers.get("Location") or _odata_id(response)
        self.session_uri = _path(location) if location else None

    def _basic_fallback(self, reason: str) -> None:
        self.mode = "basic"
        if not self._warned_basic:
            self._warned_basic = True
            get_logger(__name__).warning(
                "redfish_basic_auth", device=self.device, reason=reason
            )

    def _logout(self, http: Any) -> None:
        assert self.session_uri is not None and self.token is not None
        headers = dict(_HEADERS, **{"X-Auth-Token": self.token.reveal()})
        try:
            http.delete(
                self.base + self.session_uri,
                headers=headers,
                timeout=(_LOGOUT_TIMEOUT, _LOGOUT_TIMEOUT),
                allow_redirects=False,
            )
        except Exception as exc:
            # A session left behind expires on the BMC's own timer.
            get_logger(__name__).debug(
                "redfish_logout_failed",
                device=self.device,
                reason=type(exc).__name__,
            )

    # -- reset --------------------------------------------------------------

    def _allowed(
        self, reset: ResetAction, deadline: float
    ) -> tuple[str, ...] | None:
        if reset.allowed is not None or reset.action_info is None:
            return reset.allowed
        uri = reset.action_info
        if uri not in self.allowed_cache:
            doc = self._json(self._get(uri, deadline), f"ActionInfo {uri}")
            self.allowed_cache[uri] = parse_action_info(doc, reset.parameter)
        return self.allowed_cache[uri]

    def _oem(
        self, reset: ResetAction, action: Action, deadline: float
    ) -> None:
        value = self._profile().oem_types.get(action)
        if value is None:
            raise UnsupportedError(
                f"no OEM reset type for {action.value}",
                device=self.device,
                action=action.value,
            )
        allowed = self._allowed(reset, deadline)
        if allowed is not None and value not in allowed:
            raise UnsupportedError(
                f"the OEM reset does not allow {value}"
                f" (allowed: {', '.join(allowed) or 'none'})",
                device=self.device,
                action=action.value,
            )
        self._post(reset, value, deadline)

    def _fallback_note(self, action: Action, reason: str) -> None:
        get_logger(__name__).warning(
            "redfish_oem_reset",
            device=self.device,
            action=action.value,
            profile=self._profile().name,
            reason=reason,
        )

    def _refine(self, exc: UnsupportedError, action: Action) -> FencekitError:
        return UnsupportedError(
            f"{self.device}: {exc}", device=self.device, action=action.value
        )

    def _post(self, reset: ResetAction, value: str, deadline: float) -> None:
        body = {reset.parameter: value}
        get_logger(__name__).debug(
            "redfish_reset", device=self.device, target=reset.target, to=value
        )
        response = self._check(
            self._authed("POST", reset.target, deadline, body=body)
        )
        if response.status_code == 202:
            self._follow_task(response, deadline)

    def _follow_task(self, accepted: Any, deadline: float) -> None:
        """Poll a task monitor (DSP0266 13.2.6) until its task ends."""
        monitor = accepted.headers.get("Location") or _odata_id(accepted)
        if not monitor:
            raise ProtocolError(
                f"{self.device} accepted the reset as a task but named no"
                " task monitor",
                device=self.device,
            )
        uri = _path(monitor)
        while True:
            response = self._check(self._authed("GET", uri, deadline))
            if response.status_code == 202:
                self._pause(deadline)
                continue
            if response.status_code == 204 or not response.content:
                return
            state, status, text = parse_task(self._json(response, "task"))
            if state not in _TASK_DONE:
                self._pause(deadline)
                continue
            if state == "Completed" and status in (None, "OK", "Warning"):
                return
            raise ProtocolError(
                f"{self.device}: reset task ended {state}"
                + (f" ({status})" if status else "")
                + (f": {text}" if text else ""),
                device=self.device,
            )

    def _pause(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeviceTimeoutError(
                f"{self.device}: reset task still running at the deadline",
                device=self.device,
            )
        time.sleep(min(_TASK_POLL, left))

    # -- HTTP ---------------------------------------------------------------

    def _get(self, uri: str, deadline: float) -> Any:
        return self._check(self._authed("GET", uri, deadline))

    def _authed(
        self,
        method: str,
        uri: str,
        deadline: float,
        body: Mapping[str, Any] | None = None,
    ) -> Any:
        response = self._send(method, uri, deadline, body=body)
        if response.status_code != 401 or self.mode != "session":
            return response
        # The token expired or was revoked: log in again, once.
        get_logger(__name__).info("redfish_relogin", device=self.device)
        self.token = self.session_uri = None
        assert self.root is not None and self.root.sessions is not None
        self._login(self.root.sessions, deadline)
        return self._send(method, uri, deadline, body=body)

    def _send(
        self,
        method: str,
        uri: str,
        deadline: float,
        *,
        body: Mapping[str, Any] | None = None,
        auth: bool = True,
        basic: bool = False,
    ) -> Any:
        """One HTTP request, its failures translated in this one place."""
        import requests

        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DeviceTimeoutError(
                f"deadline passed before {method} {uri}", device=self.device
            )
        connect = remaining
        if self.connect_timeout is not None:
            connect = min(remaining, self.connect_timeout)
        # One stalled answer must not use up the whole deadline: a read
        # may take half of what is left (at least _MIN_READ seconds), so
        # a retry still fits.
        read = min(remaining, max(_MIN_READ, remaining * _READ_SHARE))

        headers = dict(_HEADERS)
        if body is not None:
            headers.update(_JSON_BODY)
        credentials = None
        if auth and self.mode == "session" and self.token is not None:
            headers["X-Auth-Token"] = self.token.reveal()
        elif basic or (auth and self.mode == "basic"):
            credentials = (self.username, self.password.reveal())

        try:
            return self._session().request(
                method,
                self.base + _path(uri),
                headers=headers,
                json=body,
                auth=credentials,
                timeout=(connect, read),
                allow_redirects=False,
            )
        except requests.exceptions.RequestException as exc:
            raise _translate(exc, self.device, method, uri) from exc

    def _session(self) -> Any:
        if self._http is None:
            import requests

            # TODO: no per-device TLS protocol or cipher override; iRMC S4
            # firmware reported to need legacy ciphers (OpenSSL SECLEVEL=0)
            # cannot be reached until an HTTPAdapter with its own context
            # is offered as an option.
            http = requests.Session()
            # requests lets REQUESTS_CA_BUNDLE (and .netrc, proxies) from
            # the environment override Session.verify: a BMC's trust is
            # its configured CA file and nothing else.
            http.trust_env = False
            http.verify = self.verify
            self._http = http
        return self._http

    def _check(self, response: Any) -> Any:
        status = int(response.status_code)
        if 200 <= status < 300:
            return response
        said = error_message(_maybe_json(response))
        reason = f"HTTP {status}" + (f": {said}" if said else "")
        where = f"{self.device} {response.request.method} {_path_of(response)}"
        if status in (401, 403):
            raise AuthenticationError(
                f"{where} refused the credentials ({reason})",
                device=self.device,
            )
        raise ProtocolError(
            f"{where} answered {reason}",
            code=status,
            transient=status in _TRANSIENT_STATUS,
            device=self.device,
        )

    def _json(self, response: Any, what: str) -> Mapping[str, Any]:
        doc = _maybe_json(response)
        if not isinstance(doc, Mapping):
            # A reply cut or garbled on the way: asking again may work.
            raise ProtocolError(
                f"{self.device}: the {what} is not a JSON object",
                transient=True,
                device=self.device,
            )
        return doc


def _matches(info: SystemInfo, wanted: str) -> bool:
    low = wanted.lower()
    return (
        info.id == wanted
        or (info.uuid or "").lower() == low
        or info.serial == wanted
    )


def _maybe_json(response: Any) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _odata_id(response: Any) -> str | None:
    doc = _maybe_json(response)
    if isinstance(doc, Mapping):
        uri = doc.get("@odata.id")
        return uri if isinstance(uri, str) else None
    return None


def _path(uri: str) -> str:
    """The path (and query) of a URI the BMC gave, absolute or not.

    Requests always go to the configured host: a BMC naming another host
    in a Location header does not redirect credentials there.
    """
    parts = urlsplit(uri)
    path = parts.path or "/"
    if not path.startswith("/"):
        path = "/" + path
    return path + (f"?{parts.query}" if parts.query else "")


def _path_of(response: Any) -> str:
    return urlsplit(str(response.request.url)).path


def _translate(
    exc: Exception, device: str, method: str, uri: str
) -> TransportError:
    """Map a requests failure to the most specific fencekit error."""
    import requests
    import urllib3

    where = f"{device} {method} {_path(uri)}"
    name = type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError):
        return ProtocolError(
            f"{where}: TLS failed (certificate not trusted, or no common"
            f" protocol): {_reason(exc)}",
            device=device,
        )
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return UnreachableError(
            f"no connection to {device} within the deadline", device=device
        )
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return DeviceTimeoutError(
            f"{where}: no answer within the deadline", device=device
        )
    if isinstance(exc, requests.exceptions.ConnectionError):
        inner = exc.args[0] if exc.args else None
        reason = getattr(inner, "reason", inner)
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return UnreachableError(
                f"cannot connect to {device}: {_reason(exc)}", device=device
            )
        return ProtocolError(
            f"{where}: connection dropped ({name})",
            transient=True,
            device=device,
        )
    return ProtocolError(f"{where}: {name}", transient=True, device=device)


def _reason(exc: Exception) -> str:
    """The innermost readable reason, without URLs or pool details."""
    inner: Any = exc.args[0] if exc.args else exc
    inner = getattr(inner, "reason", inner)
    text = str(inner)
    if ": " in text and "HTTPSConnection" in text:
        text = text.split(": ", 1)[1]
    return text.strip("()'\" ") or type(exc).__name__
