"""The Redfish driver against faults from a small service of our own."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from fencekit.errors import (
    AuthenticationError,
    NotConfirmedError,
    ProtocolError,
    UnsupportedError,
)
from fencekit.outcome import Action, PowerState
from fencekit.power.irmc import IrmcDriver
from fencekit.power.operate import Verification, attempt, operate
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret
from tests.support.redfish import FaultyRedfish, faulty, pki

__all__ = ["faulty", "pki"]

FAST = Verification(timeout=10.0, settle=2, interval=0.02)


def driver_for(service: FaultyRedfish, **options: Any) -> RedfishDriver:
    """A driver for the fault service, CA pinned."""
    options.setdefault("ca_file", service.pki.ca_file)
    options.setdefault("system", service.system_id)
    return RedfishDriver(
        service.host,
        port=service.port,
        username=service.user,
        password=Secret(options.pop("password", service.password)),
        **options,
    )


async def test_headers_the_specification_asks_for(
    faulty: FaultyRedfish,
) -> None:
    """Accept and OData-Version always; Content-Type on every POST."""
    async with driver_for(faulty) as driver:
        await operate(driver, Action.OFF, verification=FAST)

    for seen in faulty.seen:
        assert seen.headers["accept"] == "application/json"
        assert seen.headers["odata-version"] == "4.0"
        if seen.method == "POST":
            assert seen.headers["content-type"] == "application/json"


async def test_session_login_token_and_logout(faulty: FaultyRedfish) -> None:
    """A session is created, its token used, and deleted on close."""
    async with driver_for(faulty) as driver:
        await operate(driver, Action.OFF, verification=FAST)

    logins = faulty.paths("POST").count("/redfish/v1/SessionService/Sessions")
    assert logins == 1
    assert len(faulty.deleted) == 1
    authed = [s for s in faulty.seen if "x-auth-token" in s.headers]
    assert authed
    assert not any("authorization" in s.headers for s in faulty.seen)


async def test_one_connection_for_a_whole_fence(
    faulty: FaultyRedfish,
) -> None:
    """Keep-alive: login, reads, reset and logout share one connection."""
    async with driver_for(faulty) as driver:
        await operate(driver, Action.REBOOT, verification=FAST)

    assert len(faulty.seen) >= 8
    assert faulty.connections == 1


async def test_basic_when_no_session_service(faulty: FaultyRedfish) -> None:
    """No SessionService: Basic authentication, one WARNING."""
    faulty.behaviour.sessions = False

    with capture_logs() as logs:
        async with driver_for(faulty) as driver:
            await operate(driver, Action.OFF, verification=FAST)

    assert faulty.behaviour.power == "Off"
    assert all(
        s.headers.get("authorization", "").startswith("Basic")
        for s in faulty.seen
        if s.path != "/redfish/v1/"
    )
    warned = [e for e in logs if e["event"] == "redfish_basic_auth"]
    assert len(warned) == 1 and warned[0]["log_level"] == "warning"


async def test_basic_by_choice_is_not_warned(faulty: FaultyRedfish) -> None:
    """auth=basic uses Basic without a fallback warning."""
    with capture_logs() as logs:
        async with driver_for(faulty, auth="basic") as driver:
            await operate(driver, Action.STATUS, verification=FAST)

    assert not [e for e in logs if e["event"] == "redfish_basic_auth"]
    assert "/redfish/v1/SessionService/Sessions" not in faulty.paths()


async def test_session_login_refused(faulty: FaultyRedfish) -> None:
    """A refused session login is an AuthenticationError."""
    async with driver_for(faulty, password="wrong") as driver:
        with pytest.raises(AuthenticationError, match="Login failed"):
            await operate(driver, Action.OFF, verification=FAST)

    assert faulty.resets == []


async def test_expired_token_is_renewed_once(faulty: FaultyRedfish) -> None:
    """A token that expires mid-fence: one new login, the fence goes on."""
    faulty.behaviour.token_uses = 2

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    logins = faulty.paths("POST").count("/redfish/v1/SessionService/Sessions")
    assert logins >= 2


async def test_refused_reset_carries_the_bmc_message(
    faulty: FaultyRedfish,
) -> None:
    """A 400 with ExtendedInfo: the BMC's message reaches the error."""
    faulty.behaviour.refuse = (
        400,
        {
            "error": {
                "code": "Base.1.8.GeneralError",
                "message": "A general error has occurred.",
                "@Message.ExtendedInfo": [
                    {
                        "MessageId": "Oem.1.0.PowerInterlock",
                        "Message": "Power control is locked by the chassis"
                        " manager.",
                    }
                ],
            }
        },
    )

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert not outcome.success
    assert isinstance(outcome.error, ProtocolError)
    assert outcome.error.code == 400
    assert "locked by the chassis manager" in (outcome.reason or "")
    assert len(faulty.resets) == 1


