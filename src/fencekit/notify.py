"""SNMP notifications, as defined by ``mibs/FENCEKIT-MIB``.

A :class:`Notifier` sends each :class:`Notification` to every configured
:class:`Destination`: SNMPv2c traps, or SNMPv3 traps and informs. Every
destination has its own pysnmp engine and a bounded number of retries
(informs only: a trap is never acknowledged), and destinations are
served at the same time, so one slow manager delays no other.

The notifier subscribes to the two places events come from:

- the monitor: ``monitor.subscribe(notifier.on_check_event)`` sends
  ``fencekitCheckDown`` and ``fencekitCheckUp``;
- the fencer: ``Fencer(..., on_event=notifier.on_fence_record)`` sends
  ``fencekitNodeFenced`` and ``fencekitFenceFailed`` from the journal's
  ``outcome`` records, and ``fencekitDeviceUnreachable`` from
  ``attempt`` records whose ``error`` names a transport failure;
  ``Fencer.check(on_result=notifier.on_device_check)`` sends it for
  devices that fail a check.

The fencer's hook only schedules the sending and returns: a
notification never delays a fence. :meth:`Notifier.aclose` waits (a
bounded time) for notifications still being sent.

:data:`NOTIFICATIONS` and :data:`OBJECTS` are the code's copy of the
MIB; a test compiles the MIB and checks every notification against it.

The MIB's enterprise number (``mib_root``) is configurable: the MIB sits
under 32473, the number set aside for documentation (RFC 5612), until
fencekit has a registered one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import string
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from fencekit._log import get_logger
from fencekit._snmp import (
    SnmpCredentials,
    check_oid,
    close_engine,
    new_engine,
    send_notification,
)
from fencekit.errors import ConfigError, FencekitError
from fencekit.outcome import Action, FenceOutcome

if TYPE_CHECKING:
    from fencekit.fencing import CheckResult
    from fencekit.monitor import Event

__all__ = [
    "ACTION_VALUES",
    "CHECK_STATE_VALUES",
    "DEFAULT_MIB_ROOT",
    "NOTIFICATIONS",
    "OBJECTS",
    "Delivery",
    "Destination",
    "Notification",
    "Notifier",
    "check_down",
    "check_up",
    "device_unreachable",
    "fence_failed",
    "from_outcome",
    "node_fenced",
    "parse_config",
]

#: fencekitMIB's OID: enterprises.32473 (RFC 5612's example number).
DEFAULT_MIB_ROOT: Final = "1.3.6.1.4.1.32473"

#: Each object: its number under fencekitObjects (root.1), and its kind:
#: ``text`` (DisplayString), ``unsigned`` (Unsigned32), ``action``
#: (FencekitActionType) or ``check_state`` (FencekitCheckStateType).
OBJECTS: Final[Mapping[str, tuple[int, str]]] = {
    "fencekitNode": (1, "text"),
    "fencekitDevice": (2, "text"),
    "fencekitMethod": (3, "text"),
    "fencekitAction": (4, "action"),
    "fencekitReason": (5, "text"),
    "fencekitDuration": (6, "unsigned"),
    "fencekitCheckName": (7, "text"),
    "fencekitCheckState": (8, "check_state"),
}

#: Each notification: its number under fencekitNotifications (root.0)
#: and its objects, in the MIB's order.
NOTIFICATIONS: Final[Mapping[str, tuple[int, tuple[str, ...]]]] = {
    "fencekitNodeFenced": (
        1,
        (
            "fencekitNode",
            "fencekitDevice",
            "fencekitMethod",
            "fencekitAction",
            "fencekitDuration",
        ),
    ),
    "fencekitFenceFailed": (
        2,
        (
            "fencekitNode",
            "fencekitDevice",
            "fencekitMethod",
            "fencekitAction",
            "fencekitDuration",
            "fencekitReason",
        ),
    ),
    "fencekitCheckDown": (
        3,
        (
            "fencekitCheckName",
            "fencekitNode",
            "fencekitCheckState",
            "fencekitReason",
        ),
    ),
    "fencekitCheckUp": (
        4,
        ("fencekitCheckName", "fencekitNode", "fencekitCheckState"),
    ),
    "fencekitDeviceUnreachable": (
        5,
        (
            "fencekitNode",
            "fencekitDevice",
            "fencekitMethod",
            "fencekitReason",
        ),
    ),
}

#: FencekitActionType's values.
ACTION_VALUES: Final[Mapping[Action, int]] = {
    Action.STATUS: 1,
    Action.ON: 2,
    Action.OFF: 3,
    Action.REBOOT: 4,
    Action.DIAG: 5,
}

#: FencekitCheckStateType's values, by the monitor's state names.
CHECK_STATE_VALUES: Final[Mapping[str, int]] = {
    "up": 1,
    "down": 2,
    "unknown": 3,
}

# SNMPv2-MIB (RFC 3418): snmpTrapOID.0, the notification's identity,
# and sysUpTime.0, which RFC 3416 section 4.2.6 puts first.
_SNMP_TRAP_OID: Final = "1.3.6.1.6.3.1.1.4.1.0"
_SYS_UPTIME: Final = "1.3.6.1.2.1.1.3.0"
# DisplayString (RFC 2579): printable ASCII, at most 255 octets.
_TEXT_MAX: Final = 255
_PRINTABLE: Final = frozenset(string.printable) - set("\x0b\x0c")
_UNSIGNED_MAX: Final = 2**32 - 1
# Errors that mean the device did not answer or refused fencekit.
_UNREACHABLE_ERRORS: Final = frozenset(
    {"UnreachableError", "DeviceTimeoutError", "AuthenticationError"}
)
_CLOSE_TIMEOUT: Final = 30.0


@dataclasses.dataclass(frozen=True)
class Notification:
    """One notification of FENCEKIT-MIB, with its objects' values.

    Attributes:
        name: the notification's name in the MIB.
        values: each object's value by its MIB name: ``str`` for text,
            ``int`` for numbers and enumerations.

    Raises:
        ConfigError: the name or an object is not in the MIB.
    """

    name: str
    values: Mapping[str, str | int]

    def __post_init__(self) -> None:
        if self.name not in NOTIFICATIONS:
            raise ConfigError(f"no notification {self.name} in the MIB")
        wanted = NOTIFICATIONS[self.name][1]
        if tuple(self.values) != wanted:
            raise ConfigError(
                f"{self.name} carries {', '.join(wanted)}", where="values"
            )

    def oid(self, root: str = DEFAULT_MIB_ROOT) -> str:
        """The notification's OID under ``root``."""
        return f"{root}.0.{NOTIFICATIONS[self.name][0]}"

    def var_binds(self, root: str = DEFAULT_MIB_ROOT) -> list[tuple[str, Any]]:
        """``snmpTrapOID.0`` then each object, as pysnmp values.

        Scalar objects are sent with instance ``.0`` (RFC 2578 section
        7.1.12: accessible-for-notify scalars).
        """
        from pysnmp.proto.rfc1902 import (
            Integer,
            ObjectIdentifier,
            OctetString,
            Unsigned32,
        )

        binds: list[tuple[str, Any]] = [
            (_SNMP_TRAP_OID, ObjectIdentifier(self.oid(root)))
        ]
        for name, value in self.values.items():
            number, kind = OBJECTS[name]
            oid = f"{root}.1.{number}.0"
            if kind == "text":
                binds.append((oid, OctetString(str(value).encode("ascii"))))
            elif kind == "unsigned":
                binds.append((oid, Unsigned32(int(value))))
            else:
                binds.append((oid, Integer(int(value))))
        return binds


