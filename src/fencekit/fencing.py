"""The fencer: fence levels, per-node locks, verification, the journal.

:class:`Fencer` fences nodes of an :class:`~fencekit.config.Inventory`::

    inventory = fencekit.config.load("/etc/fencekit/inventory.toml")
    async with Fencer(inventory) as fencer:
        outcome = await fencer.fence("node-b", "off")

A fence tries the node's levels in order inside one deadline
(``fencer.fence_timeout``). A level is one or more fence devices that
must all succeed; they are driven at the same time. When a level fails
the next is tried, and when every level fails the outcome keeps each
level's cause (``outcome.error`` is a
:class:`~fencekit.errors.FenceFailedError` whose ``causes`` are in level
order). ``reboot`` is a verified ``off`` on every device of a level, then
``on``; when only the ``on`` fails the fence succeeded and the outcome
has ``power_on_failed``.

Requests for a node and action already being fenced in this process join
that fence and get its outcome. Across processes a lock file per node
(:mod:`fencekit.locks`) serialises fences, so a later fencer finds the
node off and verifies it without sending a command. Different nodes are
fenced in parallel, at most ``fencer.max_parallel`` at once. Every
request, device attempt and outcome is written to the journal
(:mod:`fencekit.journal`) and synced to disk before the outcome is
returned.

Fence methods
-------------

A level's device is driven by a *fence method*, any object with:

- ``name`` (the device's inventory name), ``method`` (``ipmi``,
  ``scsi``...) and ``device`` (its address) attributes;
- ``async run(action, timeout) -> FenceOutcome`` for ``Action.OFF`` and
  ``Action.ON``: carry out the action on the node, verify it, and return
  an outcome that is ``verified`` only when the result was read back. It
  never raises a :class:`~fencekit.errors.FencekitError`: failures are
  unverified outcomes with a ``reason`` and the ``error``;
- ``async check(timeout) -> str``: prove the device answers and accepts
  its credentials; return a short description (``power on``), or raise
  a :class:`~fencekit.errors.FencekitError`;
- ``async close()``: release sessions; safe to call twice.

A method is built for one node (``None`` for ``check`` of a device no
node uses) by a builder, a callable taking a :class:`MethodContext`.
Power drivers of :mod:`fencekit.power.drivers` need no builder: they are
wrapped in :class:`PowerMethod`, which acts through
:func:`fencekit.power.operate.attempt`. Other kinds plug in with
:func:`register_method`, or, so that an inventory naming the driver
validates before the kind's module is imported, with a
``"module:function"`` entry in :data:`LAZY_METHODS`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

from fencekit._log import get_logger
from fencekit.clock import SYSTEM_CLOCK, Clock
from fencekit.config import (
    DeviceConfig,
    Inventory,
    NodeConfig,
)
from fencekit.errors import (
    ConfigError,
    DeviceTimeoutError,
    FenceFailedError,
    FencekitError,
)
from fencekit.journal import Journal
from fencekit.locks import NodeLock
from fencekit.outcome import Action, FenceOutcome, PowerState

__all__ = [
    "LAZY_METHODS",
    "CheckResult",
    "FenceMethod",
    "Fencer",
    "MethodBuilder",
    "MethodContext",
    "PowerMethod",
    "build_method",
    "fence",
    "known_drivers",
    "register_method",
]

FENCE_ACTIONS: Final = (Action.OFF, Action.REBOOT, Action.ON)

EventHook = Callable[[dict[str, Any]], None]


class FenceMethod(Protocol):
    """One fence device, ready to act on one node (see module doc)."""

    name: str
    method: str
    device: str

    async def run(self, action: Action, timeout: float) -> FenceOutcome:
        """Carry out ``OFF`` or ``ON`` and verify it; never raise."""
        ...

    async def check(self, timeout: float) -> str:
        """Prove the device answers and accepts its credentials.

        Raises:
            FencekitError: it does not.
        """
        ...

    async def close(self) -> None:
        """Release the device's sessions; safe to call twice."""
        ...


