"""Carry out a power action on any driver, and verify it.

This is where fencekit's one rule lives for power fencing: an action
succeeds only when the state it asked for was read back from the device,
``settle`` times in a row, before the deadline. A command the device
accepted, a timeout or an unknown state are failures with a reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from typing import TypeVar

from fencekit._log import get_logger
from fencekit.clock import SYSTEM_CLOCK, Clock
from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    FencekitError,
    NotConfirmedError,
    ProtocolError,
    TransportError,
    UnreachableError,
)
from fencekit.outcome import Action, FenceOutcome, PowerState
from fencekit.power.base import PowerDriver

__all__ = ["Verification", "attempt", "operate"]

T = TypeVar("T")

_TARGET = {Action.OFF: PowerState.OFF, Action.ON: PowerState.ON}


@dataclasses.dataclass(frozen=True)
class Verification:
    """How a power action is verified.

    Attributes:
        timeout: seconds for the whole action, verification included
            (for ``reboot``, for each of its two halves).
        settle: consecutive readings of the wanted state required.
        interval: seconds between readings while the state is wrong.
        settle_interval: seconds between the consecutive readings of
            the wanted state, so that ``settle`` readings cover
            ``(settle - 1) * settle_interval`` seconds, not an instant.
        off_time: for ``reboot``, seconds the power stays off (verified)
            before it is turned back on, so that power supplies and
            network links cannot ride through a short gap.
    """

    timeout: float = 20.0
    settle: int = 2
    interval: float = 0.25
    settle_interval: float = 0.1
    off_time: float = 1.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ConfigError("must be positive", where="timeout")
        if self.settle < 1:
            raise ConfigError("must be at least 1", where="settle")
        if self.interval < 0:
            raise ConfigError("must not be negative", where="interval")
        if self.off_time < 0:
            raise ConfigError("must not be negative", where="off_time")
        if self.settle_interval < 0:
            raise ConfigError("must not be negative", where="settle_interval")


@dataclasses.dataclass
class _Run:
    """The running state of one action against one deadline."""

    driver: PowerDriver
    clock: Clock
    deadline: float
    settle: int
    interval: float
    settle_interval: float
    commands: int = 0
    last: PowerState = PowerState.UNKNOWN
    unanswered: FencekitError | None = None

    def remaining(self) -> float:
        return self.deadline - self.clock.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    async def read(self) -> PowerState:
        """Read the state, retrying transient errors until the deadline."""
        while True:
            try:
                self.last = await _bounded(
                    self.driver.read_state(self.remaining()), self
                )
                return self.last
            except (ProtocolError, DeviceTimeoutError) as exc:
                if not _retryable(exc) or self.expired():
                    raise
                _warn_retry(self.driver, "read_state", exc)
                await self.clock.sleep(min(self.interval, self.remaining()))

    async def send(self, action: Action) -> None:
        """Send a command, retrying while the device says "not now".

        A refusal marked transient means the command was not carried
        out, so it is repeated (after reading the state again). A command
        whose answer never came may have been carried out: it is not
        repeated, and :meth:`confirm` decides by reading the state.
        """
        target = _TARGET[action]
        while True:
            try:
                await _bounded(
                    self.driver.send(action, self.remaining()), self
                )
                self.commands += 1
                return
            except ProtocolError as exc:
                if not exc.transient or self.expired():
                    raise
                _warn_retry(self.driver, action.value, exc)
                await self.clock.sleep(min(self.interval, self.remaining()))
                try:
                    state = await self.read()
                except DeviceTimeoutError as late:
                    if not self.expired():
                        raise
                    # Out of time while the device kept refusing: its
                    # refusal says more than "deadline passed".
                    raise exc from late
                if state is target:
                    return
            except (DeviceTimeoutError, UnreachableError) as exc:
                _warn_retry(self.driver, action.value, exc)
                self.unanswered = exc
                return

    async def confirm(self, target: PowerState, streak: int = 0) -> None:
        """Read until ``target`` is seen ``settle`` times in a row.

        Raises:
            NotConfirmedError: the deadline passed first.
        """
        cause = self.unanswered
        while streak < self.settle and not self.expired():
            try:
                state = await self.read()
            except AuthenticationError:
                raise
            except TransportError as exc:
                # The command may have worked and the device gone quiet
                # since: keep reading until the deadline, never assume.
                cause, streak = exc, 0
                await self.clock.sleep(min(self.interval, self.remaining()))
                continue
            if state is target:
                streak += 1
                if streak < self.settle:
                    await self.clock.sleep(
                        min(self.settle_interval, self.remaining())
                    )
                continue
            streak = 0
            await self.clock.sleep(min(self.interval, self.remaining()))
        if streak >= self.settle:
            return

        sent = "no answer to the command; " if self.unanswered else ""
        raise NotConfirmedError(
            f"{sent}power state not confirmed {target.value} before the"
            f" deadline (last read: {self.last.value})",
            last_state=self.last.value,
            commands_sent=self.commands,
            device=self.driver.device,
        ) from cause

    async def drive(self, action: Action) -> None:
        """Bring the node to the action's state, sending only if needed.

        When the first reading already shows the wanted state, it counts
        as the first of the ``settle`` readings.
        """
        target = _TARGET[action]
        if await self.read() is target:
            if self.settle > 1:
                await self.clock.sleep(
                    min(self.settle_interval, self.remaining())
                )
            await self.confirm(target, streak=1)
            return
        await self.send(action)
        await self.confirm(target)


async def _bounded(awaitable: Awaitable[T], run: _Run) -> T:
    """Await a driver call, cut off at the run's deadline."""
    remaining = run.remaining()
    if remaining <= 0:
        _close(awaitable)
        raise DeviceTimeoutError("deadline passed", device=run.driver.device)
    try:
        return await asyncio.wait_for(awaitable, remaining)
    except TimeoutError as exc:
        raise DeviceTimeoutError(
            f"no answer from {run.driver.device} within the deadline",
            device=run.driver.device,
        ) from exc


