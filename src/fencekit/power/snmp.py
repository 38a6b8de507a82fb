"""SNMP fence devices: a switch port, and a switched PDU outlet.

A switch port fences a node by cutting its network: IF-MIB
``ifAdminStatus`` (RFC 2863) is set to ``down(2)`` and read back.
Optionally ``ifOperStatus`` must also read other than ``up(1)`` before
the port counts as off, for switches that apply the change late. A
port is named by its ``ifIndex``, or by its ``ifName`` or ``ifDescr``.

A PDU outlet fences a node by cutting its power: a control column takes
an on or off command, a status column reads the outlet's state back.
The default profile is APC's PowerNet-MIB ``rPDUOutletControlTable``,
whose command column reads back the outlet state (``immediateOn(1)``
when on, ``immediateOff(2)`` when off); other vendors are configured
with their own columns and values. An outlet is named by its number or,
when a names column is known, by its name.

Both drivers only read and write; :func:`fencekit.power.operate`
decides what to send and verifies the result.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from fencekit._snmp import SnmpClient, SnmpCredentials, Value, check_oid
from fencekit.errors import ConfigError, ProtocolError, UnsupportedError
from fencekit.outcome import Action, PowerState
from fencekit.secrets import Secret, from_command, from_env, from_file

__all__ = [
    "APC_OUTLET",
    "IF_ADMIN_STATUS",
    "IF_DESCR",
    "IF_NAME",
    "IF_OPER_STATUS",
    "OutletProfile",
    "SnmpPduDriver",
    "SnmpPortDriver",
    "build_pdu",
    "build_port",
]

IF_DESCR: Final = "1.3.6.1.2.1.2.2.1.2"
IF_ADMIN_STATUS: Final = "1.3.6.1.2.1.2.2.1.7"
IF_OPER_STATUS: Final = "1.3.6.1.2.1.2.2.1.8"
IF_NAME: Final = "1.3.6.1.2.1.31.1.1.1.1"

# RFC 2863 IfEntry: ifAdminStatus up(1) down(2) testing(3); ifOperStatus
# up(1) down(2) testing(3) unknown(4) dormant(5) notPresent(6)
# lowerLayerDown(7).
_ADMIN_UP: Final = 1
_ADMIN_DOWN: Final = 2
_OPER_UP: Final = 1


@dataclasses.dataclass(frozen=True)
class OutletProfile:
    """Where a PDU keeps its outlet control and status, and the values.

    Attributes:
        control_oid: the column taking commands (outlet number appended).
        status_oid: the column reading the outlet state back.
        names_oid: the column of outlet names, if the PDU has one.
        on_command: the value that switches an outlet on.
        off_command: the value that switches it off.
        on_state: the status value of an outlet that is on.
        off_state: the status value of an outlet that is off.

    Raises:
        ConfigError: an OID is not numeric.
    """

    control_oid: str
    status_oid: str
    names_oid: str | None = None
    on_command: int = 1
    off_command: int = 2
    on_state: int = 1
    off_state: int = 2

    def __post_init__(self) -> None:
        check_oid(self.control_oid, "control_oid")
        check_oid(self.status_oid, "status_oid")
        if self.names_oid is not None:
            check_oid(self.names_oid, "names_oid")
        if self.on_state == self.off_state:
            raise ConfigError(
                "on_state and off_state must differ", where="off_state"
            )


#: APC PowerNet-MIB rPDUOutletControlOutletCommand: immediateOn(1),
#: immediateOff(2); reading it returns the outlet's state in the same
#: values. rPDUOutletControlOutletName holds the names.
APC_OUTLET: Final = OutletProfile(
    control_oid="1.3.6.1.4.1.318.1.1.12.3.3.1.1.4",
    status_oid="1.3.6.1.4.1.318.1.1.12.3.3.1.1.4",
    names_oid="1.3.6.1.4.1.318.1.1.12.3.3.1.1.2",
)


class _SnmpDriver:
    """What both SNMP drivers share: the client and the plug's index."""

    method = "snmp"
    noun = "plug"

    def __init__(
        self,
        host: str,
        *,
        credentials: SnmpCredentials,
        plug: str | int,
        port: int = 161,
        retries: int = 1,
    ) -> None:
        self.plug = str(plug).strip()
        if not self.plug:
            raise ConfigError(f"the {self.noun} is empty", where="plug")
        self._client = SnmpClient(
            host, credentials=credentials, port=port, retries=retries
        )
        self.address = self._client.address
        self.device = f"{self.address} {self.noun} {self.plug}"
        self._index: str | None = self.plug if self.plug.isdigit() else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.device!r})"

    async def _resolve(self, timeout: float) -> str:
        """The plug's row index, looked up by name on first use.

        Raises:
            ConfigError: no row, or several rows, carry the name.
        """
        if self._index is not None:
            return self._index
        # One deadline for the whole lookup: the caller's deadline
        # bounds it anyway, and a large switch's columns take time.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        names: dict[str, Value] = {}
        for column in self._name_columns():
            remaining = max(deadline - loop.time(), 0.1)
            column_rows = await self._client.walk(column, remaining)
            names.update({f"{column}:{k}": v for k, v in column_rows.items()})
        rows = sorted(
            {
                key.split(":", 1)[1]
                for key, v in names.items()
                if v == self.plug
            }
        )
        if len(rows) > 1:
            raise ConfigError(
                f"{self.noun} name {self.plug!r} is ambiguous on"
                f" {self.address}: rows {', '.join(rows)}",
                where="plug",
            )
        if not rows:
            known = ", ".join(sorted({str(v) for v in names.values()})[:20])
            raise ConfigError(
                f"no {self.noun} named {self.plug!r} on {self.address}"
                f" (known: {known or 'none'})",
                where="plug",
            )
        self._index = rows[0]
        return self._index

    def _name_columns(self) -> tuple[str, ...]:
        raise NotImplementedError

    def _missing(self, index: str) -> ConfigError:
        return ConfigError(
            f"no {self.noun} {index} on {self.address}"
            " (the device has no such row)",
            where="plug",
        )

    def _integer(self, value: Value | None, oid: str, index: str) -> int:
        if value is None:
            raise self._missing(index)
        if not isinstance(value, int):
            raise ProtocolError(
                f"{self.address} returned {value!r} for {oid}, not an integer",
                device=self.address,
            )
        return value

    async def close(self) -> None:
        """Close the SNMP engine; safe to call twice."""
        await self._client.close()


