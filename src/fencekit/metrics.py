"""Prometheus metrics of the agent, and the HTTP endpoint serving them.

Everything is collected at scrape time from the monitor's check states,
by named collectors. A collector that raises does not break the scrape:
its metrics are left out and ``fencekit_collector_success{collector=...}``
is 0. Metric names:

- ``fencekit_check_up``, ``fencekit_check_state{state}``,
  ``fencekit_check_success``, ``fencekit_check_duration_seconds``,
  ``fencekit_check_last_run_timestamp_seconds``,
  ``fencekit_check_runs_total``, ``fencekit_check_failures_total``,
  ``fencekit_check_state_changes_total`` (labels ``check``, ``kind``);
- per kind: ``fencekit_http_status_code``,
  ``fencekit_tls_certificate_expiry_timestamp_seconds``,
  ``fencekit_database_replication_lag_seconds``,
  ``fencekit_database_read_only``, ``fencekit_database_in_recovery``,
  ``fencekit_command_exit_code``, ``fencekit_multipath_paths{map,state}``,
  ``fencekit_multipath_map_degraded{map}``,
  ``fencekit_multipath_map_queueing_no_paths{map}``;
- the fencer: ``fencekit_fence_operations_total{node,action,result}``,
  ``fencekit_fence_duration_seconds{action}`` (a histogram);
- the agent: ``fencekit_agent_config_reload_success``,
  ``fencekit_collector_success{collector}`` and the process metrics.

``/probe?module=NAME&target=T`` answers in the manner of
blackbox_exporter: ``probe_success``, ``probe_duration_seconds``,
``probe_http_status_code``, ``probe_ssl_earliest_cert_expiry`` and the
per-kind gauges above without the ``check`` label.
"""

from __future__ import annotations

import asyncio
import http.server
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from fencekit._log import get_logger

if TYPE_CHECKING:
    from fencekit.monitor import CheckStatus, Event
    from fencekit.outcome import FenceOutcome
    from fencekit.probes import ProbeOutcome

__all__ = [
    "AgentMetrics",
    "Exporter",
    "probe_exposition",
    "register_detail",
]

#: Outcome detail key -> (metric name, help). Other probe modules add
#: theirs with :func:`register_detail`.
DETAILS: dict[str, tuple[str, str]] = {
    "status_code": (
        "fencekit_http_status_code",
        "HTTP status code of the check's last probe.",
    ),
    "tls_expiry_timestamp": (
        "fencekit_tls_certificate_expiry_timestamp_seconds",
        "When the server certificate expires (Unix time).",
    ),
    "replication_lag_seconds": (
        "fencekit_database_replication_lag_seconds",
        "Replication lag of a standby or replica.",
    ),
    "read_only": (
        "fencekit_database_read_only",
        "1 when the database server is read-only.",
    ),
    "in_recovery": (
        "fencekit_database_in_recovery",
        "1 when the PostgreSQL server is a standby (in recovery).",
    ),
    "exit_code": (
        "fencekit_command_exit_code",
        "Exit code of the check's last command.",
    ),
}
# blackbox_exporter's names, so that existing dashboards keep working.
_PROBE_NAMES: Final = {
    "status_code": "probe_http_status_code",
    "tls_expiry_timestamp": "probe_ssl_earliest_cert_expiry",
}
_DURATION_BUCKETS: Final = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)


def register_detail(key: str, name: str, help_text: str) -> None:
    """Export outcome detail ``key`` as gauge ``name``."""
    DETAILS[key] = (name, help_text)


class _Guarded(Collector):
    """Runs named collectors; one that fails is reported, not raised."""

    def __init__(self) -> None:
        self.collectors: dict[str, Collector] = {}
        self._log = get_logger(__name__)

    def describe(self) -> Iterable[Metric]:
        # Nothing described: the registry then does not collect at
        # registration, when the monitor may not exist yet.
        return []

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily(
            "fencekit_collector_success",
            "1 when the named collector worked during this scrape.",
            labels=["collector"],
        )
        for name, collector in list(self.collectors.items()):
            try:
                families = list(collector.collect())
            except Exception:
                self._log.exception("collector_failed", collector=name)
                success.add_metric([name], 0.0)
                continue
            success.add_metric([name], 1.0)
            yield from families
        yield success


class _Callback(Collector):
    def __init__(self, func: Callable[[], Iterable[Metric]]) -> None:
        self._func = func

    def collect(self) -> Iterable[Metric]:
        return self._func()


