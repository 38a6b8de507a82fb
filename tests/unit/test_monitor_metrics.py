"""The agent's metrics: a failing collector, names, /probe output."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from fencekit.metrics import AgentMetrics, probe_exposition
from fencekit.monitor import CheckSpec, CheckStatus, State
from fencekit.outcome import Action, FenceOutcome
from fencekit.probes import ProbeOutcome


class Broken(Collector):
    """A collector that always raises."""

    def collect(self) -> Iterable[object]:  # type: ignore[override]
        """Raise, as a buggy collector would."""
        raise RuntimeError("collector bug")


class Probe:
    """A stand-in probe for a check spec."""

    kind = "http"
    target = "http://x/"
    timeout = 1.0

    async def run(self) -> ProbeOutcome:
        """Never called here."""
        raise NotImplementedError


def samples(text: str) -> dict[tuple[str, frozenset[object]], float]:
    """Every sample by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def status() -> CheckStatus:
    """A check that is up with an HTTP outcome."""
    spec = CheckSpec(name="web", kind="http", probe=Probe())
    result = CheckStatus(spec, state=State.UP, runs=3, failed_runs=1)
    result.last = ProbeOutcome(
        "http", "http://x/", True, 0.25, details={"status_code": 204}
    )
    return result


def test_failing_collector_does_not_break_the_scrape() -> None:
    """A raising collector shows as 0; the others are still exported."""
    metrics = AgentMetrics(lambda: [status()], process=False)
    metrics.add("broken", Broken())

    got = samples(metrics.exposition().decode())

    assert (
        got[
            (
                "fencekit_collector_success",
                frozenset({("collector", "broken")}),
            )
        ]
        == 0
    )
    assert (
        got[
            (
                "fencekit_collector_success",
                frozenset({("collector", "checks")}),
            )
        ]
        == 1
    )
    labels = frozenset({("check", "web"), ("kind", "http")})
    assert got[("fencekit_check_up", labels)] == 1
    assert got[("fencekit_check_failures_total", labels)] == 1
    assert (
        got[("fencekit_http_status_code", frozenset({("check", "web")}))]
        == 204
    )


def test_fence_outcomes_are_counted() -> None:
    """Fence outcomes feed the counter and the duration histogram."""
    metrics = AgentMetrics(lambda: [], process=False)
    metrics.observe_fence(
        FenceOutcome("node-b", "bmc", "ipmi", Action.OFF, True, duration=2.5)
    )

    got = samples(metrics.exposition().decode())

    key = frozenset(
        {("node", "node-b"), ("action", "off"), ("result", "success")}
    )
    assert got[("fencekit_fence_operations_total", key)] == 1
    count = (
        "fencekit_fence_duration_seconds_count",
        frozenset({("action", "off")}),
    )
    assert got[count] == 1


def test_probe_exposition_uses_blackbox_names() -> None:
    """/probe output: probe_success, duration, status code, TLS expiry."""
    outcome = ProbeOutcome(
        "http",
        "https://x/",
        False,
        0.5,
        "status 500",
        {"status_code": 500, "tls_expiry_timestamp": 1.9e9},
    )

    got = samples(probe_exposition(outcome).decode())

    assert got[("probe_success", frozenset())] == 0
    assert got[("probe_duration_seconds", frozenset())] == 0.5
    assert got[("probe_http_status_code", frozenset())] == 500
    assert got[("probe_ssl_earliest_cert_expiry", frozenset())] == 1.9e9
