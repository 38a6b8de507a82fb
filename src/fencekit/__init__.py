"""fencekit: verified fencing and health checks for HA clusters.

The public API, for scripts and cluster resource agents::

    import fencekit

    outcome = await fencekit.fence("node-b")      # inventory-driven
    result = await fencekit.probe("http", url="https://10.0.0.5/")

    fencekit.blocking.fence("node-b")             # for plain scripts

Names are loaded on first use, so importing fencekit stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fencekit import blocking
    from fencekit.config import Inventory
    from fencekit.config import load as load_inventory
    from fencekit.errors import (
        AuthenticationError,
        ConfigError,
        DeviceTimeoutError,
        FenceError,
        FenceFailedError,
        FencekitError,
        NotConfirmedError,
        ProtocolError,
        SecretError,
        TransportError,
        UnreachableError,
        UnsupportedError,
    )
    from fencekit.fencing import CheckResult, Fencer, fence
    from fencekit.outcome import Action, FenceOutcome, PowerState
    from fencekit.power.operate import Verification, attempt, operate
    from fencekit.probes import ProbeOutcome
    from fencekit.secrets import Secret

__all__ = [
    "Action",
    "AuthenticationError",
    "CheckResult",
    "ConfigError",
    "DeviceTimeoutError",
    "FenceError",
    "FenceFailedError",
    "FenceOutcome",
    "FencekitError",
    "Fencer",
    "Inventory",
    "NotConfirmedError",
    "PowerState",
    "ProbeOutcome",
    "ProtocolError",
    "Secret",
    "SecretError",
    "TransportError",
    "UnreachableError",
    "UnsupportedError",
    "Verification",
    "attempt",
    "blocking",
    "fence",
    "load_inventory",
    "operate",
    "probe",
]

_WHERE = {
    "Action": "fencekit.outcome",
    "FenceOutcome": "fencekit.outcome",
    "PowerState": "fencekit.outcome",
    "Fencer": "fencekit.fencing",
    "CheckResult": "fencekit.fencing",
    "Inventory": "fencekit.config",
    "fence": "fencekit.fencing",
    "Verification": "fencekit.power.operate",
    "attempt": "fencekit.power.operate",
    "operate": "fencekit.power.operate",
    "ProbeOutcome": "fencekit.probes",
    "Secret": "fencekit.secrets",
}


def __getattr__(name: str) -> Any:
    if name == "blocking":
        return importlib.import_module("fencekit.blocking")
    if name == "probe":
        return _probe
    if name == "load_inventory":
        return importlib.import_module("fencekit.config").load
    module = _WHERE.get(name)
    if module is None and name.endswith("Error") and name in __all__:
        module = "fencekit.errors"
    if module is None:
        raise AttributeError(f"module 'fencekit' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


async def _probe(kind: str, **options: Any) -> ProbeOutcome:
    """Run one probe of ``kind`` once and return its outcome.

    Args:
        kind: ``http``, ``tcp``, ``postgres``, ``mysql``, ``multipath``,
            ``disk``, ``command`` or ``snmp``.
        options: the probe's options, as in the agent configuration.

    Raises:
        ConfigError: unknown kind or invalid option.
        SecretError: a credential source gave no secret.
    """
    from fencekit.probes import build
    from fencekit.probes.base import close

    probe = build(kind, options)
    try:
        outcome: ProbeOutcome = await probe.run()
        return outcome
    finally:
        await close(probe)


def __dir__() -> list[str]:
    return sorted(__all__)