class AgentMetrics:
    """The agent's metrics registry.

    Args:
        statuses: returns every check's running state.
        process: include the process and platform collectors.
    """

    def __init__(
        self,
        statuses: Callable[[], Iterable[CheckStatus]],
        *,
        process: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._statuses = statuses
        self._guard = _Guarded()
        self._changes: dict[tuple[str, str, str], int] = {}
        self._lock = threading.Lock()
        self.reload_success = 1.0
        self.fence_operations = Counter(
            "fencekit_fence_operations",
            "Fences the agent asked for, by node, action and result.",
            ["node", "action", "result"],
            registry=None,
        )
        self.fence_duration = Histogram(
            "fencekit_fence_duration_seconds",
            "Time from a fence request to its outcome.",
            ["action"],
            buckets=_DURATION_BUCKETS,
            registry=None,
        )
        self.add("checks", _Callback(self._checks))
        self.add("details", _Callback(self._details))
        self.add("fencer", _Callback(self._fencer))
        self.add("agent", _Callback(self._agent))
        if process:
            self.add("process", ProcessCollector(registry=None))
            self.add("platform", PlatformCollector(registry=None))
        self.registry.register(self._guard)

    def add(self, name: str, collector: Collector) -> None:
        """Add a named collector, guarded by its success gauge."""
        self._guard.collectors[name] = collector

    def exposition(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)

    async def on_event(self, event: Event) -> None:
        """Monitor subscriber: count the state change."""
        key = (event.check, event.kind, event.state.value)
        with self._lock:
            self._changes[key] = self._changes.get(key, 0) + 1

    def observe_fence(self, outcome: FenceOutcome) -> None:
        """Count one fence outcome and its duration."""
        result = "success" if outcome.success else "failure"
        action = outcome.action.value
        self.fence_operations.labels(outcome.node, action, result).inc()
        self.fence_duration.labels(action).observe(outcome.duration)

    def _checks(self) -> Iterator[Metric]:
        from fencekit.monitor import State

        labels = ["check", "kind"]
        up = GaugeMetricFamily(
            "fencekit_check_up", "1 when the check is up.", labels=labels
        )
        state = GaugeMetricFamily(
            "fencekit_check_state",
            "1 for the check's current state (up, down, unknown).",
            labels=[*labels, "state"],
        )
        success = GaugeMetricFamily(
            "fencekit_check_success",
            "1 when the check's last probe was healthy.",
            labels=labels,
        )
        duration = GaugeMetricFamily(
            "fencekit_check_duration_seconds",
            "Duration of the check's last probe.",
            labels=labels,
        )
        last = GaugeMetricFamily(
            "fencekit_check_last_run_timestamp_seconds",
            "When the check's last probe ended (Unix time).",
            labels=labels,
        )
        runs = CounterMetricFamily(
            "fencekit_check_runs", "Probes the check ran.", labels=labels
        )
        failures = CounterMetricFamily(
            "fencekit_check_failures",
            "Probes of the check that failed.",
            labels=labels,
        )
        for status in self._statuses():
            key = [status.spec.name, status.spec.kind]
            up.add_metric(key, float(status.state is State.UP))
            for each in State:
                state.add_metric([*key, each.value], status.state is each)
            runs.add_metric(key, status.runs)
            failures.add_metric(key, status.failed_runs)
            if status.last is not None:
                success.add_metric(key, float(status.last.healthy))
                duration.add_metric(key, status.last.duration)
                last.add_metric(key, status.last_time)
        yield from (up, state, success, duration, last, runs, failures)
        yield self._state_changes()

    def _state_changes(self) -> Metric:
        changes = CounterMetricFamily(
            "fencekit_check_state_changes",
            "State changes of the check, by the state entered.",
            labels=["check", "kind", "state"],
        )
        with self._lock:
            counts = sorted(self._changes.items())
        for key, count in counts:
            changes.add_metric(list(key), count)
        return changes

    def _details(self) -> Iterator[Metric]:
        # Every family is exposed even without samples, so that alert
        # rules and dashboards find their names on any agent.
        families = {
            metric: GaugeMetricFamily(metric, help_text, labels=["check"])
            for metric, help_text in DETAILS.values()
        }
        paths = _multipath_families()
        for status in self._statuses():
            outcome = status.last
            if outcome is None:
                continue
            name = status.spec.name
            for key, value in outcome.details.items():
                if key not in DETAILS or isinstance(value, str):
                    continue
                families[DETAILS[key][0]].add_metric([name], float(value))
            if outcome.kind == "multipath":
                _add_multipath(paths, [name], outcome)
        yield from families.values()
        yield from paths.values()

    def _fencer(self) -> Iterator[Metric]:
        yield from self.fence_operations.collect()
        yield from self.fence_duration.collect()

    def _agent(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "fencekit_agent_config_reload_success",
            "1 when the last configuration load or reload succeeded.",
            value=self.reload_success,
        )


def _multipath_families(check: bool = True) -> dict[str, GaugeMetricFamily]:
    base = ["check"] if check else []
    return {
        "paths": GaugeMetricFamily(
            "fencekit_multipath_paths",
            "Paths of a multipath map, by state (active, failed, total).",
            labels=[*base, "map", "state"],
        ),
        "degraded": GaugeMetricFamily(
            "fencekit_multipath_map_degraded",
            "1 when some path of the map is not active.",
            labels=[*base, "map"],
        ),
        "queueing": GaugeMetricFamily(
            "fencekit_multipath_map_queueing_no_paths",
            "1 when the map has no active path and queues I/O.",
            labels=[*base, "map"],
        ),
    }


def _add_multipath(
    families: dict[str, GaugeMetricFamily],
    base: list[str],
    outcome: ProbeOutcome,
) -> None:
    for name, item in outcome.items.items():
        for state in ("active", "failed", "total"):
            families["paths"].add_metric(
                [*base, name, state], float(item.get(state, 0))
            )
        families["degraded"].add_metric(
            [*base, name], float(bool(item.get("degraded")))
        )
        families["queueing"].add_metric(
            [*base, name], float(bool(item.get("queueing_no_paths")))
        )


def probe_exposition(outcome: ProbeOutcome) -> bytes:
    """One probe's outcome, in blackbox_exporter's manner."""
    registry = CollectorRegistry(auto_describe=False)

    def collect() -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "probe_success",
            "1 when the probe was healthy.",
            value=float(outcome.healthy),
        )
        yield GaugeMetricFamily(
            "probe_duration_seconds",
            "How long the probe took.",
            value=outcome.duration,
        )
        for key, value in outcome.details.items():
            if key not in DETAILS or isinstance(value, str):
                continue
            name, help_text = DETAILS[key]
            name = _PROBE_NAMES.get(key, name)
            yield GaugeMetricFamily(name, help_text, value=float(value))
        if outcome.kind == "multipath":
            families = _multipath_families(check=False)
            _add_multipath(families, [], outcome)
            yield from families.values()

    registry.register(_Callback(collect))
    return generate_latest(registry)


