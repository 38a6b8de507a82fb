"""IPMI fencing through a faulty UDP relay in front of ipmi_sim.

Each run powers the node on behind fencekit's back, asks for a verified
``off`` through the relay, then asks ipmitool, straight to ipmi_sim (not
through the relay), what the power is. A success the BMC contradicts is
a false success; a run longer than its deadline plus a margin fails.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.outcome import Action
from fencekit.power.ipmi import IpmiDriver
from fencekit.power.operate import Verification, attempt
from fencekit.secrets import Secret
from tests.faults import matrix
from tests.faults.udp_relay import UdpFaults, UdpRelay
from tests.support.ipmisim import IpmiSim

DEADLINE = 5.0
# asyncio scheduling and a worker thread blocked in pyghmi on a loaded
# 2-core machine: the outcome may come this much after the deadline.
MARGIN = 2.0
VERIFY = Verification(timeout=DEADLINE, settle=2, interval=0.1)

FAULTS = {
    "none": UdpFaults(),
    "drop 10%": UdpFaults(drop=0.10, seed=1),
    "drop 30%": UdpFaults(drop=0.30, seed=2),
    "delay 150 ms + jitter 100 ms": UdpFaults(delay=0.15, jitter=0.1),
    "duplicate 30%": UdpFaults(duplicate=0.30, seed=3),
    "reorder 30%": UdpFaults(reorder=0.30, hold=0.05, seed=4),
    "drop+dup+reorder+delay": UdpFaults(
        drop=0.1, duplicate=0.1, reorder=0.1, delay=0.02, jitter=0.05, seed=5
    ),
}


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[IpmiSim]:
    """ipmi_sim on its own port, power on."""
    bmc = IpmiSim(tmp_path / "bmc").start()
    try:
        yield bmc
    finally:
        bmc.stop()


async def fence_once(sim: IpmiSim, relay: UdpRelay, fault: str) -> matrix.Run:
    """Power on, fence off through the relay, ask the BMC directly."""
    sim.set_power(True)
    driver = IpmiDriver(
        relay.host,
        port=relay.port,
        username=sim.user,
        password=Secret(sim.password),
    )
    try:
        outcome = await attempt(driver, Action.OFF, verification=VERIFY)
    finally:
        await driver.close()
    run = matrix.record(
        matrix.Run(
            path="ipmi",
            fault=fault,
            success=outcome.success,
            peer_off=sim.ipmitool_status() == "off",
            duration=outcome.duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not run.false_success, f"{fault}: BMC reads on after a success"
    assert run.duration <= DEADLINE + MARGIN, run
    assert run.success or run.reason, "a failure without a reason"
    assert not (run.reason or "").endswith("None"), run.reason
    # ipmi_sim speaks IPMI 2.0: a lossy link must not be blamed on 1.5.
    assert "IPMI 1.5" not in (run.reason or ""), run.reason
    return run


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fence_under_packet_faults(sim: IpmiSim, fault: str) -> None:
    """Lossy, slow, duplicated, reordered links: no false success."""
    faults = FAULTS[fault]
    with UdpRelay((sim.host, sim.port), faults) as relay:
        results = [
            await fence_once(sim, relay, fault) for _ in range(matrix.runs(2))
        ]
    if fault == "none":
        assert all(r.success for r in results), results


async def test_relay_silent_at_a_random_point(sim: IpmiSim) -> None:
    """The link dies mid-operation: a failure with a reason, or verified."""
    rnd = random.Random(7)
    fault = "silent after 1-16 datagrams"
    for _ in range(matrix.runs(2)):
        cut = UdpFaults(silent_after=rnd.randint(1, 16))
        with UdpRelay((sim.host, sim.port), cut) as relay:
            await fence_once(sim, relay, fault)


async def test_relay_silent_from_the_start(sim: IpmiSim) -> None:
    """No BMC answers at all: an unreachable failure within the deadline."""
    with UdpRelay((sim.host, sim.port), UdpFaults(silent_after=0)) as relay:
        for _ in range(matrix.runs(2)):
            run = await fence_once(sim, relay, "silent from the start")
            assert not run.success
            assert not run.peer_off


async def test_bmc_killed_mid_fence(sim: IpmiSim) -> None:
    """ipmi_sim dies once the command lands: a failure, never a success."""
    with UdpRelay((sim.host, sim.port)) as relay:
        for _ in range(matrix.runs(2)):
            sim.set_power(True)
            sim.kill_on_power_off(sim.proc.pid)  # type: ignore[union-attr]
            driver = IpmiDriver(
                relay.host,
                port=relay.port,
                username=sim.user,
                password=Secret(sim.password),
            )
            try:
                outcome = await attempt(
                    driver, Action.OFF, verification=VERIFY
                )
            finally:
                await driver.close()
            run = matrix.record(
                matrix.Run(
                    path="ipmi",
                    fault="BMC killed when power goes off",
                    success=outcome.success,
                    peer_off=not sim.power_is_on(),
                    duration=outcome.duration,
                    deadline=DEADLINE,
                    reason=outcome.reason,
                )
            )
            assert not run.success, "no BMC left to read the state from"
            assert run.duration <= DEADLINE + MARGIN
            sim.stop()
            sim.start(sim.port)
