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

    known = {"cipher", "privilege", "allow_ipmi15", "kg", *_sources("kg")}
    _reject_unknown("ipmi", options, known)
    settings = dict(options)
    kg = _secret_option(settings, "kg")
    return IpmiDriver(
        host,
        port=port or 623,
        username=username,
        password=password,
        kg=kg,
        **settings,
    )


def _sources(name: str) -> tuple[str, str, str]:
    return (f"{name}_file", f"{name}_env", f"{name}_command")


def _secret_option(settings: dict[str, Any], name: str) -> Secret | None:
    """Take secret option ``name`` out of ``settings``.

    It comes from ``NAME_file``, ``NAME_env`` or ``NAME_command``; a
    ``NAME`` that is not already a :class:`Secret` (a key or password
    written into a configuration file) is refused.

    Raises:
        ConfigError: the value itself was given, or more than one source.
        SecretError: the source gave nothing.
    """
    from fencekit.secrets import from_command, from_env, from_file

    sources = {k: settings.pop(k, None) for k in _sources(name)}
    given = [k for k, v in sources.items() if v is not None]
    value = settings.pop(name, None)
    if value is not None and not isinstance(value, Secret):
        raise ConfigError(
            f"give {name}_file, {name}_env or {name}_command, never the"
            " value itself",
            where=name,
        )
    if len(given) > 1 or (value is not None and given):
        raise ConfigError(f"give one {name} source only", where=given[-1])
    if not given:
        return value
    read = {f"{name}_file": from_file, f"{name}_env": from_env}.get(
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

    known = _IRMC_OPTIONS | set(_sources("ipmi_password"))
    _reject_unknown("irmc", options, known)
    settings = dict(options)
    ipmi_password = _secret_option(settings, "ipmi_password")
    if ipmi_password is not None:
        settings["ipmi_password"] = ipmi_password
    return IrmcDriver(
        host,
        port=port or 443,
        username=username,
        password=password,
        **settings,
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
    if not host.strip():
        raise ConfigError("is empty", where="host")
    from fencekit._hosts import check_hostname

    check_hostname(host, "host")
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
