"""The monitoring agent: checks on a schedule, thresholds, events.

A *check* runs one probe every ``interval`` seconds (plus up to
``jitter``), each run bounded by ``timeout``. Its state starts
``unknown``; it becomes ``down`` after ``down_after`` failed runs in a
row and ``up`` after ``up_after`` healthy runs in a row. Every check has
its own task, so a slow or hung probe never delays another check, and a
check never runs twice at once: while a run that overran its deadline
is still going (a storage read stuck in the kernel), the next runs fail
with that reason instead of starting another.

Each state change is an :class:`Event`, handed to every subscriber in
:attr:`Monitor.subscribers` (async callables) in its own task, so a slow
subscriber (a fence takes a minute) delays neither the checks nor the
other subscribers. The agent subscribes a log line, the metrics and the
configured actions; other modules add their own with
:meth:`Monitor.subscribe`.

The agent's configuration is TOML (see ``contrib/agent.example.toml``),
loaded by :func:`load_config`; every error names the file and key.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from fencekit._log import get_logger
from fencekit.clock import SYSTEM_CLOCK, Clock
from fencekit.errors import ConfigError, FencekitError
from fencekit.outcome import FenceOutcome
from fencekit.probes import Probe, ProbeOutcome, build
from fencekit.probes.base import close as close_probe

if TYPE_CHECKING:
    from fencekit.notify import Notifier

__all__ = [
    "DEFAULT_LISTEN",
    "ActionSpec",
    "Agent",
    "AgentConfig",
    "CheckSpec",
    "CheckStatus",
    "Event",
    "FenceRequest",
    "ModuleSpec",
    "Monitor",
    "State",
    "Subscriber",
    "action_subscriber",
    "load_config",
    "log_subscriber",
    "parse_config",
    "run_action",
    "split_host_port",
    "with_target",
]

DEFAULT_LISTEN: Final = "127.0.0.1:9811"
# A probe enforces its own deadline; the scheduler waits this much more
# before it gives up on the run, so a probe's own reason wins.
_GRACE: Final = 0.5
_CHECK_DEFAULTS: Final = {
    "interval": 10.0,
    "timeout": 5.0,
    "jitter": 0.0,
    "down_after": 3,
    "up_after": 1,
}
_SCHEDULE_KEYS: Final = (
    "kind",
    "interval",
    "jitter",
    "down_after",
    "up_after",
    "actions",
    "node",
)
_ACTION_TIMEOUT: Final = 30.0


class State(enum.Enum):
    """A check's state, as the thresholds judge it."""

    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclasses.dataclass(frozen=True)
class CheckSpec:
    """One configured check.

    Attributes:
        name: the check's name (its table in the configuration).
        kind: the probe's kind.
        probe: the probe to run.
        interval: seconds between runs.
        timeout: deadline of one run.
        jitter: up to this many seconds added to each interval.
        down_after: failed runs in a row that make the check down.
        up_after: healthy runs in a row that make the check up.
        actions: names of actions run on its state changes.
        node: the node this check watches, for fence actions.
        options: the probe's option table, to detect changes on reload.
    """

    name: str
    kind: str
    probe: Probe
    interval: float = 10.0
    timeout: float = 5.0
    jitter: float = 0.0
    down_after: int = 3
    up_after: int = 1
    actions: tuple[str, ...] = ()
    node: str | None = None
    options: Mapping[str, Any] = dataclasses.field(
        default_factory=dict, compare=False
    )


@dataclasses.dataclass(frozen=True)
class ActionSpec:
    """What to do on a state change.

    Attributes:
        name: the action's name.
        type: ``command`` or ``fence``.
        on: the states that trigger it.
        command: for ``command``: the program and its arguments.
        node: for ``fence``: the node, else the check's node.
        fence_action: for ``fence``: ``off`` or ``reboot``.
        timeout: seconds a command may run.
    """

    name: str
    type: str
    on: frozenset[State] = frozenset({State.DOWN})
    command: tuple[str, ...] = ()
    node: str | None = None
    fence_action: str = "off"
    timeout: float = _ACTION_TIMEOUT