def _text(value: object) -> str:
    """A DisplayString: printable ASCII, cut to 255 characters."""
    text = "".join(c if c in _PRINTABLE else "?" for c in str(value or ""))
    return text[:_TEXT_MAX]


def _millis(seconds: float) -> int:
    return max(0, min(_UNSIGNED_MAX, round(seconds * 1000)))


def node_fenced(
    node: str, device: str, method: str, action: Action, duration: float
) -> Notification:
    """``fencekitNodeFenced``: a verified fence."""
    return Notification(
        "fencekitNodeFenced",
        {
            "fencekitNode": _text(node),
            "fencekitDevice": _text(device),
            "fencekitMethod": _text(method),
            "fencekitAction": ACTION_VALUES[action],
            "fencekitDuration": _millis(duration),
        },
    )


def fence_failed(
    node: str,
    device: str,
    method: str,
    action: Action,
    duration: float,
    reason: str,
) -> Notification:
    """``fencekitFenceFailed``: a fence that did not end verified."""
    return Notification(
        "fencekitFenceFailed",
        {
            "fencekitNode": _text(node),
            "fencekitDevice": _text(device),
            "fencekitMethod": _text(method),
            "fencekitAction": ACTION_VALUES[action],
            "fencekitDuration": _millis(duration),
            "fencekitReason": _text(reason),
        },
    )


