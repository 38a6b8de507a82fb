"""Verified power actions, driven on a scripted device and a fake clock."""

from __future__ import annotations

import pytest

from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    NotConfirmedError,
    ProtocolError,
    UnreachableError,
)
from fencekit.outcome import Action, PowerState
from fencekit.power.operate import Verification, attempt, operate
from fencekit.testing import FakeClock, FakePowerDriver

FAST = Verification(timeout=5.0, settle=2, interval=0.25)


def busy() -> ProtocolError:
    return ProtocolError("node busy", code=0xC0, transient=True)


async def test_off_sends_one_command_and_reads_back_twice() -> None:
    """off on a node that is on: one command, two off readings."""
    clock = FakeClock()
    driver = FakePowerDriver(PowerState.ON)

    state = await operate(driver, Action.OFF, verification=FAST, clock=clock)

    assert state is PowerState.OFF
    assert driver.commands == [Action.OFF]
    assert driver.reads == 3


async def test_off_on_a_node_already_off_sends_nothing() -> None:
    """Already off: no command, success once the readings agree."""
    driver = FakePowerDriver(PowerState.OFF)

    outcome = await attempt(
        driver, Action.OFF, verification=FAST, clock=FakeClock()
    )

    assert outcome.success
    assert outcome.commands_sent == 0
    assert driver.commands == []
    assert driver.reads == 2, "the first reading counts toward settle"


async def test_settle_resets_when_a_reading_flips_back() -> None:
    """An off reading followed by on does not count toward settle."""
    clock = FakeClock()
    driver = FakePowerDriver(PowerState.ON, lag=2)

    await operate(driver, Action.OFF, verification=FAST, clock=clock)

    assert driver.state is PowerState.OFF
    assert clock.slept, "waited between wrong readings"


async def test_power_that_never_goes_off_is_not_confirmed() -> None:
    """A command the device accepted but never carried out fails."""
    clock = FakeClock()
    driver = FakePowerDriver(PowerState.ON, lag=10_000)

    outcome = await attempt(driver, Action.OFF, verification=FAST, clock=clock)

    assert not outcome.success
    assert isinstance(outcome.error, NotConfirmedError)
    assert outcome.commands_sent == 1
    assert outcome.state is PowerState.ON
    assert "not confirmed off" in (outcome.reason or "")
    assert clock.now - 1000.0 <= FAST.timeout + FAST.interval


async def test_transient_read_errors_are_retried_not_read_as_state() -> None:
    """Busy and timeout replies are retried within the deadline."""
    driver = FakePowerDriver(
        PowerState.ON,
        read_errors=[busy(), DeviceTimeoutError("slow"), None, busy()],
    )

    state = await operate(
        driver, Action.OFF, verification=FAST, clock=FakeClock()
    )

    assert state is PowerState.OFF
    assert driver.commands == [Action.OFF]


async def test_transient_refusal_of_the_command_is_repeated() -> None:
    """A command refused as busy is sent again after a fresh reading."""
    driver = FakePowerDriver(PowerState.ON, send_errors=[busy(), None])

    outcome = await attempt(
        driver, Action.OFF, verification=FAST, clock=FakeClock()
    )

    assert outcome.success
    assert driver.commands == [Action.OFF]


async def test_unanswered_command_is_decided_by_reading_the_state() -> None:
    """No answer to off, then the device goes quiet: not confirmed."""
    clock = FakeClock()
    quiet = [DeviceTimeoutError("quiet")] * 100
    driver = FakePowerDriver(
        PowerState.ON,
        send_errors=[DeviceTimeoutError("no reply")],
        read_errors=[None, *quiet],
    )

    outcome = await attempt(driver, Action.OFF, verification=FAST, clock=clock)

    assert not outcome.success
    assert isinstance(outcome.error, NotConfirmedError)
    assert "no answer to the command" in str(outcome.error)


async def test_permanent_protocol_error_fails_at_once() -> None:
    """A non-transient completion code is not retried."""
    clock = FakeClock()
    driver = FakePowerDriver(
        PowerState.ON,
        send_errors=[ProtocolError("invalid command", code=0xC1)],
    )

    outcome = await attempt(driver, Action.OFF, verification=FAST, clock=clock)

    assert not outcome.success
    assert isinstance(outcome.error, ProtocolError)
    assert clock.now == 1000.0