@dataclasses.dataclass(frozen=True)
class ModuleSpec:
    """A probe module that ``/probe`` can run against any target."""

    name: str
    kind: str
    options: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The whole agent configuration.

    Attributes:
        path: the file it was read from.
        listen: ``host:port`` of the metrics endpoint.
        tls_cert: certificate (PEM) to serve HTTPS with, if any.
        tls_key: its key, when not in ``tls_cert``.
        inventory: the fencer's inventory, needed by fence actions.
        checks: the checks, in file order.
        actions: actions by name.
        modules: ``/probe`` modules by name.
        notifier: sends SNMP notifications (``[notifications]``), if
            configured.
    """

    path: Path
    listen: str = DEFAULT_LISTEN
    tls_cert: str | None = None
    tls_key: str | None = None
    inventory: str | None = None
    checks: tuple[CheckSpec, ...] = ()
    actions: Mapping[str, ActionSpec] = dataclasses.field(default_factory=dict)
    modules: Mapping[str, ModuleSpec] = dataclasses.field(default_factory=dict)
    notifier: Notifier | None = None

    @property
    def listen_address(self) -> tuple[str, int]:
        """``listen`` split into host and port."""
        return split_host_port(self.listen, "listen")


@dataclasses.dataclass(frozen=True)
class Event:
    """A check changed state.

    Attributes:
        check: the check's name.
        kind: its probe kind.
        previous: the state before.
        state: the state now.
        outcome: the probe outcome that tipped it.
        node: the node the check watches, if any.
        streak: runs in a row with the same result.
        time: when it happened (Unix time).
    """

    check: str
    kind: str
    previous: State
    state: State
    outcome: ProbeOutcome
    node: str | None
    streak: int
    time: float

    def environment(self) -> dict[str, str]:
        """The event as ``FENCEKIT_EVENT_*`` environment variables."""
        return {
            "FENCEKIT_EVENT_CHECK": self.check,
            "FENCEKIT_EVENT_KIND": self.kind,
            "FENCEKIT_EVENT_STATE": self.state.value,
            "FENCEKIT_EVENT_PREVIOUS": self.previous.value,
            "FENCEKIT_EVENT_NODE": self.node or "",
            "FENCEKIT_EVENT_TARGET": self.outcome.target,
            "FENCEKIT_EVENT_REASON": self.outcome.reason,
            "FENCEKIT_EVENT_STREAK": str(self.streak),
            "FENCEKIT_EVENT_TIME": f"{self.time:.3f}",
        }


#: An event subscriber.
Subscriber = Callable[[Event], Awaitable[None]]

#: Asks the fencer to fence a node: ``await request(node, action)``.
FenceRequest = Callable[[str, str], Awaitable[FenceOutcome]]


@dataclasses.dataclass
class CheckStatus:
    """A check's running state, read by the metrics at scrape time."""

    spec: CheckSpec
    state: State = State.UNKNOWN
    successes: int = 0
    failures: int = 0
    runs: int = 0
    failed_runs: int = 0
    changes: int = 0
    last: ProbeOutcome | None = None
    last_time: float = 0.0
    inflight: asyncio.Future[ProbeOutcome] | None = None

    def record(self, outcome: ProbeOutcome) -> State | None:
        """Count ``outcome``; return the previous state if it changed."""
        self.runs += 1
        self.last = outcome
        self.last_time = time.time()
        if outcome.healthy:
            self.successes, self.failures = self.successes + 1, 0
            target, needed, streak = (
                State.UP,
                self.spec.up_after,
                self.successes,
            )
        else:
            self.failed_runs += 1
            self.successes, self.failures = 0, self.failures + 1
            target, needed = State.DOWN, self.spec.down_after
            streak = self.failures
        if self.state is target or streak < needed:
            return None
        previous, self.state = self.state, target
        self.changes += 1
        return previous