def _close(awaitable: object) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _retryable(exc: FencekitError) -> bool:
    if isinstance(exc, ProtocolError):
        return exc.transient
    return isinstance(exc, DeviceTimeoutError)


def _warn_retry(driver: PowerDriver, step: str, exc: Exception) -> None:
    get_logger(__name__).warning(
        "power_retry",
        device=driver.device,
        method=driver.method,
        step=step,
        reason=str(exc),
    )


async def operate(
    driver: PowerDriver,
    action: Action,
    *,
    verification: Verification | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> PowerState:
    """Carry out ``action`` on ``driver`` and verify it.

    ``status`` reads the state. ``off`` and ``on`` read the state first
    and send a command only when it differs, then read it back until it
    matches. ``reboot`` is a verified ``off`` then a verified ``on``; when
    only the ``on`` half fails, :class:`~fencekit.errors.NotConfirmedError`
    is raised with ``action="on"`` (the node *was* fenced).

    Returns:
        The power state read back last.

    Raises:
        NotConfirmedError: the state was not read back in time.
        TransportError: the device could not be talked to.
        UnsupportedError: the device cannot do ``action``.
    """
    verify = verification or Verification()
    run = _new_run(driver, verify, clock)

    if action is Action.STATUS:
        return await run.read()
    if action is Action.DIAG:
        await _bounded(driver.send(Action.DIAG, run.remaining()), run)
        return await run.read()
    if action in _TARGET:
        await run.drive(action)
        return run.last

    await run.drive(Action.OFF)
    await clock.sleep(verify.off_time)
    on_run = _new_run(driver, verify, clock)
    try:
        await on_run.drive(Action.ON)
    except FencekitError as exc:
        exc.action = Action.ON.value
        raise
    return on_run.last


def _new_run(driver: PowerDriver, verify: Verification, clock: Clock) -> _Run:
    return _Run(
        driver=driver,
        clock=clock,
        deadline=clock.monotonic() + verify.timeout,
        settle=verify.settle,
        interval=verify.interval,
        settle_interval=verify.settle_interval,
    )


async def attempt(
    driver: PowerDriver,
    action: Action,
    *,
    node: str | None = None,
    verification: Verification | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> FenceOutcome:
    """Like :func:`operate`, but return an outcome instead of raising.

    Every fencekit error becomes an unverified outcome with its reason;
    the error itself is kept in ``outcome.error``. A ``reboot`` whose
    power-on half failed is a verified outcome with ``power_on_failed``.
    """
    verify = verification or Verification()
    start = clock.monotonic()
    counter = _CountingDriver(driver)
    state = PowerState.UNKNOWN
    error: FencekitError | None = None

    try:
        state = await operate(
            counter, action, verification=verify, clock=clock
        )
    except FencekitError as exc:
        error = exc

    outcome = _outcome(
        driver, action, node, counter, state, error, clock.monotonic() - start
    )
    _log_outcome(outcome)
    return outcome


def _log_outcome(outcome: FenceOutcome) -> None:
    """One line per action: INFO when verified, ERROR when a node may be
    left unfenced, WARNING for other failures."""
    log = get_logger(__name__)
    fields = {
        "node": outcome.node,
        "device": outcome.device,
        "method": outcome.method,
        "action": outcome.action.value,
        "verified": outcome.verified,
        "state": outcome.state.value,
        "attempts": outcome.attempts,
        "commands_sent": outcome.commands_sent,
        "duration": round(outcome.duration, 4),
    }
    if outcome.success:
        log.info("power_action", **fields, reason=outcome.reason)
    elif outcome.action in (Action.OFF, Action.REBOOT):
        log.error("power_action_failed", **fields, reason=outcome.reason)
    else:
        log.warning("power_action_failed", **fields, reason=outcome.reason)


def _outcome(
    driver: PowerDriver,
    action: Action,
    node: str | None,
    counter: _CountingDriver,
    state: PowerState,
    error: FencekitError | None,
    duration: float,
) -> FenceOutcome:
    on_failed = (
        action is Action.REBOOT
        and error is not None
        and error.action == Action.ON.value
    )
    verified = error is None or on_failed
    if error is not None and state is PowerState.UNKNOWN:
        state = counter.last
    reason = None
    if on_failed:
        reason = f"fenced, but power-on failed: {error}"
    elif error is not None:
        reason = str(error)
    return FenceOutcome(
        node=node or driver.device,
        device=driver.device,
        method=driver.method,
        action=action,
        verified=verified,
        state=state,
        attempts=1,
        commands_sent=counter.commands,
        duration=duration,
        reason=reason,
        power_on_failed=on_failed,
        error=error,
    )


class _CountingDriver:
    """Wraps a driver to count accepted commands and keep the last read."""

    def __init__(self, inner: PowerDriver) -> None:
        self.inner = inner
        self.method = inner.method
        self.device = inner.device
        self.commands = 0
        self.last = PowerState.UNKNOWN

    async def read_state(self, timeout: float) -> PowerState:
        self.last = await self.inner.read_state(timeout)
        return self.last

    async def send(self, action: Action, timeout: float) -> None:
        await self.inner.send(action, timeout)
        self.commands += 1

    async def close(self) -> None:
        await self.inner.close()