def check_down(check: str, node: str | None, reason: str) -> Notification:
    """``fencekitCheckDown``: a health check is now down."""
    return Notification(
        "fencekitCheckDown",
        {
            "fencekitCheckName": _text(check),
            "fencekitNode": _text(node),
            "fencekitCheckState": CHECK_STATE_VALUES["down"],
            "fencekitReason": _text(reason),
        },
    )


def check_up(check: str, node: str | None) -> Notification:
    """``fencekitCheckUp``: a health check that was down passes again."""
    return Notification(
        "fencekitCheckUp",
        {
            "fencekitCheckName": _text(check),
            "fencekitNode": _text(node),
            "fencekitCheckState": CHECK_STATE_VALUES["up"],
        },
    )


def device_unreachable(
    node: str | None, device: str, method: str, reason: str
) -> Notification:
    """``fencekitDeviceUnreachable``: a fence device did not answer or
    refused the credentials."""
    return Notification(
        "fencekitDeviceUnreachable",
        {
            "fencekitNode": _text(node),
            "fencekitDevice": _text(device),
            "fencekitMethod": _text(method),
            "fencekitReason": _text(reason),
        },
    )


def from_outcome(outcome: FenceOutcome) -> Notification:
    """``fencekitNodeFenced`` or ``fencekitFenceFailed`` for a fence."""
    if outcome.success:
        return node_fenced(
            outcome.node,
            outcome.device,
            outcome.method,
            outcome.action,
            outcome.duration,
        )
    return fence_failed(
        outcome.node,
        outcome.device,
        outcome.method,
        outcome.action,
        outcome.duration,
        outcome.reason or "not verified",
    )


@dataclasses.dataclass(frozen=True)
class Destination:
    """One SNMP manager that receives fencekit's notifications.

    Attributes:
        host: its address.
        port: its UDP port (162).
        credentials: SNMPv2c community, or SNMPv3 user and keys; for
            SNMPv3 traps, ``engine_id`` is fencekit's engine ID, which
            the manager must know.
        inform: send informs (acknowledged, retried) instead of traps.
        timeout: seconds to wait for each inform's acknowledgement.
        retries: resends of an unacknowledged inform.
        name: the destination's name, for logs.

    Raises:
        ConfigError: an SNMPv3 trap without ``engine_id``, or a bad
            number.
    """

    host: str
    credentials: SnmpCredentials
    port: int = 162
    inform: bool = False
    timeout: float = 5.0
    retries: int = 2
    name: str = ""

    def __post_init__(self) -> None:
        v3_trap = self.credentials.version == "3" and not self.inform
        if v3_trap and self.credentials.engine_id is None:
            raise ConfigError(
                "SNMPv3 traps need fencekit's engine_id, which the"
                " manager knows the user under",
                where="engine_id",
            )
        if self.credentials.version == "1":
            raise ConfigError(
                "notifications are SNMPv2c or SNMPv3", where="version"
            )
        if not self.timeout > 0:
            raise ConfigError("must be above zero", where="timeout")
        if not 0 <= self.retries <= 10:
            raise ConfigError("must be between 0 and 10", where="retries")

    @property
    def label(self) -> str:
        """The name, or ``host:port``."""
        return self.name or f"{self.host}:{self.port}"

    @property
    def budget(self) -> float:
        """The longest one notification to this destination may take."""
        return self.timeout * (self.retries + 1) + 1.0


@dataclasses.dataclass(frozen=True)
class Delivery:
    """What became of one notification at one destination.

    Attributes:
        destination: the destination's label.
        notification: the notification's name.
        error: why it failed; None when sent (trap) or acknowledged
            (inform).
    """

    destination: str
    notification: str
    error: FencekitError | None = None

    @property
    def ok(self) -> bool:
        """Whether it was sent (trap) or acknowledged (inform)."""
        return self.error is None