class Monitor:
    """Runs checks and publishes their state changes.

    Args:
        checks: the checks to run.
        clock: time source (a fake one in tests).
        rng: random source for jitter.
    """

    def __init__(
        self,
        checks: Sequence[CheckSpec] = (),
        *,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.subscribers: list[Subscriber] = []
        self._clock = clock
        self._rng = rng or random.Random()
        self._status: dict[str, CheckStatus] = {
            spec.name: CheckStatus(spec) for spec in checks
        }
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._stopped = asyncio.Event()
        self._log = get_logger(__name__)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add ``subscriber``; it is called with every later event."""
        self.subscribers.append(subscriber)

    def statuses(self) -> list[CheckStatus]:
        """Every check's running state, in configuration order."""
        return list(self._status.values())

    def status(self, name: str) -> CheckStatus:
        """The running state of check ``name`` (KeyError if none)."""
        return self._status[name]

    def start(self) -> None:
        """Start every check's task on the running loop."""
        for name in self._status:
            self._start(name)

    def _start(self, name: str) -> None:
        task = asyncio.create_task(self._loop(name), name=f"check:{name}")
        self._tasks[name] = task

    async def run(self) -> None:
        """Start the checks and run until :meth:`stop`."""
        self.start()
        await self._stopped.wait()
        await self.close()

    def stop(self) -> None:
        """Ask :meth:`run` to return."""
        self._stopped.set()

    async def close(self) -> None:
        """Cancel the checks; wait for subscribers already running."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        for status in self._status.values():
            await close_probe(status.spec.probe)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    async def replace(self, checks: Sequence[CheckSpec]) -> None:
        """Run ``checks`` from now on (configuration reload).

        A check whose name and settings are unchanged keeps running with
        its state; a changed one restarts with its counters kept; a
        removed one stops.
        """
        wanted = {spec.name: spec for spec in checks}
        for name in list(self._status):
            if name not in wanted:
                await self._cancel(name)
                await close_probe(self._status[name].spec.probe)
                del self._status[name]
        for name, spec in wanted.items():
            status = self._status.get(name)
            if status is not None and _same(status.spec, spec):
                continue
            await self._cancel(name)
            if status is None:
                self._status[name] = CheckStatus(spec)
            else:
                await close_probe(status.spec.probe)
                status.spec = spec
            if not self._stopped.is_set():
                self._start(name)
        self._status = {name: self._status[name] for name in wanted}

    async def _cancel(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self, name: str) -> None:
        status = self._status[name]
        # Spread the first runs too, so that checks configured together
        # do not all fire at start-up at the same instant.
        next_run = self._clock.monotonic()
        next_run += self._rng.uniform(0.0, status.spec.jitter)
        await self._clock.sleep(next_run - self._clock.monotonic())
        while True:
            spec = status.spec
            outcome = await self._run_once(status)
            self._judge(status, outcome)
            delay = spec.interval + self._rng.uniform(0.0, spec.jitter)
            next_run = max(next_run + delay, self._clock.monotonic())
            await self._clock.sleep(next_run - self._clock.monotonic())

    async def _run_once(self, status: CheckStatus) -> ProbeOutcome:
        spec = status.spec
        if status.inflight is not None and not status.inflight.done():
            return _failure(spec, "the previous run is still going")
        status.inflight = asyncio.ensure_future(spec.probe.run())
        try:
            async with asyncio.timeout(spec.timeout + _GRACE):
                return await asyncio.shield(status.inflight)
        except TimeoutError:
            return _failure(spec, f"no outcome within {spec.timeout:g} s")
        except Exception as exc:
            # A probe is not meant to raise; if one does, the check
            # fails with the reason and keeps running.
            self._log.exception("probe_raised", check=spec.name)
            return _failure(spec, f"probe error: {type(exc).__name__}")

    def _judge(self, status: CheckStatus, outcome: ProbeOutcome) -> None:
        previous = status.record(outcome)
        if previous is None:
            return
        spec = status.spec
        streak = status.successes or status.failures
        event = Event(
            check=spec.name,
            kind=spec.kind,
            previous=previous,
            state=status.state,
            outcome=outcome,
            node=spec.node,
            streak=streak,
            time=time.time(),
        )
        self.publish(event)

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber, each in its own task."""
        for subscriber in list(self.subscribers):
            task = asyncio.create_task(self._deliver(subscriber, event))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _deliver(self, subscriber: Subscriber, event: Event) -> None:
        try:
            await subscriber(event)
        except Exception:
            self._log.exception(
                "event_subscriber_failed",
                check=event.check,
                subscriber=getattr(subscriber, "__qualname__", "?"),
            )


def _same(a: CheckSpec, b: CheckSpec) -> bool:
    return (
        dataclasses.replace(a, probe=b.probe) == b and a.options == b.options
    )


def _failure(spec: CheckSpec, reason: str) -> ProbeOutcome:
    return ProbeOutcome(
        kind=spec.kind,
        target=spec.probe.target,
        healthy=False,
        duration=spec.timeout,
        reason=reason,
    )


async def log_subscriber(event: Event) -> None:
    """One log line per state change (WARNING when a check goes down)."""
    log = get_logger("fencekit.monitor")
    method = log.warning if event.state is State.DOWN else log.info
    method(
        "check_state_changed",
        check=event.check,
        kind=event.kind,
        previous=event.previous.value,
        state=event.state.value,
        target=event.outcome.target,
        reason=event.outcome.reason,
        streak=event.streak,
        node=event.node,
    )


def action_subscriber(
    actions: Callable[[], Mapping[str, ActionSpec]],
    checks: Callable[[str], CheckSpec | None],
    fence: FenceRequest | None,
    on_fence: Callable[[FenceOutcome], None] | None = None,
) -> Subscriber:
    """A subscriber that runs the actions a check names.

    Args:
        actions: returns the current actions by name (they change on
            reload).
        checks: returns a check's spec by name.
        fence: asks the fencer to fence a node; None when no inventory
            is configured.
        on_fence: called with each fence outcome (metrics).
    """

    async def subscriber(event: Event) -> None:
        spec = checks(event.check)
        if spec is None:
            return
        table = actions()
        chosen = [table[n] for n in spec.actions if n in table]
        await asyncio.gather(
            *(
                run_action(a, event, fence, on_fence)
                for a in chosen
                if event.state in a.on
            )
        )

    return subscriber


async def run_action(
    action: ActionSpec,
    event: Event,
    fence: FenceRequest | None,
    on_fence: Callable[[FenceOutcome], None] | None = None,
) -> None:
    """Run one action for ``event``; failures are logged, never raised."""
    log = get_logger(__name__)
    if action.type == "command":
        code = await _run_command(action, event)
        method = log.info if code == 0 else log.error
        method(
            "action_command_finished",
            action=action.name,
            check=event.check,
            exit_code=code,
        )
        return

    node = action.node or event.node
    if fence is None or node is None:
        log.error(
            "action_fence_impossible",
            action=action.name,
            check=event.check,
            reason="no fencer inventory" if node else "no node",
        )
        return
    log.warning(
        "action_fence_requested",
        action=action.name,
        check=event.check,
        node=node,
        fence_action=action.fence_action,
    )
    try:
        outcome = await fence(node, action.fence_action)
    except FencekitError as exc:
        log.error(
            "action_fence_failed",
            action=action.name,
            node=node,
            reason=str(exc),
        )
        return
    if on_fence is not None:
        on_fence(outcome)
    method = log.warning if outcome.success else log.error
    method(
        "action_fence_finished",
        action=action.name,
        node=node,
        success=outcome.success,
        reason=outcome.reason,
    )


async def _run_command(action: ActionSpec, event: Event) -> int | None:
    """Run the action's command with the event in its environment."""
    try:
        process = await asyncio.create_subprocess_exec(
            *action.command,
            stdin=asyncio.subprocess.DEVNULL,
            env={**os.environ, **event.environment()},
            start_new_session=True,
        )
    except OSError as exc:
        get_logger(__name__).error(
            "action_command_failed",
            action=action.name,
            reason=exc.strerror or str(exc),
        )
        return None
    try:
        async with asyncio.timeout(action.timeout):
            return await process.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        await process.wait()
        return None


# The agent -------------------------------------------------------------


class Agent:
    """The monitoring agent: checks, metrics endpoint, actions, reload.

    Args:
        config: the loaded configuration.
        fence: how fence actions reach the fencer; by default a
            :class:`~fencekit.fencing.Fencer` over ``config.inventory``.
        listen: override of ``config.listen`` (tests pick a free port).
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        fence: FenceRequest | None = None,
        listen: tuple[str, int] | None = None,
    ) -> None:
        from fencekit.metrics import AgentMetrics

        self.config = config
        self.monitor = Monitor(config.checks)
        self.metrics = AgentMetrics(self.monitor.statuses)
        self._fence_override = fence
        self._fencer: Any = None
        self._listen = listen or config.listen_address
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[bool] | None = None
        self._log = get_logger(__name__)
        self.exporter: Any = None
        self.monitor.subscribe(log_subscriber)
        self.monitor.subscribe(self.metrics.on_event)
        self.monitor.subscribe(self._notify)
        self.monitor.subscribe(
            action_subscriber(
                lambda: self.config.actions,
                self._check_spec,
                self._fence,
                self.metrics.observe_fence,
            )
        )

    async def _notify(self, event: Event) -> None:
        """Send the event as an SNMP notification, when configured."""
        if self.config.notifier is not None:
            await self.config.notifier.on_check_event(event)

    def _check_spec(self, name: str) -> CheckSpec | None:
        try:
            return self.monitor.status(name).spec
        except KeyError:
            return None

    async def _fence(self, node: str, action: str) -> FenceOutcome:
        if self._fence_override is not None:
            return await self._fence_override(node, action)
        if self._fencer is None:
            raise ConfigError("no fencer inventory", where="agent.inventory")
        outcome: FenceOutcome = await self._fencer.fence(node, action)
        return outcome

    async def run(self) -> None:
        """Serve and run the checks until :meth:`stop`.

        Raises:
            ConfigError: the listen address cannot be bound, or the
                fencer inventory is invalid.
        """
        from fencekit.metrics import Exporter

        self._fencer = self._new_fencer(self.config)
        host, port = self._listen
        self.exporter = Exporter(
            self.metrics,
            self.probe,
            asyncio.get_running_loop(),
            host=host,
            port=port,
            tls_cert=self.config.tls_cert,
            tls_key=self.config.tls_key,
        )
        self.exporter.start()
        self._log.info(
            "agent_started",
            checks=len(self.config.checks),
            listen=f"{host}:{self.exporter.port}",
        )
        try:
            self.monitor.start()
            await self._stop.wait()
        finally:
            await self.monitor.close()
            self.exporter.close()
            if self._fencer is not None:
                await self._fencer.close()
            if self.config.notifier is not None:
                await self.config.notifier.aclose()
            self._log.info("agent_stopped")

    def _new_fencer(self, config: AgentConfig) -> Any:
        if self._fence_override is not None or config.inventory is None:
            return None
        from fencekit.config import load
        from fencekit.fencing import Fencer

        inventory = load(config.inventory)
        for spec in config.actions.values():
            if spec.type == "fence" and spec.node is not None:
                inventory.node(spec.node)
        for check in config.checks:
            if check.node is not None and check.actions:
                inventory.node(check.node)
        notifier = config.notifier
        return Fencer(
            inventory,
            on_event=notifier.on_fence_record if notifier else None,
        )

    def validate(self) -> None:
        """Check what :meth:`run` would only find at start: the fencer's
        inventory and the nodes the actions name, and the TLS files.

        Raises:
            ConfigError: the inventory, a node or the TLS files are bad.
            SecretError: a credential source of the inventory is bad.
        """
        self._new_fencer(self.config)
        if self.config.tls_cert:
            from fencekit.metrics import tls_context

            tls_context(self.config.tls_cert, self.config.tls_key)

    def stop(self) -> None:
        """Ask :meth:`run` to return (SIGTERM)."""
        self._stop.set()

    def reload(self) -> None:
        """Reload the configuration in the background (SIGHUP)."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.create_task(self.reload_now())

    async def reload_now(self) -> bool:
        """Reload the configuration; keep the old one if the new fails.

        Returns:
            Whether the new configuration is in use.
        """
        from fencekit.errors import SecretError

        path = self.config.path
        try:
            config = await asyncio.to_thread(load_config, path)
            fencer = await asyncio.to_thread(self._new_fencer, config)
        except (ConfigError, SecretError) as exc:
            self.metrics.reload_success = 0.0
            self._log.error(
                "config_reload_failed", reason=str(exc), kept="old"
            )
            return False
        if config.listen != self.config.listen:
            self._log.warning(
                "config_listen_unchanged",
                reason="a new listen address needs a restart",
            )
        old, self._fencer = self._fencer, fencer
        old_notifier = self.config.notifier
        self.config = config
        await self.monitor.replace(config.checks)
        self.metrics.reload_success = 1.0
        self._log.info("config_reloaded", checks=len(config.checks))
        if old is not None:
            await old.close()
        if old_notifier is not None:
            await old_notifier.aclose()
        return True

    async def probe(self, module: str, target: str) -> bytes:
        """Run ``/probe`` module ``module`` against ``target``.

        Raises:
            ConfigError: unknown module or unusable target.
        """
        from fencekit.metrics import probe_exposition

        spec = self.config.modules.get(module)
        if spec is None:
            raise ConfigError(f"no module {module!r}", where="module")
        if not target:
            raise ConfigError("is required", where="target")
        options = with_target(spec.kind, spec.options, target)
        probe = build(spec.kind, options, f"modules.{module}")
        try:
            outcome = await probe.run()
        finally:
            await close_probe(probe)
        return probe_exposition(outcome)


# Configuration ---------------------------------------------------------


def split_host_port(text: str, where: str) -> tuple[str, int]:
    """Split ``host:port`` (``[v6]:port`` for IPv6).

    Raises:
        ConfigError: no port, or not a port number.
    """
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected host:port, got {text!r}", where=where)
    return host.strip("[]") or "0.0.0.0", int(port)


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Read and validate the agent configuration at ``path``.

    Raises:
        ConfigError: unreadable, not TOML, or invalid; the message names
            the file and the key.
        SecretError: a probe's credential source gave no secret.
    """
    from fencekit import _toml

    file = Path(path)
    data = _toml.read(file)
    return parse_config(data, file)


def parse_config(data: Mapping[str, Any], path: Path) -> AgentConfig:
    """Validate an already parsed configuration table.

    Raises:
        ConfigError: a key is missing, unknown or invalid.
        SecretError: a probe's credential source gave no secret.
    """
    at = _Locator(str(path))
    at.known(
        data,
        ("agent", "defaults", "checks", "actions", "modules", "notifications"),
        "",
    )
    agent = _table(data, "agent", at)
    at.known(agent, ("listen", "tls_cert", "tls_key", "inventory"), "agent")
    listen = _string(agent, "listen", at, "agent", DEFAULT_LISTEN)
    split_host_port(listen, at("agent.listen"))

    defaults = _table(data, "defaults", at)
    at.known(defaults, tuple(_CHECK_DEFAULTS), "defaults")
    base = {**_CHECK_DEFAULTS, **defaults}

    actions = {
        name: _action(name, table, at)
        for name, table in _table(data, "actions", at).items()
    }
    checks = tuple(
        _check(name, table, base, actions, at)
        for name, table in _table(data, "checks", at).items()
    )
    modules = {
        name: _module(name, table, at)
        for name, table in _table(data, "modules", at).items()
    }
    inventory = _string(agent, "inventory", at, "agent", None)
    if inventory is not None:
        inventory = str((path.parent / inventory).resolve())
    _check_fence_actions(checks, actions, inventory, at)
    return AgentConfig(
        path=path,
        listen=listen,
        tls_cert=_string(agent, "tls_cert", at, "agent", None),
        tls_key=_string(agent, "tls_key", at, "agent", None),
        inventory=inventory,
        checks=checks,
        actions=actions,
        modules=modules,
        notifier=_notifier(data, at),
    )


def _notifier(data: Mapping[str, Any], at: _Locator) -> Notifier | None:
    """The ``[notifications]`` table's notifier, when there is one."""
    if "notifications" not in data:
        return None
    from fencekit.notify import parse_config as parse_notifications

    return parse_notifications(
        _table(data, "notifications", at), where=at("notifications")
    )


class _Locator:
    """Builds ``file: key.path`` locations for messages."""

    def __init__(self, file: str) -> None:
        self.file = file

    def __call__(self, key: str) -> str:
        return f"{self.file}: {key}" if key else self.file

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, where=self(key))

    def known(
        self, table: Mapping[str, Any], keys: Sequence[str], prefix: str
    ) -> None:
        for key in table:
            if key not in keys:
                name = f"{prefix}.{key}" if prefix else key
                raise self.fail(name, "unknown key")