class SnmpPortDriver(_SnmpDriver):
    """A switch port as a fence device (IF-MIB ``ifAdminStatus``).

    Args:
        host: the switch's address.
        credentials: SNMP credentials with write access.
        plug: the port's ``ifIndex``, ``ifName`` or ``ifDescr``.
        port: the switch's SNMP port (161).
        oper_status: also require ``ifOperStatus`` to be other than
            ``up`` before the port reads as off.
        retries: resends of an unanswered request.

    Raises:
        ConfigError: an option is invalid.
    """

    method = "snmp-port"
    noun = "port"

    def __init__(
        self,
        host: str,
        *,
        credentials: SnmpCredentials,
        plug: str | int,
        port: int = 161,
        oper_status: bool = False,
        retries: int = 1,
    ) -> None:
        super().__init__(
            host,
            credentials=credentials,
            plug=plug,
            port=port,
            retries=retries,
        )
        self.oper_status = oper_status

    def _name_columns(self) -> tuple[str, ...]:
        return (IF_NAME, IF_DESCR)

    async def read_state(self, timeout: float) -> PowerState:
        """Read the port: ``OFF`` when administratively down.

        Raises:
            ConfigError: the switch has no such port.
            TransportError: the switch could not be read.
        """
        index = await self._resolve(timeout)
        admin_oid = f"{IF_ADMIN_STATUS}.{index}"
        oper_oid = f"{IF_OPER_STATUS}.{index}"
        oids = [admin_oid, oper_oid] if self.oper_status else [admin_oid]
        values = await self._client.get(oids, timeout)

        admin = self._integer(values.get(admin_oid), admin_oid, index)
        if admin == _ADMIN_UP:
            return PowerState.ON
        if admin != _ADMIN_DOWN:
            return PowerState.UNKNOWN
        if self.oper_status:
            oper = self._integer(values.get(oper_oid), oper_oid, index)
            if oper == _OPER_UP:
                # Administratively down but still passing traffic: not
                # fenced yet, whatever the admin column says.
                return PowerState.ON
        return PowerState.OFF

    async def send(self, action: Action, timeout: float) -> None:
        """Set ``ifAdminStatus`` down (``OFF``) or up (``ON``).

        Raises:
            UnsupportedError: ``action`` is not on or off.
            ProtocolError: the switch refused the SET.
            TransportError: the switch could not be talked to.
        """
        value = {Action.OFF: _ADMIN_DOWN, Action.ON: _ADMIN_UP}.get(action)
        if value is None:
            raise UnsupportedError(
                f"a switch port cannot {action.value}",
                device=self.device,
                action=action.value,
            )
        index = await self._resolve(timeout)
        await self._client.set_integer(
            f"{IF_ADMIN_STATUS}.{index}", value, timeout
        )


