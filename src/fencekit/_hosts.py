"""Host names fencekit will hand to the resolver."""

from __future__ import annotations


def check_hostname(host: str, where: str) -> None:
    """A host name the resolver can be asked for (IDNA, labels of at
    most 63 bytes, none empty), or an IP address.

    Raises:
        ConfigError: it is not.
    """
    import ipaddress

    from fencekit.errors import ConfigError

    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    if not host:
        raise ConfigError("the host is empty", where=where)
    try:
        host.encode("idna")
    except UnicodeError as exc:
        raise ConfigError(
            f"not a host name: {host!r} ({exc})", where=where
        ) from exc
