"""What every probe shares: the outcome value, deadlines, threads.

A probe looks at one service or device once, within its own deadline,
and returns a :class:`ProbeOutcome`. Probes never raise for an unhealthy
target: "down", "refused", "timed out" are outcomes with a reason. They
raise :class:`~fencekit.errors.ConfigError` only for options that can
never work.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

__all__ = [
    "Detail",
    "Probe",
    "ProbeOutcome",
    "ProbeTimeoutError",
    "close",
    "in_thread",
]

T = TypeVar("T")

#: A per-kind detail: a number (exported as a metric) or a short text.
Detail = float | int | str | bool

# The default executor of asyncio has min(32, cpus + 4) workers: on a
# 2-core node a hundred checks would queue behind six threads, and one
# hung storage read would hold a worker that others need.
_POOL_WORKERS = 128
_pool: concurrent.futures.ThreadPoolExecutor | None = None


@dataclasses.dataclass(frozen=True)
class ProbeOutcome:
    """The result of one probe.

    Attributes:
        kind: the probe's kind (``http``, ``tcp``...).
        target: what was probed, safe to print (no credentials).
        healthy: whether every expectation held.
        duration: seconds the probe took.
        reason: why the target is unhealthy, or a short note.
        details: per-kind values, such as ``status_code``,
            ``tls_expiry_timestamp`` or ``replication_lag_seconds``.
        items: per-item details (one mapping per multipath map).
    """

    kind: str
    target: str
    healthy: bool
    duration: float
    reason: str = ""
    details: Mapping[str, Detail] = dataclasses.field(default_factory=dict)
    items: Mapping[str, Mapping[str, Detail]] = dataclasses.field(
        default_factory=dict
    )

    def to_dict(self) -> dict[str, Any]:
        """Return the outcome as plain JSON-ready values."""
        return {
            "kind": self.kind,
            "target": self.target,
            "healthy": self.healthy,
            "duration": round(self.duration, 6),
            "reason": self.reason,
            "details": dict(self.details),
            "items": {k: dict(v) for k, v in self.items.items()},
        }


class Probe(Protocol):
    """One configured probe; :meth:`run` may be called many times."""

    kind: str
    target: str
    timeout: float

    async def run(self) -> ProbeOutcome:
        """Probe once within ``timeout`` seconds; never raises."""
        ...


async def close(probe: Probe) -> None:
    """Release what a probe keeps between runs (connections), if any.

    A probe may define ``async close()``; the protocol does not require
    it.
    """
    method = getattr(probe, "close", None)
    if method is not None:
        await method()


class ProbeTimeoutError(Exception):
    """Raised inside a probe when its deadline passed (internal)."""


def executor() -> concurrent.futures.ThreadPoolExecutor:
    """The thread pool that blocking probe libraries run in."""
    global _pool
    if _pool is None:
        _pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=_POOL_WORKERS, thread_name_prefix="fencekit-probe"
        )
    return _pool


async def in_thread(func: Callable[[], T], timeout: float) -> T:
    """Run a blocking call in the probe pool, waiting ``timeout`` at most.

    The thread itself cannot be interrupted: each probe also hands its
    deadline to the library, so the thread ends soon after.

    Raises:
        ProbeTimeoutError: the call did not finish in time.
    """
    loop = asyncio.get_running_loop()
    future = loop.run_in_executor(executor(), func)
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise ProbeTimeoutError(f"no answer within {timeout:g} s") from None


def outcome(
    probe: Probe,
    started: float,
    healthy: bool,
    reason: str = "",
    details: Mapping[str, Detail] | None = None,
    items: Mapping[str, Mapping[str, Detail]] | None = None,
) -> ProbeOutcome:
    """Build the outcome of ``probe`` that started at ``started``."""
    return ProbeOutcome(
        kind=probe.kind,
        target=probe.target,
        healthy=healthy,
        duration=time.monotonic() - started,
        reason=reason,
        details=dict(details or {}),
        items={k: dict(v) for k, v in (items or {}).items()},
    )


def check_timeout(value: Any, where: str) -> float:
    """Return ``value`` as a deadline in seconds.

    Raises:
        ConfigError: it is not a number above zero.
    """
    from fencekit.errors import ConfigError

    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError("timeout must be a number of seconds", where=where)
    if not 0 < value < float("inf"):
        raise ConfigError("timeout must be above zero", where=where)
    return float(value)