@dataclasses.dataclass(frozen=True)
class MethodContext:
    """What a builder gets to build a fence method.

    Attributes:
        device: the device's inventory entry.
        node: the node to act on; None when only checking the device.
        options: the device's options with the node's own merged over.
        settle: consecutive readings of the wanted state required.
        interval: seconds between readings while the state is wrong.
        settle_interval: seconds between the readings that confirm it.
        clock: the clock to use.
        cluster: the inventory's cluster name.
        local_node: the node this machine is, when known.
    """

    device: DeviceConfig
    node: NodeConfig | None
    options: Mapping[str, Any]
    settle: int = 2
    interval: float = 0.25
    settle_interval: float = 0.1
    clock: Clock = SYSTEM_CLOCK
    cluster: str = ""
    local_node: NodeConfig | None = None


MethodBuilder = Callable[[MethodContext], FenceMethod]

_BUILDERS: dict[str, MethodBuilder] = {}

LAZY_METHODS: dict[str, str] = {"scsi": "fencekit.storage.method:build"}
"""Builders by driver name as ``"module:function"``, imported when used."""


def register_method(driver: str, builder: MethodBuilder) -> None:
    """Make ``driver`` in an inventory build its methods with ``builder``.

    A builder registered here takes precedence over a power driver of the
    same name.
    """
    _BUILDERS[driver] = builder


def known_drivers() -> frozenset[str]:
    """Every driver name an inventory device may use."""
    from fencekit.power.drivers import DRIVERS

    return frozenset(DRIVERS) | frozenset(_BUILDERS) | frozenset(LAZY_METHODS)


def build_method(context: MethodContext) -> FenceMethod:
    """Build the fence method for ``context.device``.

    Raises:
        ConfigError: no builder or power driver has the device's driver.
    """
    driver = context.device.driver
    builder = _BUILDERS.get(driver)
    if builder is None and driver in LAZY_METHODS:
        module, _, name = LAZY_METHODS[driver].partition(":")
        builder = getattr(importlib.import_module(module), name)
        _BUILDERS[driver] = builder
    if builder is not None:
        return builder(context)
    if driver in known_drivers():
        return PowerMethod(context)
    raise ConfigError(f"unknown driver {driver!r}", where=context.device.name)


class PowerMethod:
    """A power fence device as a fence method.

    The driver is built, and the password read, at first use. Every
    action goes through :func:`fencekit.power.operate.attempt`, which
    reads the state first, sends a command only when needed and
    verifies the result.
    """

    def __init__(self, context: MethodContext) -> None:
        self.name = context.device.name
        self.method = context.device.driver
        self.device = context.device.address
        self._context = context
        self._driver: Any = None

    async def run(self, action: Action, timeout: float) -> FenceOutcome:
        """Carry out ``action`` through ``attempt``; never raise."""
        from fencekit.power.operate import Verification, attempt

        node = self._context.node
        name = node.name if node is not None else self.device
        try:
            driver = await self._open()
            verification = Verification(
                timeout=min(self._context.device.timeout, timeout),
                settle=self._context.settle,
                interval=self._context.interval,
                settle_interval=self._context.settle_interval,
            )
        except FencekitError as exc:
            return self._failed(name, action, exc)
        return await attempt(
            driver,
            action,
            node=name,
            verification=verification,
            clock=self._context.clock,
        )

    async def check(self, timeout: float) -> str:
        """Read the power state once.

        Raises:
            FencekitError: the device did not answer, or refused us.
        """
        driver = await self._open()
        limit = min(self._context.device.timeout, timeout)
        try:
            state = await asyncio.wait_for(driver.read_state(limit), limit)
        except TimeoutError as exc:
            raise DeviceTimeoutError(
                f"no answer from {self.device} in {limit:g} s",
                device=self.device,
            ) from exc
        return f"power {state.value}"

    async def close(self) -> None:
        """Close the driver's session."""
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    async def _open(self) -> Any:
        if self._driver is None:
            from fencekit.power.drivers import build
            from fencekit.secrets import Secret

            device = self._context.device
            username = ""
            password = Secret("", source="none")
            if device.credentials is not None:
                username = device.credentials.username
                password = await asyncio.to_thread(device.credentials.password)
            self._driver = build(
                device.driver,
                device.host,
                port=device.port,
                username=username,
                password=password,
                options=self._context.options,
            )
        return self._driver

    def _failed(
        self, node: str, action: Action, error: FencekitError
    ) -> FenceOutcome:
        return FenceOutcome(
            node=node,
            device=self.device,
            method=self.method,
            action=action,
            verified=False,
            commands_sent=0,
            reason=str(error),
            error=error,
        )


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Whether one fence device answered with its credentials.

    Attributes:
        device: the device's inventory name.
        driver: its driver.
        address: its address.
        ok: whether it answered and accepted the credentials.
        detail: what it said (``power on``), when it answered.
        reason: why it failed, when it did.
        duration: seconds the check took.
    """

    device: str
    driver: str
    address: str
    ok: bool
    detail: str | None = None
    reason: str | None = None
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Return the result as plain JSON-ready values."""
        data = dataclasses.asdict(self)
        data["duration"] = round(self.duration, 6)
        return data