def _table(data: Mapping[str, Any], key: str, at: _Locator) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise at.fail(key, "must be a table")
    return value


def _string(
    table: Mapping[str, Any],
    key: str,
    at: _Locator,
    prefix: str,
    default: Any,
) -> Any:
    value = table.get(key, default)
    if value is not default and not isinstance(value, str):
        raise at.fail(f"{prefix}.{key}", "must be a string")
    return value


def _number(value: Any, where: str, at: _Locator, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise at.fail(where, "must be a number")
    if not math.isfinite(value) or value < minimum:
        raise at.fail(where, f"must be at least {minimum:g}")
    return float(value)


def _count(value: Any, where: str, at: _Locator) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise at.fail(where, "must be a whole number of at least 1")
    return value


def _check(
    name: str,
    table: Any,
    base: Mapping[str, Any],
    actions: Mapping[str, ActionSpec],
    at: _Locator,
) -> CheckSpec:
    where = f"checks.{name}"
    if not isinstance(table, dict):
        raise at.fail(where, "must be a table")
    merged = {**base, **table}
    kind = merged.get("kind")
    if not isinstance(kind, str):
        raise at.fail(f"{where}.kind", "is required (a probe kind)")
    interval = _number(merged["interval"], f"{where}.interval", at, 0.01)
    timeout = _number(merged["timeout"], f"{where}.timeout", at, 0.001)
    jitter = _number(merged["jitter"], f"{where}.jitter", at, 0.0)
    names = merged.get("actions", [])
    if not isinstance(names, list) or not all(
        isinstance(n, str) for n in names
    ):
        raise at.fail(f"{where}.actions", "must be a list of action names")
    for action in names:
        if action not in actions:
            raise at.fail(f"{where}.actions", f"no action named {action!r}")
    node = merged.get("node")
    if node is not None and not isinstance(node, str):
        raise at.fail(f"{where}.node", "must be a string")

    options = {
        k: v
        for k, v in merged.items()
        if k not in _SCHEDULE_KEYS and (k in table or k == "timeout")
    }
    options["timeout"] = timeout
    probe = build(kind, options, at(where))
    return CheckSpec(
        name=name,
        kind=kind,
        probe=probe,
        interval=interval,
        timeout=timeout,
        jitter=jitter,
        down_after=_count(merged["down_after"], f"{where}.down_after", at),
        up_after=_count(merged["up_after"], f"{where}.up_after", at),
        actions=tuple(names),
        node=node,
        options=options,
    )


def _action(name: str, table: Any, at: _Locator) -> ActionSpec:
    where = f"actions.{name}"
    if not isinstance(table, dict):
        raise at.fail(where, "must be a table")
    kind = table.get("type")
    allowed = {
        "command": ("type", "on", "command", "timeout"),
        "fence": ("type", "on", "node", "fence_action"),
    }
    if not isinstance(kind, str) or kind not in allowed:
        raise at.fail(f"{where}.type", "must be 'command' or 'fence'")
    at.known(table, allowed[kind], where)
    on = table.get("on", ["down"])
    states = {s.value: s for s in State}
    if not isinstance(on, list) or not all(
        isinstance(s, str) and s in states for s in on
    ):
        raise at.fail(f"{where}.on", "must list states: up, down, unknown")
    spec = ActionSpec(
        name=name, type=kind, on=frozenset(states[s] for s in on)
    )
    if kind == "command":
        return dataclasses.replace(
            spec,
            command=_argv(table.get("command"), f"{where}.command", at),
            timeout=_number(
                table.get("timeout", _ACTION_TIMEOUT),
                f"{where}.timeout",
                at,
                0.001,
            ),
        )
    fence_action = table.get("fence_action", "off")
    if fence_action not in ("off", "reboot"):
        raise at.fail(f"{where}.fence_action", "must be 'off' or 'reboot'")
    node = table.get("node")
    if node is not None and not isinstance(node, str):
        raise at.fail(f"{where}.node", "must be a string")
    return dataclasses.replace(spec, node=node, fence_action=fence_action)


def _argv(value: Any, where: str, at: _Locator) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(a, str) for a in value)
    ):
        raise at.fail(where, "must be a non-empty list of strings")
    return tuple(value)