#: Runs a /probe request: (module, target) -> exposition; raises
#: ConfigError (HTTP 400) for an unknown module or unusable target.
ProbeHandler = Callable[[str, str], Coroutine[Any, Any, bytes]]


class Exporter:
    """The HTTP(S) endpoint: ``/metrics``, ``/probe``, ``/-/healthy``.

    It serves from a thread so that a slow scrape never holds the event
    loop; ``/probe`` runs its probe on the agent's loop.

    Args:
        metrics: what ``/metrics`` serves.
        probe: what ``/probe`` runs; it must not raise except
            :class:`~fencekit.errors.ConfigError`.
        loop: the loop ``probe`` runs on.
        host: address to listen on.
        port: port to listen on (0 picks a free one).
        tls_cert: certificate file (PEM) to serve HTTPS.
        tls_key: its key, when not in ``tls_cert``.
        probe_timeout: seconds a ``/probe`` request may take.

    Raises:
        ConfigError: the address cannot be bound or TLS files are bad.
    """

    def __init__(
        self,
        metrics: AgentMetrics,
        probe: ProbeHandler,
        loop: asyncio.AbstractEventLoop,
        *,
        host: str = "127.0.0.1",
        port: int = 9811,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        probe_timeout: float = 30.0,
    ) -> None:
        from fencekit.errors import ConfigError

        handler = _handler_class(metrics, probe, loop, probe_timeout)
        server_class: type[http.server.ThreadingHTTPServer] = (
            _Server6 if ":" in host else http.server.ThreadingHTTPServer
        )
        try:
            self._server = server_class((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                where="agent.listen",
            ) from exc
        self._server.daemon_threads = True
        if tls_cert:
            self._wrap_tls(tls_cert, tls_key)
        self._thread: threading.Thread | None = None

    def _wrap_tls(self, cert: str, key: str | None) -> None:
        try:
            context = tls_context(cert, key)
        except Exception:
            self._server.server_close()
            raise
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        port: int = self._server.server_address[1]
        return port

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="fencekit-exporter",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_class(
    metrics: AgentMetrics,
    probe: ProbeHandler,
    loop: asyncio.AbstractEventLoop,
    probe_timeout: float,
) -> type[http.server.BaseHTTPRequestHandler]:
    log = get_logger(__name__)

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "fencekit"
        sys_version = ""

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/metrics":
                self._send(200, metrics.exposition(), CONTENT_TYPE_LATEST)
            elif url.path == "/probe":
                self._probe(urllib.parse.parse_qs(url.query))
            elif url.path in ("/-/healthy", "/"):
                body = b"fencekit agent: /metrics /probe\n"
                self._send(200, body, "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _probe(self, query: dict[str, list[str]]) -> None:
            from fencekit.errors import ConfigError

            module = (query.get("module") or [""])[0]
            target = (query.get("target") or [""])[0]
            future = asyncio.run_coroutine_threadsafe(
                probe(module, target), loop
            )
            try:
                body = future.result(timeout=probe_timeout)
            except ConfigError as exc:
                self._send(400, f"{exc}\n".encode(), "text/plain")
                return
            except Exception as exc:
                future.cancel()
                text = f"probe failed: {type(exc).__name__}\n"
                self._send(500, text.encode(), "text/plain")
                return
            self._send(200, body, CONTENT_TYPE_LATEST)

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug(
                "http_request", request=self.requestline, status=args[1:2]
            )

    return Handler


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """The server TLS context for the agent's endpoint.

    Raises:
        ConfigError: the certificate or key cannot be loaded.
    """
    from fencekit.errors import ConfigError

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"cannot load TLS certificate: {exc}", where="agent.tls_cert"
        ) from exc
    return context
