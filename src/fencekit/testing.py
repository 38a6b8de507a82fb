"""Fakes and a simulated BMC for testing code that uses fencekit.

:class:`FakeClock` advances only when slept on, so retry and deadline
logic runs instantly. :class:`FakePowerDriver` is a scripted fence device:
its power changes after a configurable number of readings, and it can
refuse, time out or fail on request. :class:`SimulatedBmc` is a real IPMI
BMC (pyghmi's BMC server class) in a child process on loopback, and
:class:`IpmiSimBmc` runs OpenIPMI's ``ipmi_sim`` the same way, for trying
configurations and scripts without hardware.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable

from fencekit.errors import FencekitError
from fencekit.lab.bmc import IpmiSimBmc, SimulatedBmc
from fencekit.outcome import Action, PowerState

__all__ = ["FakeClock", "FakePowerDriver", "IpmiSimBmc", "SimulatedBmc"]


class FakeClock:
    """A clock that moves only when someone sleeps on it."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.slept: list[float] = []

    def monotonic(self) -> float:
        """The fake time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Advance the fake time by ``seconds`` and yield once."""
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        """Move the fake time forward."""
        self.now += seconds


class FakePowerDriver:
    """A fence device held in memory.

    Args:
        state: the power state at the start.
        lag: readings after a command before the new state shows.
        read_errors: errors raised by the next readings, in order.
        send_errors: errors raised by the next commands, in order.
        read_cost: fake seconds each reading takes (needs ``clock``).
        clock: the fake clock ``read_cost`` advances.
        device: the device name used in outcomes.
    """

    method = "fake"

    def __init__(
        self,
        state: PowerState = PowerState.ON,
        *,
        lag: int = 0,
        read_errors: Iterable[FencekitError | None] = (),
        send_errors: Iterable[FencekitError | None] = (),
        read_cost: float = 0.0,
        clock: FakeClock | None = None,
        device: str = "fake-bmc",
    ) -> None:
        self.device = device
        self.state = state
        self.lag = lag
        self.read_errors = collections.deque(read_errors)
        self.send_errors = collections.deque(send_errors)
        self.read_cost = read_cost
        self.clock = clock
        self.commands: list[Action] = []
        self.reads = 0
        self.closed = False
        self._pending: PowerState | None = None
        self._countdown = 0

    async def read_state(self, timeout: float) -> PowerState:
        """Return the state, or raise the next scripted read error."""
        self.reads += 1
        if self.clock is not None:
            self.clock.advance(self.read_cost)
        if self.read_errors:
            error = self.read_errors.popleft()
            if error is not None:
                raise error
        if self._pending is not None:
            if self._countdown <= 0:
                self.state, self._pending = self._pending, None
            else:
                self._countdown -= 1
        return self.state

    async def send(self, action: Action, timeout: float) -> None:
        """Record the command and schedule the change it asks for."""
        if self.send_errors:
            error = self.send_errors.popleft()
            if error is not None:
                raise error
        self.commands.append(action)
        if action is Action.OFF:
            self._schedule(PowerState.OFF)
        elif action is Action.ON:
            self._schedule(PowerState.ON)

    def _schedule(self, state: PowerState) -> None:
        if self.lag == 0:
            self.state = state
            return
        self._pending = state
        self._countdown = self.lag

    async def close(self) -> None:
        """Mark the driver closed."""
        self.closed = True