class Notifier:
    """Sends FENCEKIT-MIB notifications to every destination.

    Args:
        destinations: the managers to notify.
        mib_root: the OID of fencekitMIB (see the MIB's description).

    Raises:
        ConfigError: ``mib_root`` is not a numeric OID.
    """

    def __init__(
        self,
        destinations: Sequence[Destination],
        *,
        mib_root: str = DEFAULT_MIB_ROOT,
    ) -> None:
        self.destinations = tuple(destinations)
        self.mib_root = check_oid(mib_root, "mib_root")
        self._engines: dict[int, Any] = {}
        self._pending: set[asyncio.Task[list[Delivery]]] = set()
        self._log = get_logger(__name__)
        self._started = time.monotonic()

    def __repr__(self) -> str:
        labels = ", ".join(d.label for d in self.destinations)
        return f"Notifier([{labels}])"

    async def send(self, notification: Notification) -> list[Delivery]:
        """Send ``notification`` to every destination at once.

        Never raises for a destination that fails: its
        :class:`Delivery` carries the error (an
        :class:`~fencekit.errors.AuthenticationError` for a refused
        SNMPv3 key, a :class:`~fencekit.errors.DeviceTimeoutError` for an
        inform never acknowledged), and a warning is logged.

        Returns:
            One delivery per destination, in configuration order.
        """
        return list(
            await asyncio.gather(
                *(
                    self._deliver(index, destination, notification)
                    for index, destination in enumerate(self.destinations)
                )
            )
        )

    def submit(
        self, notification: Notification
    ) -> asyncio.Task[list[Delivery]]:
        """Schedule :meth:`send` and return at once (a running loop is
        needed); :meth:`aclose` waits for what is still pending."""
        task = asyncio.get_running_loop().create_task(self.send(notification))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _deliver(
        self, index: int, destination: Destination, notification: Notification
    ) -> Delivery:
        engine = self._engines.get(index)
        if engine is None:
            # A dedicated engine per destination: see _snmp.new_engine.
            engine = new_engine(destination.credentials.engine_id)
            self._engines[index] = engine
        error: FencekitError | None = None
        try:
            await asyncio.wait_for(
                send_notification(
                    engine,
                    destination.credentials,
                    destination.host,
                    destination.port,
                    inform=destination.inform,
                    var_binds=self._var_binds(notification),
                    timeout=destination.timeout,
                    retries=destination.retries if destination.inform else 0,
                ),
                destination.budget,
            )
        except FencekitError as exc:
            error = exc
        except TimeoutError as exc:
            from fencekit.errors import DeviceTimeoutError

            error = DeviceTimeoutError(
                f"no acknowledgement from {destination.label}",
                device=destination.label,
            )
            error.__cause__ = exc
        self._report(destination, notification, error)
        return Delivery(destination.label, notification.name, error)

    def _var_binds(self, notification: Notification) -> list[tuple[str, Any]]:
        """sysUpTime.0 (hundredths of a second since this notifier was
        made), then the notification's own var-binds."""
        from pysnmp.proto.rfc1902 import TimeTicks

        ticks = int((time.monotonic() - self._started) * 100) % 2**32
        uptime = (_SYS_UPTIME, TimeTicks(ticks))
        return [uptime, *notification.var_binds(self.mib_root)]

    def _report(
        self,
        destination: Destination,
        notification: Notification,
        error: FencekitError | None,
    ) -> None:
        fields = {
            "destination": destination.label,
            "notification": notification.name,
            "inform": destination.inform,
        }
        if error is None:
            self._log.debug("notification_sent", **fields)
        else:
            self._log.warning(
                "notification_failed", **fields, reason=str(error)
            )

    async def on_check_event(self, event: Event) -> None:
        """Monitor subscriber: check down, and up again after down."""
        state = event.state.value
        if state == "down":
            await self.send(
                check_down(event.check, event.node, event.outcome.reason)
            )
        elif state == "up" and event.previous.value == "down":
            await self.send(check_up(event.check, event.node))

    def on_fence_record(self, record: Mapping[str, Any]) -> None:
        """Fencer ``on_event`` hook: schedules the notification and
        returns at once, so it never delays the fence."""
        notification = _from_record(record)
        if notification is not None:
            self.submit(notification)

    def on_device_check(self, result: CheckResult) -> None:
        """``Fencer.check`` ``on_result`` hook: a failed device check
        schedules ``fencekitDeviceUnreachable``."""
        if not result.ok:
            self.submit(
                device_unreachable(
                    None,
                    result.address,
                    result.driver,
                    result.reason or "no answer",
                )
            )

    async def aclose(self) -> None:
        """Wait a bounded time for pending notifications, then close."""
        pending = list(self._pending)
        if pending:
            budget = max((d.budget for d in self.destinations), default=1.0)
            _done, late = await asyncio.wait(
                pending, timeout=min(budget, _CLOSE_TIMEOUT)
            )
            for task in late:
                task.cancel()
        engines, self._engines = self._engines, {}
        for engine in engines.values():
            close_engine(engine)