async def test_off_not_allowed_fails_fast_naming_values(
    faulty: FaultyRedfish,
) -> None:
    """ForceOff not allowed: fail at once, naming the allowed values."""
    faulty.behaviour.allowed = ["On", "GracefulShutdown"]

    async with driver_for(faulty) as driver:
        with pytest.raises(UnsupportedError) as caught:
            await operate(driver, Action.OFF, verification=FAST)

    assert "On, GracefulShutdown" in str(caught.value)
    assert faulty.resets == []


async def test_on_picks_an_allowed_value(faulty: FaultyRedfish) -> None:
    """On not allowed but ForceOn is: ForceOn is sent."""
    faulty.behaviour.power = "Off"
    faulty.behaviour.allowed = ["ForceOn", "ForceOff"]

    async with driver_for(faulty) as driver:
        await operate(driver, Action.ON, verification=FAST)

    assert faulty.resets == [
        ("ComputerSystem.Reset", {"ResetType": "ForceOn"})
    ]


async def test_allowed_values_from_action_info(faulty: FaultyRedfish) -> None:
    """Values listed in ActionInfo are read and respected."""
    faulty.behaviour.power = "Off"
    faulty.behaviour.action_info = True
    faulty.behaviour.allowed = ["PushPowerButton", "ForceOff"]

    async with driver_for(faulty) as driver:
        await operate(driver, Action.ON, verification=FAST)

    assert any(p.endswith("/ResetActionInfo") for p in faulty.paths("GET"))
    assert faulty.resets[0][1] == {"ResetType": "PushPowerButton"}
    assert faulty.behaviour.power == "On"


async def test_accepted_task_is_followed(faulty: FaultyRedfish) -> None:
    """A 202 with a task monitor is polled until the task completes."""
    faulty.behaviour.task_polls = 3

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    polls = faulty.paths("GET").count("/redfish/v1/TaskService/Tasks/1")
    assert polls == 4


async def test_failed_task_is_an_error_with_its_message(
    faulty: FaultyRedfish,
) -> None:
    """A task that ends in Exception fails with the task's message."""
    faulty.behaviour.task_polls = 1
    faulty.behaviour.task_fails = True

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert not outcome.success
    assert "Power control timed out" in (outcome.reason or "")


async def test_lagging_power_state_is_waited_for(
    faulty: FaultyRedfish,
) -> None:
    """PowerState still On for a few reads after the reset: keep reading."""
    faulty.behaviour.lag_reads = 4

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.commands_sent == 1
    reads = faulty.paths("GET").count("/redfish/v1/Systems/node1")
    assert reads >= 1 + 4 + 2


async def test_power_state_that_never_changes_is_not_confirmed(
    faulty: FaultyRedfish,
) -> None:
    """Reset accepted, PowerState stays On: NotConfirmedError, no success."""
    faulty.behaviour.lag_reads = 10_000

    async with driver_for(faulty) as driver:
        outcome = await attempt(
            driver,
            Action.OFF,
            verification=Verification(timeout=1.0, interval=0.05),
        )

    assert not outcome.success
    assert isinstance(outcome.error, NotConfirmedError)
    assert outcome.commands_sent == 1


async def test_server_error_on_first_read_is_retried(
    faulty: FaultyRedfish,
) -> None:
    """A 503 on the first read is transient: retried, then the fence works."""
    faulty.behaviour.fail_reads = 1

    with capture_logs() as logs:
        async with driver_for(faulty) as driver:
            outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert any(e["event"] == "power_retry" for e in logs)


