"""SNMP PDU fencing through the faulty UDP relay in front of snmpsim.

Each run switches outlet 1 on with net-snmp's ``snmpset`` straight to
snmpsim, asks fencekit for a verified ``off`` through the relay, then
reads the outlet with ``snmpget``, again straight to snmpsim.
"""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit._snmp import SnmpCredentials
from fencekit.outcome import Action
from fencekit.power.operate import Verification, attempt
from fencekit.power.snmp import SnmpPduDriver
from fencekit.secrets import Secret
from tests.faults import matrix
from tests.faults.udp_relay import UdpFaults, UdpRelay
from tests.support import peers
from tests.support import snmp as peer

OUTLET = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
DEADLINE = 6.0
MARGIN = 2.0
VERIFY = Verification(timeout=DEADLINE, settle=2, interval=0.1)

FAULTS = {
    "none": UdpFaults(),
    "drop 20%": UdpFaults(drop=0.2, seed=11),
    "delay 150 ms + jitter 100 ms": UdpFaults(delay=0.15, jitter=0.1),
    "duplicate 30%": UdpFaults(duplicate=0.3, seed=12),
    "reorder 30%": UdpFaults(reorder=0.3, hold=0.05, seed=13),
}


@pytest.fixture
def snmpsim(tmp_path: Path) -> Iterator[peer.SnmpSim]:
    """snmpsim's switch-and-PDU with fresh writable cells."""
    yield from peer.serve(peer.SnmpSim(tmp_path / "snmpsim"))


def snmpset_on(sim: peer.SnmpSim, outlet: int) -> None:
    """Switch an outlet on with net-snmp, behind fencekit's back."""
    binary = peers.require("snmpset")
    confdir = sim.workdir / "client"
    peer.snmpget(sim.port, "1.3.6.1.2.1.1.5.0", confdir)  # writes the conf
    subprocess.run(
        [
            binary,
            "-m",
            "",
            "-r",
            "2",
            "-t",
            "2",
            f"127.0.0.1:{sim.port}",
            f"{OUTLET}.{outlet}",
            "i",
            "1",
        ],
        capture_output=True,
        timeout=20,
        check=True,
        env={**os.environ, "SNMPCONFPATH": str(confdir)},
    )


async def fence_once(
    sim: peer.SnmpSim, relay: UdpRelay, fault: str, outlet: int = 1
) -> matrix.Run:
    """Outlet on, fence off through the relay, read snmpsim directly."""
    if outlet != 3:
        snmpset_on(sim, outlet)
    driver = SnmpPduDriver(
        relay.host,
        port=relay.port,
        credentials=SnmpCredentials(
            version="2c", community=Secret(peer.SIM_COMMUNITY)
        ),
        plug=outlet,
        retries=2,
    )
    try:
        outcome = await attempt(driver, Action.OFF, verification=VERIFY)
    finally:
        await driver.close()
    run = matrix.record(
        matrix.Run(
            path="snmp-pdu",
            fault=fault,
            success=outcome.success,
            peer_off=sim.get(f"{OUTLET}.{outlet}") == "2",
            duration=outcome.duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not run.false_success, f"{fault}: snmpsim reads the outlet on"
    assert run.duration <= DEADLINE + MARGIN, run
    assert run.success or run.reason, "a failure without a reason"
    return run


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fence_under_packet_faults(
    snmpsim: peer.SnmpSim, fault: str
) -> None:
    """Lossy, slow, duplicated, reordered links: no false success."""
    with UdpRelay((snmpsim.host, snmpsim.port), FAULTS[fault]) as relay:
        results = [
            await fence_once(snmpsim, relay, fault)
            for _ in range(matrix.runs(2))
        ]
    if fault == "none":
        assert all(r.success for r in results), results


async def test_relay_silent_at_a_random_point(snmpsim: peer.SnmpSim) -> None:
    """The link dies mid-operation: a failure with a reason, or verified."""
    rnd = random.Random(17)
    for _ in range(matrix.runs(2)):
        cut = UdpFaults(silent_after=rnd.randint(1, 5))
        with UdpRelay((snmpsim.host, snmpsim.port), cut) as relay:
            await fence_once(snmpsim, relay, "silent after 1-5 datagrams")


async def test_set_accepted_but_not_carried_out(
    snmpsim: peer.SnmpSim,
) -> None:
    """Outlet 3 accepts the SET and stays on: never a success."""
    with UdpRelay((snmpsim.host, snmpsim.port)) as relay:
        for _ in range(matrix.runs(2)):
            run = await fence_once(
                snmpsim, relay, "SET accepted, outlet stays on", outlet=3
            )
            assert not run.success
