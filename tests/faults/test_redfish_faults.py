"""Redfish fencing through a faulty HTTPS relay in front of sushy-tools.

Each run switches the emulated system on behind fencekit's back, asks for
a verified ``off`` through the relay (5xx answers, connection resets
before and after the service acted, stalled headers and bodies, garbled
JSON), then reads the system straight from the emulator. A success the
emulator contradicts is a false success.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import pytest

from fencekit.outcome import Action
from fencekit.power.operate import Verification, attempt
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret
from tests.faults import matrix
from tests.faults.http_relay import HttpFaults, HttpsRelay
from tests.support.redfish import SYSTEM_IDS, SushyEmulator, sushy

__all__ = ["sushy"]

DEADLINE = 6.0
MARGIN = 2.0
VERIFY = Verification(timeout=DEADLINE, settle=2, interval=0.1)
POST = frozenset({"POST"})

FAULTS = {
    "none": HttpFaults(),
    "503 on 30% of requests": HttpFaults(status_5xx=0.3, seed=1),
    "500 to every POST": HttpFaults(status_5xx=1.0, status=500, only=POST),
    "reset before forwarding, 20%": HttpFaults(reset_before=0.2, seed=2),
    "reset after the service acted, every POST": HttpFaults(
        reset_after=1.0, only=POST
    ),
    "headers stalled, 15%": HttpFaults(stall_headers=0.15, seed=3),
    "body stalled half-way, 15%": HttpFaults(stall_body=0.15, seed=4),
    "malformed JSON, 25%": HttpFaults(malformed=0.25, seed=5),
    "mixed 5xx+reset+stall+garble": HttpFaults(
        status_5xx=0.1,
        reset_before=0.05,
        reset_after=0.05,
        stall_body=0.05,
        malformed=0.1,
        seed=6,
    ),
}


@pytest.fixture
def relay(sushy: SushyEmulator) -> Iterator[HttpsRelay]:
    """The fault relay in front of the emulator, faults off."""
    client = ssl.create_default_context(cafile=str(sushy.ca_file))
    relay = HttpsRelay(
        (sushy.host, sushy.port),
        server_context=sushy.pki.server_context(),
        client_context=client,
    ).start()
    try:
        yield relay
    finally:
        relay.stop()


async def fence_once(
    sushy: SushyEmulator, relay: HttpsRelay, fault: str
) -> matrix.Run:
    """Switch on, fence off through the relay, read the emulator."""
    sushy.set_power("On")
    driver = RedfishDriver(
        relay.host,
        port=relay.port,
        username=sushy.user,
        password=Secret(sushy.password),
        system=SYSTEM_IDS[0],
        ca_file=sushy.ca_file,
    )
    try:
        outcome = await attempt(driver, Action.OFF, verification=VERIFY)
    finally:
        await driver.close()
    run = matrix.record(
        matrix.Run(
            path="redfish",
            fault=fault,
            success=outcome.success,
            peer_off=sushy.power_state(SYSTEM_IDS[0]) == "Off",
            duration=outcome.duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not run.false_success, f"{fault}: emulator reads On"
    assert run.duration <= DEADLINE + MARGIN, run
    assert run.success or run.reason, "a failure without a reason"
    return run


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fence_under_http_faults(
    sushy: SushyEmulator, relay: HttpsRelay, fault: str
) -> None:
    """5xx, resets, stalls, garbled JSON: no false success, in time."""
    relay.set_faults(FAULTS[fault])
    results = [
        await fence_once(sushy, relay, fault) for _ in range(matrix.runs(2))
    ]
    if fault == "none":
        assert all(r.success for r in results), results
    if fault == "500 to every POST":
        assert not any(r.success for r in results)


async def test_service_stopped_mid_fence(
    sushy: SushyEmulator, relay: HttpsRelay
) -> None:
    """The emulator dies after the reset lands: a failure with a reason."""
    sushy.set_power("On")
    driver = RedfishDriver(
        relay.host,
        port=relay.port,
        username=sushy.user,
        password=Secret(sushy.password),
        system=SYSTEM_IDS[0],
        ca_file=sushy.ca_file,
    )
    await driver.read_state(DEADLINE)
    # Every later request finds nothing behind the relay.
    sushy.stop()
    try:
        outcome = await attempt(driver, Action.OFF, verification=VERIFY)
    finally:
        await driver.close()
    matrix.record(
        matrix.Run(
            path="redfish",
            fault="service stopped mid-fence",
            success=outcome.success,
            peer_off=False,
            duration=outcome.duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not outcome.success
    assert outcome.reason
    assert outcome.duration <= DEADLINE + MARGIN
