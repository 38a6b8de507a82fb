"""Fakes and a simulated BMC for testing code that uses fencekit.

:class:`FakeClock` advances only when slept on, so retry and deadline
logic runs instantly. :class:`FakePowerDriver` is a scripted fence device:
its power changes after a configurable number of readings, and it can
refuse, time out or fail on request. :class:`SimulatedBmc` is a real IPMI
BMC (pyghmi's BMC server class) in a child process on loopback, for
trying configurations and scripts without hardware.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fencekit.errors import FencekitError
from fencekit.outcome import Action, PowerState

__all__ = ["FakeClock", "FakePowerDriver", "SimulatedBmc"]


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


class SimulatedBmc:
    """An IPMI BMC on loopback whose chassis power is a file.

    It speaks IPMI 2.0 with cipher suite 3 only: give drivers
    ``cipher=3``. Every power command is appended to ``<state>.log``.

    Args:
        workdir: a folder for its state, log and password files.
        user: the BMC account.
        password: the account's password (written to a 0600 file).
        port: the UDP port; a free one when 0.
        power_on: the power state at start.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "admin",
        password: str = "fencekit",
        port: int = 0,
        power_on: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        self.user = user
        self.password = password
        self.port = port
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = self.workdir / "power"
        self.state.write_text("1\n" if power_on else "0\n")
        self.password_file = self.workdir / "password"
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> SimulatedBmc:
        """Start the BMC and wait until it answers on its port.

        Raises:
            RuntimeError: it did not come up within ``timeout``.
        """
        if not self.port:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.bind((self.host, 0))
                self.port = sock.getsockname()[1]
        log = open(self.workdir / "bmc.log", "ab")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fencekit._simbmc",
                "--address",
                self.host,
                "--port",
                str(self.port),
                "--user",
                self.user,
                "--password-file",
                str(self.password_file),
                "--state-file",
                str(self.state),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not _udp_bound(self.host, self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"simulated BMC did not start: {log.name}")
            time.sleep(0.02)
        return self

    @property
    def pid(self) -> int | None:
        """The BMC process's PID while it runs."""
        return self._proc.pid if self._proc else None

    def power_is_on(self) -> bool:
        """The chassis power as the BMC holds it."""
        return self.state.read_text().strip() == "1"

    def commands(self) -> list[str]:
        """The power commands that reached the BMC, oldest first."""
        log = Path(f"{self.state}.log")
        if not log.exists():
            return []
        return [line.split()[-1] for line in log.read_text().splitlines()]

    def stop(self) -> None:
        """Stop the BMC process by its PID."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> SimulatedBmc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _udp_bound(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False