def _from_record(record: Mapping[str, Any]) -> Notification | None:
    """The notification a fencer journal record calls for, if any."""
    event = record.get("event")
    try:
        action = Action.parse(str(record.get("action", "off")))
    except ValueError:
        return None
    if event == "outcome":
        duration = float(record.get("duration") or 0.0)
        node = str(record.get("node", ""))
        device = str(record.get("device") or "")
        method = str(record.get("method") or "")
        if record.get("success") or record.get("verified"):
            return node_fenced(node, device, method, action, duration)
        reason = str(record.get("reason") or "not verified")
        return fence_failed(node, device, method, action, duration, reason)
    # An attempt record names its error's class: a transport failure
    # during a fence is a device that could not be reached.
    if event == "attempt" and record.get("error") in _UNREACHABLE_ERRORS:
        return device_unreachable(
            str(record.get("node", "")),
            str(record.get("address") or record.get("device") or ""),
            str(record.get("method") or ""),
            str(record.get("reason") or "no answer"),
        )
    return None


def parse_config(
    table: Mapping[str, Any], where: str = "notifications"
) -> Notifier:
    """Build a notifier from a ``[notifications]`` table::

        [notifications]
        mib_root = "1.3.6.1.4.1.32473"      # optional

        [notifications.destinations.noc]
        host = "192.0.2.10"
        port = 162
        version = "2c"                       # or "3"
        community_file = "/etc/fencekit/trap-community"
        mode = "trap"                        # or "inform"
        timeout = 5
        retries = 2

        [notifications.destinations.secure]
        host = "192.0.2.11"
        version = "3"
        mode = "inform"
        user = "fencekit"
        auth_protocol = "sha256"
        auth_key_file = "/etc/fencekit/snmp-auth"
        priv_protocol = "aes"
        priv_key_file = "/etc/fencekit/snmp-priv"
        # engine_id = "80001f8880..."       # SNMPv3 traps: required

    Secrets are given as ``NAME_file``, ``NAME_env`` or ``NAME_command``,
    never as values.

    Raises:
        ConfigError: a key is missing, unknown or invalid; the message
            names it.
        SecretError: a secret's source gave nothing.
    """
    for key in table:
        if key not in ("mib_root", "destinations"):
            raise ConfigError("unknown key", where=f"{where}.{key}")
    mib_root = table.get("mib_root", DEFAULT_MIB_ROOT)
    if not isinstance(mib_root, str):
        raise ConfigError("must be a string", where=f"{where}.mib_root")
    raw = table.get("destinations")
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            "needs at least one [destinations.NAME] table",
            where=f"{where}.destinations",
        )
    built = [
        _destination(name, entry, f"{where}.destinations.{name}")
        for name, entry in raw.items()
    ]
    try:
        return Notifier(built, mib_root=mib_root)
    except ConfigError as exc:
        raise ConfigError(
            exc.message.removeprefix("mib_root: "), where=f"{where}.mib_root"
        ) from exc


def _destination(name: str, entry: Any, where: str) -> Destination:
    from fencekit.probes._options import Options

    if not isinstance(entry, Mapping):
        raise ConfigError("must be a table", where=where)
    options = Options(entry, where)
    # Options.fail already names the key in full: only the errors of
    # the constructors below need the table's location added.
    mode = options.choice("mode", ("trap", "inform"), "trap")
    values = {
        "version": options.choice("version", ("2c", "3"), "2c"),
        "community": options.secret("community"),
        "user": options.text("user", None),
        "auth_protocol": options.choice("auth_protocol", _auth_names(), "sha"),
        "auth_key": options.secret("auth_key"),
        "priv_protocol": options.choice("priv_protocol", _priv_names(), "aes"),
        "priv_key": options.secret("priv_key"),
        "engine_id": options.text("engine_id", None),
    }
    host = options.text("host")
    port = options.integer("port", 162, minimum=1)
    timeout = float(options.number("timeout", 5.0, minimum=0.001))
    retries = options.integer("retries", 2)
    with options.located():
        destination = Destination(
            host=host,
            port=port,
            credentials=SnmpCredentials(**values),
            inform=mode == "inform",
            timeout=timeout,
            retries=retries,
            name=name,
        )
    options.finish()
    return destination


def _auth_names() -> tuple[str, ...]:
    from fencekit._snmp import AUTH_PROTOCOLS

    return tuple(AUTH_PROTOCOLS)


def _priv_names() -> tuple[str, ...]:
    from fencekit._snmp import PRIV_PROTOCOLS

    return tuple(PRIV_PROTOCOLS)
