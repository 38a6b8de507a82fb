"""Build a power driver by name, for the CLI and the inventory alike."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fencekit.errors import ConfigError
from fencekit.power.base import PowerDriver
from fencekit.secrets import Secret

__all__ = ["DRIVERS", "build"]

Factory = Callable[..., PowerDriver]


def _ipmi(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> PowerDriver:
    from fencekit.power.ipmi import IpmiDriver

    known = {"cipher", "privilege", "allow_ipmi15", "kg", *_KG_SOURCES}
    _reject_unknown("ipmi", options, known)
    settings = dict(options)
    kg = _kg(settings)
    return IpmiDriver(
        host,
        port=port or 623,
        username=username,
        password=password,
        kg=kg,
        **settings,
    )


_KG_SOURCES = ("kg_file", "kg_env", "kg_command")


def _kg(settings: dict[str, Any]) -> Secret | None:
    """The IPMI Kg key from ``kg_file``/``kg_env``/``kg_command``.

    A ``kg`` that is not already a :class:`Secret` (a key written into
    a configuration file) is refused.

    Raises:
        ConfigError: the key itself was given, or more than one source.
        SecretError: the source gave no key.
    """
    from fencekit.secrets import from_command, from_env, from_file

    given = [k for k in _KG_SOURCES if settings.get(k) is not None]
    kg = settings.pop("kg", None)
    sources = {k: settings.pop(k, None) for k in _KG_SOURCES}
    if kg is not None and not isinstance(kg, Secret):
        raise ConfigError(
            "give kg_file, kg_env or kg_command, never the key", where="kg"
        )
    if len(given) > 1 or (kg is not None and given):
        raise ConfigError("give one Kg source only", where=given[-1])
    if not given:
        return kg
    read = {"kg_file": from_file, "kg_env": from_env}.get(
        given[0], from_command
    )
    return read(str(sources[given[0]]))


_REDFISH_OPTIONS = {"system", "ca_file", "insecure", "auth", "connect_timeout"}
_IRMC_OPTIONS = _REDFISH_OPTIONS | {
    "ipmi_fallback",
    "ipmi_port",
    "ipmi_username",
    "ipmi_password",
    "ipmi_cipher",
}


def _redfish(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> PowerDriver:
    from fencekit.power.redfish import RedfishDriver

    _reject_unknown("redfish", options, _REDFISH_OPTIONS)
    return RedfishDriver(
        host,
        port=port or 443,
        username=username,
        password=password,
        **options,
    )


def _irmc(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> PowerDriver:
    from fencekit.power.irmc import IrmcDriver

    _reject_unknown("irmc", options, _IRMC_OPTIONS)
    return IrmcDriver(
        host,
        port=port or 443,
        username=username,
        password=password,
        **options,
    )


def _snmp_port(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> PowerDriver:
    from fencekit.power.snmp import build_port

    return build_port(
        host, port=port, username=username, password=password, options=options
    )


def _snmp_pdu(
    host: str,
    *,
    port: int | None,
    username: str,
    password: Secret,
    options: Mapping[str, Any],
) -> PowerDriver:
    from fencekit.power.snmp import build_pdu

    return build_pdu(
        host, port=port, username=username, password=password, options=options
    )


DRIVERS: dict[str, Factory] = {
    "ipmi": _ipmi,
    "irmc": _irmc,
    "redfish": _redfish,
    "snmp-pdu": _snmp_pdu,
    "snmp-port": _snmp_port,
}


def _reject_unknown(
    driver: str, options: Mapping[str, Any], known: set[str]
) -> None:
    for name in options:
        if name not in known:
            allowed = ", ".join(sorted(known))
            raise ConfigError(
                f"unknown option for driver {driver} (known: {allowed})",
                where=name,
            )


def build(
    driver: str,
    host: str,
    *,
    username: str,
    password: Secret,
    port: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> PowerDriver:
    """Return a driver of kind ``driver`` for the device at ``host``.

    Args:
        driver: the driver's name (see :data:`DRIVERS`).
        host: the device's address.
        username: the account on the device.
        password: its password.
        port: the device's port; the driver's default when None.
        options: driver-specific options (IPMI: ``cipher``,
            ``privilege``, ``kg``, ``allow_ipmi15``; Redfish: ``system``,
            ``ca_file``, ``insecure``, ``auth``, ``connect_timeout``;
            iRMC: the Redfish ones and ``ipmi_fallback``, ``ipmi_port``,
            ``ipmi_username``, ``ipmi_password``, ``ipmi_cipher``;
            SNMP: see :func:`fencekit.power.snmp.build_port` and
            :func:`fencekit.power.snmp.build_pdu`).

    Raises:
        ConfigError: unknown driver or option, or an invalid value.
    """
    factory = DRIVERS.get(driver)
    if factory is None:
        names = ", ".join(sorted(DRIVERS))
        raise ConfigError(f"unknown driver {driver!r} (known: {names})")
    return factory(
        host,
        port=port,
        username=username,
        password=password,
        options=dict(options or {}),
    )