async def test_server_error_on_reset_is_retried(faulty: FaultyRedfish) -> None:
    """A 500 on the first reset: state read again, reset sent again."""
    faulty.behaviour.refuse = (500, {"error": {"message": "busy"}})
    faulty.behaviour.refuse_times = 1

    async with driver_for(faulty) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert len(faulty.resets) == 2


async def test_stalled_read_is_cut_and_retried(
    faulty: FaultyRedfish,
) -> None:
    """A read never answered is cut at half the deadline and retried."""
    faulty.behaviour.hang_reads = 1
    driver = driver_for(faulty, system="/redfish/v1/Systems/node1")

    async with driver:
        outcome = await attempt(
            driver, Action.OFF, verification=Verification(timeout=6.0)
        )

    assert outcome.success, outcome.reason
    assert 2.5 < outcome.duration < 6.0


async def test_system_by_uuid_and_serial(faulty: FaultyRedfish) -> None:
    """A UUID or a serial number selects the system from the members."""
    uuid = "8E1F0A52-0000-4D1C-9C1E-2B6F9B0C1A77"
    for wanted in (uuid, "FKSN0001"):
        async with driver_for(faulty, system=wanted) as driver:
            state = await operate(driver, Action.STATUS, verification=FAST)
        assert state is PowerState.ON


async def test_transitional_state_is_not_off(faulty: FaultyRedfish) -> None:
    """PoweringOff reads as unknown, never as off."""
    faulty.behaviour.power = "PoweringOff"

    async with driver_for(faulty) as driver:
        state = await driver.read_state(5.0)

    assert state is PowerState.UNKNOWN


async def test_irmc_profile_detected_and_oem_reset_used(
    faulty: FaultyRedfish,
) -> None:
    """iRMC detected from the root: system 0, OEM reset when refused."""
    faulty.behaviour.irmc = True
    faulty.behaviour.refuse_standard = 400
    driver = driver_for(faulty, system=None)

    with capture_logs() as logs:
        async with driver:
            outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.method == "irmc"
    assert faulty.resets[-1] == (
        "FTSComputerSystem.Reset",
        {"FTSResetType": "PowerOff"},
    )
    assert any(e["event"] == "redfish_oem_reset" for e in logs)


async def test_irmc_driver_on_its_redfish_path(faulty: FaultyRedfish) -> None:
    """The iRMC driver names its path in the outcome's method."""
    faulty.behaviour.irmc = True
    driver = IrmcDriver(
        faulty.host,
        port=faulty.port,
        username=faulty.user,
        password=Secret(faulty.password),
        ca_file=faulty.pki.ca_file,
    )

    async with driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.method == "irmc-redfish"
    assert faulty.resets == [
        ("ComputerSystem.Reset", {"ResetType": "ForceOff"})
    ]
    assert len(faulty.deleted) == 1


async def test_inventory_options_reach_the_driver(
    faulty: FaultyRedfish,
) -> None:
    """drivers.build passes system, ca_file and auth through to Redfish."""
    from fencekit.power.drivers import build

    driver = build(
        "redfish",
        faulty.host,
        port=faulty.port,
        username=faulty.user,
        password=Secret(faulty.password),
        options={
            "system": "/redfish/v1/Systems/node1",
            "ca_file": str(faulty.pki.ca_file),
            "auth": "basic",
        },
    )

    async with driver:  # type: ignore[attr-defined]
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.method == "redfish"
    assert faulty.paths("POST") == [
        "/redfish/v1/Systems/node1/Actions/ComputerSystem.Reset"
    ]


@pytest.mark.parametrize(
    ("driver", "options", "where"),
    [
        ("redfish", {"cipher": 3}, "cipher"),
        ("redfish", {"ipmi_fallback": True}, "ipmi_fallback"),
        ("irmc", {"ipmi_port": 623}, "ipmi_fallback"),
        (
            "irmc",
            {"ipmi_fallback": True, "ipmi_password": "x"},
            "ipmi_password",
        ),
    ],
)
def test_inventory_option_errors_name_the_option(
    driver: str, options: dict[str, Any], where: str
) -> None:
    """An option the driver does not take is a ConfigError naming it."""
    from fencekit.errors import ConfigError
    from fencekit.power.drivers import build

    with pytest.raises(ConfigError) as caught:
        build(
            driver,
            "127.0.0.1",
            username="u",
            password=Secret("p"),
            options=options,
        )

    assert caught.value.where == where
