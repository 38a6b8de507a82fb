"""SCSI-3 reservation fencing through a faulty TCP relay in front of tgtd.

Node B registers its key directly with tgtd. The fencer (node A) fences
B through the relay, whose iSCSI connection is delayed, cut at a random
byte (in a login or mid-command), stalled, or whose target is paused or
killed mid-fence. Then a session straight to tgtd reads the keys: a
success while B's key is still registered is a false success.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest

from fencekit.config import Inventory, parse
from fencekit.fencing import Fencer
from fencekit.storage import operations
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from tests.faults import matrix
from tests.faults.tcp_relay import TcpFaults, TcpRelay
from tests.support.tgtd import TARGET_IQN, Tgtd

pytestmark = pytest.mark.peer("tgtd")

IQN = "iqn.2024-01.io.fencekit:{}"
DEADLINE = 8.0
MARGIN = 3.0
KEY_B = key_for_node("shop", 2)


def inventory(tmp_path: Path, url: str) -> Inventory:
    """Node A fences node B through the one shared LUN at ``url``."""
    data: dict[str, Any] = {
        "cluster": "shop",
        "fencer": {
            "run_dir": str(tmp_path / "run"),
            "journal": str(tmp_path / "journal.jsonl"),
            "local_node": "node-a",
            "fence_timeout": DEADLINE,
        },
        "devices": {
            "shared-disks": {
                "driver": "scsi",
                "host": "127.0.0.1",
                "timeout": DEADLINE,
                "options": {"devices": [url], "initiator": IQN.format("a")},
            }
        },
        "nodes": [
            {"name": "node-a", "id": 1, "levels": [["shared-disks"]]},
            {"name": "node-b", "id": 2, "levels": [["shared-disks"]]},
        ],
    }
    return parse(data)


async def _direct(tgtd: Tgtd, who: str) -> tuple[LogicalUnit, Any]:
    path = PersistentReservations(
        IscsiTransport(tgtd.url(), initiator=IQN.format(who))
    )
    return LogicalUnit(tgtd.url(), (path,)), path


async def register_b(tgtd: Tgtd) -> None:
    """Node B registers its key, straight to tgtd."""
    unit, path = await _direct(tgtd, "b")
    try:
        outcome = await operations.unfence([unit], KEY_B)
        assert outcome.success, outcome
    finally:
        await path.transport.close()


async def b_registered(tgtd: Tgtd) -> bool:
    """Whether B's key is registered, read straight from tgtd."""
    _, path = await _direct(tgtd, "reader")
    try:
        return KEY_B in (await path.read_keys()).keys
    finally:
        await path.transport.close()


def relay_url(tgtd: Tgtd, relay: TcpRelay) -> str:
    return f"iscsi://{relay.host}:{relay.port}/{TARGET_IQN}/1"


async def fence_once(
    tgtd: Tgtd, relay: TcpRelay, tmp_path: Path, fault: str
) -> matrix.Run:
    """Register B, fence it through the relay, read the keys directly."""
    async with Fencer(inventory(tmp_path, relay_url(tgtd, relay))) as fencer:
        started = time.monotonic()
        outcome = await fencer.fence("node-b")
        duration = time.monotonic() - started
    run = matrix.record(
        matrix.Run(
            path="scsi",
            fault=fault,
            success=outcome.success,
            peer_off=not await b_registered(tgtd),
            duration=duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not run.false_success, f"{fault}: B's key is still registered"
    assert run.duration <= DEADLINE + MARGIN, run
    assert run.success or run.reason
    return run


FAULTS = {
    "none": TcpFaults(),
    "delay 30 ms per segment": TcpFaults(delay=0.03),
}


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_fence_through_a_slow_or_clean_path(
    tgtd: Tgtd, tmp_path: Path, fault: str
) -> None:
    """A clean or slow path: verified fences, B's key gone."""
    for _ in range(matrix.runs(2)):
        await register_b(tgtd)
        with TcpRelay(("127.0.0.1", tgtd.port), FAULTS[fault]) as relay:
            run = await fence_once(tgtd, relay, tmp_path, fault)
        assert run.success, run.reason


async def test_connection_cut_at_a_random_byte(
    tgtd: Tgtd, tmp_path: Path
) -> None:
    """The iSCSI connection is reset in a login or mid-command."""
    rnd = random.Random(23)
    for _ in range(matrix.runs(3)):
        await register_b(tgtd)
        cut = TcpFaults(cut_after=rnd.randint(0, 1500))
        with TcpRelay(("127.0.0.1", tgtd.port), cut) as relay:
            await fence_once(
                tgtd, relay, tmp_path, "connection reset at 0-1500 bytes"
            )


async def test_path_stalls_mid_fence(tgtd: Tgtd, tmp_path: Path) -> None:
    """The path stops forwarding (a hung link): a failure in time."""
    rnd = random.Random(29)
    for _ in range(matrix.runs(2)):
        await register_b(tgtd)
        stall = TcpFaults(stall_after=rnd.randint(0, 1500))
        with TcpRelay(("127.0.0.1", tgtd.port), stall) as relay:
            await fence_once(
                tgtd, relay, tmp_path, "path stalls at 0-1500 bytes"
            )


async def test_target_paused_mid_fence(tgtd: Tgtd, tmp_path: Path) -> None:
    """tgtd stops answering (SIGSTOP) during the fence: a failure."""
    await register_b(tgtd)
    with TcpRelay(("127.0.0.1", tgtd.port)) as relay:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, tgtd.pause)
        try:
            async with Fencer(
                inventory(tmp_path, relay_url(tgtd, relay))
            ) as fencer:
                started = time.monotonic()
                outcome = await fencer.fence("node-b")
                duration = time.monotonic() - started
        finally:
            tgtd.resume()
    matrix.record(
        matrix.Run(
            path="scsi",
            fault="target paused (SIGSTOP) mid-fence",
            success=outcome.success,
            peer_off=not await b_registered(tgtd),
            duration=duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert outcome.success or outcome.reason
    assert duration <= DEADLINE + MARGIN
    if outcome.success:
        assert not await b_registered(tgtd)


async def test_target_killed_before_the_fence(
    tgtd: Tgtd, tmp_path: Path
) -> None:
    """No target at all: a failure with a reason, within the deadline."""
    await register_b(tgtd)
    with TcpRelay(("127.0.0.1", tgtd.port)) as relay:
        tgtd.kill()
        async with Fencer(
            inventory(tmp_path, relay_url(tgtd, relay))
        ) as fencer:
            started = time.monotonic()
            outcome = await fencer.fence("node-b")
            duration = time.monotonic() - started
    matrix.record(
        matrix.Run(
            path="scsi",
            fault="target killed",
            success=outcome.success,
            peer_off=False,
            duration=duration,
            deadline=DEADLINE,
            reason=outcome.reason,
        )
    )
    assert not outcome.success and outcome.reason
    assert duration <= DEADLINE + MARGIN
