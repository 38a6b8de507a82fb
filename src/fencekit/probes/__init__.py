"""Health probes and their registry.

Each kind of probe lives in its own module with a ``from_options(table,
where)`` factory. The registry maps a kind to that factory's module, so
a probe's library (psycopg, PyMySQL...) is imported only when a probe of
that kind is built. Another module adds a kind with :func:`register`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any

from fencekit.probes.base import Detail, Probe, ProbeOutcome

__all__ = [
    "Detail",
    "Factory",
    "Probe",
    "ProbeOutcome",
    "build",
    "kinds",
    "register",
]

#: Builds a probe from its option table; ``where`` prefixes messages.
Factory = Callable[[Mapping[str, Any], str], Probe]

_MODULES: dict[str, str] = {
    "command": "fencekit.probes.command",
    "disk": "fencekit.probes.disk",
    "http": "fencekit.probes.http",
    "multipath": "fencekit.probes.multipath",
    "mysql": "fencekit.probes.mysql",
    "postgres": "fencekit.probes.postgres",
    "snmp": "fencekit.probes.snmp",
    "tcp": "fencekit.probes.tcp",
}
_FACTORIES: dict[str, Factory] = {}


def register(kind: str, factory: Factory | str) -> None:
    """Add a kind of probe: a factory, or the module that holds one.

    Args:
        kind: the name used in configuration (``kind = "..."``).
        factory: ``from_options(table, where)``, or a module name whose
            ``from_options`` is that factory.
    """
    if isinstance(factory, str):
        _MODULES[kind] = factory
        _FACTORIES.pop(kind, None)
    else:
        _FACTORIES[kind] = factory


def kinds() -> list[str]:
    """Every kind that can be built, sorted."""
    return sorted(k for k in {*_MODULES, *_FACTORIES} if _available(k))


def _available(kind: str) -> bool:
    if kind in _FACTORIES:
        return True
    return importlib.util.find_spec(_MODULES[kind]) is not None


def build(kind: str, table: Mapping[str, Any], where: str = "") -> Probe:
    """Build a probe of ``kind`` from its option table.

    Raises:
        ConfigError: the kind is unknown, or an option is invalid.
        SecretError: a credential source gave no secret.
    """
    from fencekit.errors import ConfigError

    factory = _FACTORIES.get(kind)
    if factory is None:
        module = _MODULES.get(kind)
        if module is None or not _available(kind):
            known = ", ".join(kinds())
            raise ConfigError(
                f"unknown probe kind {kind!r} (known: {known})",
                where=f"{where}.kind" if where else "kind",
            )
        factory = importlib.import_module(module).from_options
        _FACTORIES[kind] = factory
    return factory(table, where)