class SnmpPduDriver(_SnmpDriver):
    """A switched PDU outlet as a fence device.

    Args:
        host: the PDU's address.
        credentials: SNMP credentials with write access.
        plug: the outlet's number, or its name when the profile has a
            names column.
        port: the PDU's SNMP port (161).
        profile: the outlet columns and values; APC's by default.
        retries: resends of an unanswered request.

    Raises:
        ConfigError: an option is invalid.
    """

    method = "snmp-pdu"
    noun = "outlet"

    def __init__(
        self,
        host: str,
        *,
        credentials: SnmpCredentials,
        plug: str | int,
        port: int = 161,
        profile: OutletProfile = APC_OUTLET,
        retries: int = 1,
    ) -> None:
        super().__init__(
            host,
            credentials=credentials,
            plug=plug,
            port=port,
            retries=retries,
        )
        self.profile = profile
        if self._index is None and profile.names_oid is None:
            raise ConfigError(
                f"outlet {self.plug!r} is not a number, and no names_oid"
                " is configured to look it up by name",
                where="plug",
            )

    def _name_columns(self) -> tuple[str, ...]:
        names = self.profile.names_oid
        return (names,) if names is not None else ()

    async def read_state(self, timeout: float) -> PowerState:
        """Read the outlet's state from the status column.

        Raises:
            ConfigError: the PDU has no such outlet.
            TransportError: the PDU could not be read.
        """
        index = await self._resolve(timeout)
        oid = f"{self.profile.status_oid}.{index}"
        values = await self._client.get([oid], timeout)
        state = self._integer(values.get(oid), oid, index)
        if state == self.profile.on_state:
            return PowerState.ON
        if state == self.profile.off_state:
            return PowerState.OFF
        return PowerState.UNKNOWN

    async def send(self, action: Action, timeout: float) -> None:
        """Write the on or off command to the control column.

        Raises:
            UnsupportedError: ``action`` is not on or off.
            ProtocolError: the PDU refused the SET.
            TransportError: the PDU could not be talked to.
        """
        commands = {
            Action.OFF: self.profile.off_command,
            Action.ON: self.profile.on_command,
        }
        value = commands.get(action)
        if value is None:
            raise UnsupportedError(
                f"a PDU outlet cannot {action.value}",
                device=self.device,
                action=action.value,
            )
        index = await self._resolve(timeout)
        await self._client.set_integer(
            f"{self.profile.control_oid}.{index}", value, timeout
        )


_SECRET_OPTIONS: Final = ("community", "priv_key")
_COMMON_OPTIONS: Final = frozenset(
    {
        "plug",
        "snmp_version",
        "auth_protocol",
        "priv_protocol",
        "retries",
        *(
            f"{name}{suffix}"
            for name in _SECRET_OPTIONS
            for suffix in ("", "_file", "_env", "_command")
        ),
    }
)
_PORT_OPTIONS: Final = _COMMON_OPTIONS | {"oper_status"}
_PROFILE_OPTIONS: Final = (
    "control_oid",
    "status_oid",
    "names_oid",
    "on_command",
    "off_command",
    "on_state",
    "off_state",
)
_PDU_OPTIONS: Final = _COMMON_OPTIONS | {"profile", *_PROFILE_OPTIONS}