@dataclasses.dataclass
class _Level:
    """What one level did."""

    number: int
    devices: tuple[str, ...]
    outcomes: list[FenceOutcome]

    @property
    def verified(self) -> bool:
        return all(o.verified for o in self.outcomes)

    @property
    def commands(self) -> int:
        return sum(o.commands_sent for o in self.outcomes)

    def error(self) -> FencekitError:
        failed = [o for o in self.outcomes if not o.verified]
        if len(failed) == 1 and failed[0].error is not None:
            return failed[0].error
        causes = [o.error for o in failed if o.error is not None]
        return FenceFailedError(
            self.reason(), causes=causes, node=failed[0].node
        )

    def reason(self) -> str:
        failed = [o for o in self.outcomes if not o.verified]
        return "; ".join(
            f"{name}: {o.reason}"
            for name, o in zip(self.devices, self.outcomes, strict=True)
            if o in failed
        )


class Fencer:
    """Fences the nodes of an inventory; bound to one event loop.

    Args:
        inventory: the cluster inventory.
        journal: where records go; by default ``fencer.journal``.
        local_node: this machine's node; by default the inventory's.
        allow_local: allow fencing the local node; by default
            ``fencer.allow_local``.
        on_event: called with each journal record once it is durable
            (progress display); it must not block.
        clock: the clock used for delays and deadlines.
    """

    def __init__(
        self,
        inventory: Inventory,
        *,
        journal: Journal | None = None,
        local_node: str | None = None,
        allow_local: bool | None = None,
        on_event: EventHook | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        settings = inventory.fencer
        self.inventory = inventory
        self.journal = journal or Journal(settings.journal)
        self.local_node = local_node or inventory.local_node()
        self.allow_local = (
            settings.allow_local if allow_local is None else allow_local
        )
        self._on_event = on_event
        self._clock = clock
        self._slots = asyncio.Semaphore(settings.max_parallel)
        self._running: dict[tuple[str, Action], asyncio.Future[Any]] = {}
        self._node_locks: dict[str, asyncio.Lock] = {}
        self._log = get_logger(__name__)

    async def __aenter__(self) -> Fencer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Wait for fences still running; nothing is left open."""
        running = list(self._running.values())
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def abort(self) -> None:
        """Stop every fence still running (an operator's Ctrl-C).

        Each one stops before it sends any further command and journals
        an unverified outcome: the node's state is unknown. A command
        already on its way to a device cannot be called back.
        """
        running = list(self._running.values())
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def fence(
        self, node: str, action: Action | str = Action.OFF
    ) -> FenceOutcome:
        """Fence ``node`` and return the verified (or failed) outcome.

        Args:
            node: the node's name in the inventory.
            action: ``off`` (default), ``reboot`` or ``on``.

        Returns:
            The outcome; ``outcome.success`` only when verified.

        Raises:
            ConfigError: unknown node or action, or ``node`` is the local
                node and fencing it is not allowed.
            FencekitError: the journal could not be written (the fence
                may have happened; its outcome was not recorded).
        """
        action = _fence_action(action)
        spec = self.inventory.node(node)
        self._refuse_local(spec, action)

        key = (spec.name, action)
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(self._serialised(spec, action))
            self._running[key] = running
            running.add_done_callback(self._finished(key))
        outcome: FenceOutcome = await asyncio.shield(running)
        return outcome

    async def fence_many(
        self, nodes: Sequence[str], action: Action | str = Action.OFF
    ) -> list[FenceOutcome]:
        """Fence several nodes at once; outcomes in the order given.

        Raises:
            ConfigError: see :meth:`fence`; checked for every node first.
        """
        action = _fence_action(action)
        for node in nodes:
            self._refuse_local(self.inventory.node(node), action)
        return list(
            await asyncio.gather(*(self.fence(n, action) for n in nodes))
        )

    async def check(
        self,
        *,
        timeout: float | None = None,
        on_result: Callable[[CheckResult], None] | None = None,
    ) -> list[CheckResult]:
        """Check every fence device: it answers and takes its credentials.

        Args:
            timeout: seconds per device; by default each device's own.
            on_result: called with each result as it arrives.

        Returns:
            One result per device, in inventory order.
        """

        async def one(device: DeviceConfig) -> CheckResult:
            async with self._slots:
                result = await self._check(device, timeout)
            if on_result is not None:
                on_result(result)
            return result

        devices = self.inventory.devices.values()
        return list(await asyncio.gather(*(one(d) for d in devices)))

    def _refuse_local(self, node: NodeConfig, action: Action) -> None:
        if action is Action.ON or self.allow_local:
            return
        if node.name == self.local_node:
            raise ConfigError(
                "refusing to fence the local node (set fencer.allow_local"
                " to allow it)",
                where=node.name,
            )

    def _finished(
        self, key: tuple[str, Action]
    ) -> Callable[[asyncio.Future[Any]], None]:
        def done(future: asyncio.Future[Any]) -> None:
            if self._running.get(key) is future:
                del self._running[key]
            if not future.cancelled():
                future.exception()  # retrieved: every joiner may be gone

        return done

    async def _serialised(
        self, node: NodeConfig, action: Action
    ) -> FenceOutcome:
        start = self._clock.monotonic()
        deadline = start + self.inventory.fencer.fence_timeout
        record = _Recorder(self, node.name, action)
        lock = self._node_locks.setdefault(node.name, asyncio.Lock())

        await record("requested", delay=node.delay)
        finished = False
        try:
            async with lock, self._slots:
                node_lock = NodeLock(
                    self.inventory.fencer.run_dir,
                    node.name,
                    clock=self._clock,
                )
                try:
                    await node_lock.acquire(deadline - self._clock.monotonic())
                except DeviceTimeoutError as exc:
                    outcome = _failed(node, action, [exc], 0, 0, 0.0)
                    finished = True
                    return await self._finish(outcome, start, record)
                try:
                    outcome = await self._levels(
                        node, action, deadline, record
                    )
                    # Recorded under the lock: the next fencer of this
                    # node finds this outcome in the journal before it
                    # acts.
                    finished = True
                    return await self._finish(outcome, start, record)
                finally:
                    node_lock.release()
        except asyncio.CancelledError:
            # Interrupted anywhere after the request was journalled
            # (waiting for the lock, in the delay, at a device): the
            # journal says so, never leaving the request without an end.
            if not finished:
                await self._finish(_interrupted(node, action), start, record)
            raise

    async def _finish(
        self, outcome: FenceOutcome, start: float, record: _Recorder
    ) -> FenceOutcome:
        outcome = dataclasses.replace(
            outcome, duration=self._clock.monotonic() - start
        )
        try:
            await record("outcome", **_outcome_fields(outcome))
        except FencekitError as exc:
            done = "was verified" if outcome.verified else "was NOT verified"
            raise FencekitError(
                f"{outcome.node}: the {outcome.action.value} {done}"
                f" (power {outcome.state.value}), but its outcome could"
                f" not be journalled: {exc}",
                node=outcome.node,
                action=outcome.action.value,
            ) from exc
        self._log_outcome(outcome)
        return outcome

    async def _levels(
        self,
        node: NodeConfig,
        action: Action,
        deadline: float,
        record: _Recorder,
    ) -> FenceOutcome:
        if action is not Action.ON and node.delay > 0:
            await record("delay", seconds=node.delay)
            await self._clock.sleep(
                min(node.delay, deadline - self._clock.monotonic())
            )

        first = Action.ON if action is Action.ON else Action.OFF
        causes: list[FencekitError] = []
        reasons: list[str] = []
        attempts = commands = 0
        for number, devices in enumerate(node.levels, 1):
            remaining = deadline - self._clock.monotonic()
            if remaining <= 0:
                causes.append(
                    DeviceTimeoutError(
                        f"fence deadline passed before level {number}",
                        node=node.name,
                    )
                )
                reasons.append(f"level {number}: not tried, deadline passed")
                break
            level = await self._level(
                node, number, devices, first, remaining, record
            )
            attempts += len(devices)
            commands += level.commands
            if level.verified:
                return await self._succeeded(
                    node, action, level, attempts, commands, deadline, record
                )
            causes.append(level.error())
            reasons.append(f"level {number}: {level.reason()}")
        return _failed(node, action, causes, attempts, commands, 0.0, reasons)

    async def _succeeded(
        self,
        node: NodeConfig,
        action: Action,
        level: _Level,
        attempts: int,
        commands: int,
        deadline: float,
        record: _Recorder,
    ) -> FenceOutcome:
        state = level.outcomes[0].state
        reason = None
        on_failed = False
        if action is Action.REBOOT:
            # Power stays off a while: dual power supplies on two PDU
            # outlets, or a switch port's link, must not ride it through.
            await record("off_time", seconds=self.inventory.fencer.off_time)
            await self._clock.sleep(
                min(
                    self.inventory.fencer.off_time,
                    max(deadline - self._clock.monotonic(), 0.0),
                )
            )
            remaining = max(deadline - self._clock.monotonic(), 0.001)
            on = await self._level(
                node, level.number, level.devices, Action.ON, remaining, record
            )
            attempts += len(level.devices)
            commands += on.commands
            state = on.outcomes[0].state
            if not on.verified:
                on_failed = True
                reason = f"fenced, but power-on failed: {on.reason()}"
        return FenceOutcome(
            node=node.name,
            device="+".join(level.devices),
            method="+".join(sorted({o.method for o in level.outcomes})),
            action=action,
            verified=True,
            state=state,
            attempts=attempts,
            commands_sent=commands,
            reason=reason,
            power_on_failed=on_failed,
        )

    async def _level(
        self,
        node: NodeConfig,
        number: int,
        devices: tuple[str, ...],
        action: Action,
        timeout: float,
        record: _Recorder,
    ) -> _Level:
        async def one(name: str) -> FenceOutcome:
            device = self.inventory.devices[name]
            try:
                method = self._method(device, node)
            except FencekitError as exc:
                outcome = _unbuilt(device, node, action, exc)
            else:
                try:
                    outcome = await method.run(action, timeout)
                finally:
                    await method.close()
            await record(
                "attempt", level=number, **_attempt_fields(name, outcome)
            )
            return outcome

        outcomes = await asyncio.gather(*(one(name) for name in devices))
        return _Level(number, devices, list(outcomes))

    def _method(
        self, device: DeviceConfig, node: NodeConfig | None
    ) -> FenceMethod:
        options = dict(device.options)
        if node is not None:
            options.update(node.device_options.get(device.name, {}))
        settings = self.inventory.fencer
        return build_method(
            MethodContext(
                device=device,
                node=node,
                options=options,
                settle=settings.settle,
                interval=settings.interval,
                settle_interval=settings.settle_interval,
                clock=self._clock,
                cluster=self.inventory.cluster,
                local_node=self.inventory.nodes.get(self.local_node or ""),
            )
        )

    async def _check(
        self, device: DeviceConfig, timeout: float | None
    ) -> CheckResult:
        start = self._clock.monotonic()
        limit = device.timeout if timeout is None else timeout
        users = [
            n
            for n in self.inventory.nodes.values()
            if any(device.name in level for level in n.levels)
        ]
        detail = reason = None
        try:
            method = self._method(device, users[0] if users else None)
            try:
                detail = await method.check(limit)
            finally:
                await method.close()
        except FencekitError as exc:
            reason = str(exc)
        return CheckResult(
            device=device.name,
            driver=device.driver,
            address=device.address,
            ok=reason is None,
            detail=detail,
            reason=reason,
            duration=self._clock.monotonic() - start,
        )

    def _emit(self, record: dict[str, Any]) -> None:
        if self._on_event is not None:
            self._on_event(record)

    def _log_outcome(self, outcome: FenceOutcome) -> None:
        fields = {
            "node": outcome.node,
            "action": outcome.action.value,
            "device": outcome.device,
            "method": outcome.method,
            "verified": outcome.verified,
            "attempts": outcome.attempts,
            "duration": round(outcome.duration, 4),
            "reason": outcome.reason,
        }
        if outcome.success:
            self._log.info("fence", **fields)
        else:
            self._log.error("fence_failed", **fields)


class _Recorder:
    """Writes the records of one fence operation, then reports them."""

    def __init__(self, fencer: Fencer, node: str, action: Action) -> None:
        self._fencer = fencer
        self._fields = {
            "op": uuid.uuid4().hex,
            "node": node,
            "action": action.value,
        }

    async def __call__(self, event: str, **fields: Any) -> None:
        record = await self._fencer.journal.record(
            event, **self._fields, **fields
        )
        self._fencer._emit(record)


def _interrupted(node: NodeConfig, action: Action) -> FenceOutcome:
    """The outcome of a fence stopped before it was verified."""
    return FenceOutcome(
        node=node.name,
        device="",
        method="",
        action=action,
        verified=False,
        reason=(
            "interrupted before the fence was verified: the node's state"
            " is unknown (a command may already have reached a device)"
        ),
    )


def _fence_action(action: Action | str) -> Action:
    try:
        parsed = action if isinstance(action, Action) else Action.parse(action)
    except ValueError as exc:
        raise ConfigError(str(exc), where="action") from exc
    if parsed not in FENCE_ACTIONS:
        raise ConfigError(
            f"a fence is off, reboot or on, not {parsed.value}",
            where="action",
        )
    return parsed


def _failed(
    node: NodeConfig,
    action: Action,
    causes: Sequence[FencekitError],
    attempts: int,
    commands: int,
    duration: float,
    reasons: Sequence[str] = (),
) -> FenceOutcome:
    text = "; ".join(reasons) or "; ".join(str(c) for c in causes)
    error = FenceFailedError(
        f"every fence level failed for node {node.name}: {text}",
        causes=causes,
        node=node.name,
        action=action.value,
    )
    return FenceOutcome(
        node=node.name,
        device="",
        method="",
        action=action,
        verified=False,
        state=PowerState.UNKNOWN,
        attempts=attempts,
        commands_sent=commands,
        duration=duration,
        reason=str(error),
        error=error,
    )


def _unbuilt(
    device: DeviceConfig,
    node: NodeConfig,
    action: Action,
    error: FencekitError,
) -> FenceOutcome:
    """The failed attempt of a device whose method could not be built."""
    return FenceOutcome(
        node=node.name,
        device=device.address,
        method=device.driver,
        action=action,
        verified=False,
        reason=str(error),
        error=error,
    )


def _attempt_fields(name: str, outcome: FenceOutcome) -> dict[str, Any]:
    return {
        "device": name,
        "address": outcome.device,
        "method": outcome.method,
        "device_action": outcome.action.value,
        "verified": outcome.verified,
        "state": outcome.state.value,
        "commands_sent": outcome.commands_sent,
        "duration": round(outcome.duration, 6),
        "reason": outcome.reason,
        "error": type(outcome.error).__name__ if outcome.error else None,
    }


def _outcome_fields(outcome: FenceOutcome) -> dict[str, Any]:
    data = outcome.to_dict()
    del data["node"], data["action"]
    data["success"] = outcome.verified
    if isinstance(outcome.error, FenceFailedError):
        data["causes"] = [str(c) for c in outcome.error.causes]
    return data


async def fence(
    node: str,
    action: Action | str = Action.OFF,
    *,
    config: str | os.PathLike[str] | None = None,
) -> FenceOutcome:
    """Fence ``node`` with the inventory at ``config``.

    Args:
        node: the node's name.
        action: ``off`` (default), ``reboot`` or ``on``.
        config: the inventory; by default ``$FENCEKIT_INVENTORY`` or
            ``/etc/fencekit/inventory.toml``.

    Raises:
        ConfigError: the inventory is invalid, or see
            :meth:`Fencer.fence`.
        FencekitError: the journal could not be written.
    """
    from fencekit.config import inventory_path, load

    inventory = load(inventory_path(config))
    async with Fencer(inventory) as fencer:
        return await fencer.fence(node, action)