def _module(name: str, table: Any, at: _Locator) -> ModuleSpec:
    where = f"modules.{name}"
    if not isinstance(table, dict):
        raise at.fail(where, "must be a table")
    kind = table.get("kind")
    if not isinstance(kind, str) or kind not in _PROBE_TARGETS:
        kinds = ", ".join(sorted(_PROBE_TARGETS))
        raise at.fail(f"{where}.kind", f"must be one of {kinds}")
    options = {k: v for k, v in table.items() if k != "kind"}
    # Build once with a placeholder target so that a bad option fails at
    # load time, not at the first scrape.
    placeholder = {"url": "http://127.0.0.1:1/", "path": "/dev/null"}.get(
        _PROBE_TARGETS[kind], "127.0.0.1:1"
    )
    build(kind, with_target(kind, options, placeholder), at(where))
    return ModuleSpec(name=name, kind=kind, options=options)


def _check_fence_actions(
    checks: Sequence[CheckSpec],
    actions: Mapping[str, ActionSpec],
    inventory: str | None,
    at: _Locator,
) -> None:
    fence_actions = [a for a in actions.values() if a.type == "fence"]
    if fence_actions and inventory is None:
        name = fence_actions[0].name
        raise at.fail(
            f"actions.{name}", "a fence action needs agent.inventory"
        )
    for check in checks:
        for name in check.actions:
            action = actions[name]
            if action.type == "fence" and not (action.node or check.node):
                raise at.fail(
                    f"checks.{check.name}.node",
                    f"action {name!r} fences, so name the node to fence",
                )


# /probe targets: which option the target fills, per kind.
_PROBE_TARGETS: Final = {
    "http": "url",
    "tcp": "host:port",
    "postgres": "host:port",
    "mysql": "host:port",
    "disk": "path",
}


def with_target(
    kind: str, options: Mapping[str, Any], target: str
) -> dict[str, Any]:
    """A module's options with ``target`` filled in.

    Raises:
        ConfigError: ``target`` does not suit the kind.
    """
    key = _PROBE_TARGETS.get(kind)
    if key is None:
        raise ConfigError(f"kind {kind!r} takes no target", where="target")
    result = dict(options)
    if key != "host:port":
        result[key] = target
        return result
    if ":" in target.strip("[]") or target.startswith("["):
        host, port = split_host_port(target, "target")
        result["host"], result["port"] = host, port
    else:
        result["host"] = target
    return result