def build_port(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> SnmpPortDriver:
    """A switch-port driver from the inventory's or the CLI's values.

    SNMPv1/v2c take the community from ``community`` (a secret, or
    ``community_file``, ``_env``, ``_command``), else from the device's
    password. SNMPv3 takes the user from ``username``, the
    authentication key from the password and the privacy key from
    ``priv_key`` (or its ``_file``, ``_env``, ``_command``).

    Raises:
        ConfigError: an option is unknown, missing or invalid.
        SecretError: a secret's source gave nothing.
    """
    _reject_unknown("snmp-port", options, _PORT_OPTIONS)
    oper = options.get("oper_status", False)
    if not isinstance(oper, bool):
        raise ConfigError("must be true or false", where="oper_status")
    return SnmpPortDriver(
        host,
        credentials=_credentials(username, password, options),
        plug=_plug(options),
        port=port or 161,
        oper_status=oper,
        retries=_retries(options),
    )


def build_pdu(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> SnmpPduDriver:
    """A PDU-outlet driver from the inventory's or the CLI's values.

    Credentials as for :func:`build_port`. ``profile = "apc"`` (the
    default) selects APC's columns; any of ``control_oid``,
    ``status_oid``, ``names_oid``, ``on_command``, ``off_command``,
    ``on_state`` and ``off_state`` overrides the profile's value.

    Raises:
        ConfigError: an option is unknown, missing or invalid.
        SecretError: a secret's source gave nothing.
    """
    _reject_unknown("snmp-pdu", options, _PDU_OPTIONS)
    if options.get("profile", "apc") != "apc":
        raise ConfigError("the only built-in profile is apc", where="profile")
    overrides: dict[str, Any] = {}
    for key in _PROFILE_OPTIONS:
        if key not in options:
            continue
        value = options[key]
        wanted = str if key.endswith("_oid") else int
        if isinstance(value, bool) or not isinstance(value, wanted):
            kind = "an OID string" if wanted is str else "a whole number"
            raise ConfigError(f"must be {kind}", where=key)
        overrides[key] = value
    return SnmpPduDriver(
        host,
        credentials=_credentials(username, password, options),
        plug=_plug(options),
        port=port or 161,
        profile=dataclasses.replace(APC_OUTLET, **overrides),
        retries=_retries(options),
    )


def _reject_unknown(
    driver: str, options: Mapping[str, Any], known: frozenset[str]
) -> None:
    for name in options:
        if name not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(
                f"unknown option for driver {driver} (known: {allowed})",
                where=name,
            )


def _plug(options: Mapping[str, Any]) -> str:
    plug = options.get("plug")
    if isinstance(plug, bool) or not isinstance(plug, str | int):
        raise ConfigError(
            "is required: the port or outlet (number or name)", where="plug"
        )
    return str(plug)


def _retries(options: Mapping[str, Any]) -> int:
    retries = options.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise ConfigError("must be a whole number", where="retries")
    if not 0 <= retries <= 10:
        raise ConfigError("must be between 0 and 10", where="retries")
    return retries


def _secret(options: Mapping[str, Any], name: str) -> Secret | None:
    """A secret option: a :class:`Secret` (from the CLI), or where the
    inventory says it is kept; never a plain value."""
    value = options.get(name)
    if value is not None:
        if not isinstance(value, Secret):
            raise ConfigError(
                f"give {name}_file, {name}_env or {name}_command, never"
                " the value itself",
                where=name,
            )
        return value
    readers = {
        f"{name}_file": from_file,
        f"{name}_env": from_env,
        f"{name}_command": from_command,
    }
    given = [key for key in readers if options.get(key) is not None]
    if len(given) > 1:
        raise ConfigError(f"conflicts with {given[0]}", where=given[1])
    if not given:
        return None
    source = options[given[0]]
    if not isinstance(source, str):
        raise ConfigError("must be a string", where=given[0])
    return readers[given[0]](source)


def _credentials(
    username: str, password: Secret, options: Mapping[str, Any]
) -> SnmpCredentials:
    version = str(options.get("snmp_version", "2c"))
    given = password if password.reveal() else None
    if version != "3":
        return SnmpCredentials(
            version=version, community=_secret(options, "community") or given
        )
    return SnmpCredentials(
        version="3",
        user=username or None,
        auth_key=given,
        auth_protocol=str(options.get("auth_protocol", "sha")),
        priv_key=_secret(options, "priv_key"),
        priv_protocol=str(options.get("priv_protocol", "aes")),
    )