async def test_authentication_error_is_not_retried() -> None:
    """Refused credentials end the action immediately."""
    driver = FakePowerDriver(read_errors=[AuthenticationError("denied")])

    outcome = await attempt(
        driver, Action.STATUS, verification=FAST, clock=FakeClock()
    )

    assert isinstance(outcome.error, AuthenticationError)
    assert driver.reads == 1


async def test_unreachable_device_fails_before_any_command() -> None:
    """Nothing answers: no command is sent, the error says so."""
    driver = FakePowerDriver(read_errors=[UnreachableError("silent")])

    outcome = await attempt(
        driver, Action.OFF, verification=FAST, clock=FakeClock()
    )

    assert isinstance(outcome.error, UnreachableError)
    assert driver.commands == []


async def test_reboot_is_off_verified_then_on() -> None:
    """reboot: off, read back off, on, read back on."""
    driver = FakePowerDriver(PowerState.ON)

    outcome = await attempt(
        driver, Action.REBOOT, verification=FAST, clock=FakeClock()
    )

    assert outcome.success
    assert driver.commands == [Action.OFF, Action.ON]
    assert outcome.state is PowerState.ON
    assert not outcome.power_on_failed


async def test_reboot_whose_power_on_fails_is_still_a_fence() -> None:
    """The node was fenced; the outcome says power-on failed."""
    driver = FakePowerDriver(
        PowerState.ON,
        send_errors=[None, ProtocolError("refused", code=0xC1)],
    )

    outcome = await attempt(
        driver, Action.REBOOT, verification=FAST, clock=FakeClock()
    )

    assert outcome.success
    assert outcome.power_on_failed
    assert "power-on failed" in (outcome.reason or "")


async def test_status_reads_without_sending() -> None:
    """status reads the state and sends nothing."""
    driver = FakePowerDriver(PowerState.OFF)

    outcome = await attempt(
        driver, Action.STATUS, verification=FAST, clock=FakeClock()
    )

    assert outcome.success
    assert outcome.state is PowerState.OFF
    assert driver.commands == []


async def test_outcome_serialises_without_the_error_object() -> None:
    """to_dict gives JSON-ready values and no exception object."""
    driver = FakePowerDriver(read_errors=[UnreachableError("silent")])

    outcome = await attempt(
        driver, Action.OFF, verification=FAST, clock=FakeClock()
    )
    data = outcome.to_dict()

    assert data["action"] == "off"
    assert data["success"] is False
    assert "error" not in data
    assert data["reason"] == "silent"


@pytest.mark.parametrize(
    ("field", "value"),
    [("timeout", 0.0), ("settle", 0), ("interval", -1.0)],
)
def test_verification_rejects_nonsense(field: str, value: float) -> None:
    """Zero deadlines or settle counts are configuration errors."""
    with pytest.raises(ConfigError, match=field):
        Verification(**{field: value})  # type: ignore[arg-type]


class _RepoweringDriver(FakePowerDriver):
    """Reads off once after the command, then on again (power restored)."""

    async def read_state(self, timeout: float) -> PowerState:
        state = await super().read_state(timeout)
        if self.commands and state is PowerState.OFF:
            self.state = PowerState.ON
        return state


async def test_confirming_readings_are_spread_over_time() -> None:
    """settle readings are settle_interval apart, not back to back."""
    clock = FakeClock()
    driver = FakePowerDriver(PowerState.ON)
    verify = Verification(timeout=5, settle=3, settle_interval=0.2)

    await operate(driver, Action.OFF, verification=verify, clock=clock)

    assert clock.slept == [0.2, 0.2]


async def test_power_coming_back_between_readings_is_not_verified() -> None:
    """Off read once, then on again: the off is not confirmed."""
    clock = FakeClock()
    driver = _RepoweringDriver(PowerState.ON)

    outcome = await attempt(driver, Action.OFF, verification=FAST, clock=clock)

    assert not outcome.success
    assert isinstance(outcome.error, NotConfirmedError)


async def test_reboot_keeps_the_power_off_for_off_time() -> None:
    """reboot waits off_time between the verified off and the on."""
    clock = FakeClock()
    driver = FakePowerDriver(PowerState.ON)
    verify = Verification(timeout=5, settle=1, off_time=2.5)

    await operate(driver, Action.REBOOT, verification=verify, clock=clock)

    assert 2.5 in clock.slept
    assert driver.commands == [Action.OFF, Action.ON]
