"""Storage fencing against a real iSCSI target (tgtd) on loopback.

Each cluster node is one initiator name on its own long-lived iSCSI
session; its writes go through that session, so a fenced node's writes
are refused exactly as its I/O would be.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from fencekit.errors import (
    DeviceTimeoutError,
    FenceError,
    UnreachableError,
    UnsupportedError,
)
from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.spc import CommandResult, ReservationType
from tests.support.tgtd import BLOCK_SIZE, Tgtd

pytestmark = pytest.mark.peer("tgtd")

CLUSTER = "shop"


@dataclasses.dataclass
class Node:
    """One cluster node: its key and its own iSCSI session to the LUN."""

    name: str
    key: int
    initiator: str
    url: str
    unit: LogicalUnit

    @property
    def path(self) -> PersistentReservations:
        return self.unit.paths[0]

    async def write(self, lba: int, fill: bytes) -> None:
        """Write one block through this node's own session."""
        await self.path.send(
            "WRITE(10)",
            spc.write10_cdb(lba, 1),
            data_out=fill * BLOCK_SIZE,
        )

    async def restart(self) -> None:
        """Log out and in again, as after a reboot: a new I_T nexus."""
        await self.path.transport.close()
        self.unit = _unit(self.url, self.initiator)

    async def close(self) -> None:
        for path in self.unit.paths:
            await path.transport.close()


def _unit(url: str, initiator: str, paths: int = 1) -> LogicalUnit:
    transports = tuple(
        PersistentReservations(IscsiTransport(url, initiator=initiator))
        for _ in range(paths)
    )
    return LogicalUnit(url, transports)


@pytest.fixture
async def nodes(tgtd: Tgtd) -> AsyncIterator[dict[str, Node]]:
    """Three nodes, each on its own session, none registered yet."""
    made: dict[str, Node] = {}
    for number, name in enumerate(("node-a", "node-b", "node-c"), 1):
        initiator = f"iqn.2024-01.io.fencekit:{name}"
        made[name] = Node(
            name,
            key_for_node(CLUSTER, number),
            initiator,
            tgtd.url(),
            _unit(tgtd.url(), initiator),
        )
    try:
        yield made
    finally:
        for node in made.values():
            await node.close()


async def test_fenced_node_writes_are_refused(
    tgtd: Tgtd, nodes: dict[str, Node]
) -> None:
    """A fences B: B's writes conflict until B restarts and unfences."""
    a, b = nodes["node-a"], nodes["node-b"]
    assert (await operations.unfence([a.unit], a.key)).success
    assert (await operations.unfence([b.unit], b.key)).success
    await b.write(1, b"b")

    outcome = await operations.fence([a.unit], a.key, b.key)

    assert outcome.success, outcome.reason
    assert b.key not in outcome.units[0].keys
    keys = await a.path.read_keys()
    assert b.key not in keys.keys and a.key in keys.keys
    with pytest.raises(spc.ReservationConflictError):
        await b.write(2, b"B")
    assert tgtd.read_block(2) == bytes(BLOCK_SIZE)
    await a.write(3, b"a")
    assert tgtd.read_block(3) == b"a" * BLOCK_SIZE

    await b.restart()
    assert (await operations.unfence([b.unit], b.key)).success
    await b.write(4, b"4")
    assert tgtd.read_block(4) == b"4" * BLOCK_SIZE


async def test_preempt_and_abort_falls_back_to_preempt(
    nodes: dict[str, Node],
) -> None:
    """tgtd refuses PREEMPT AND ABORT: PREEMPT is used and it is logged."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)

    with capture_logs() as logs:
        outcome = await operations.fence([a.unit], a.key, b.key)

    assert outcome.success, outcome.reason
    assert outcome.units[0].aborted is False
    fallback = [e for e in logs if e["event"] == "scsi_preempt_fallback"]
    assert len(fallback) == 1
    assert "24h" in fallback[0]["reason"]
    assert fallback[0]["log_level"] == "warning"


async def test_second_fence_skips_the_refused_abort(
    nodes: dict[str, Node],
) -> None:
    """Once refused, PREEMPT AND ABORT is not tried again on that path."""
    a, b, c = nodes["node-a"], nodes["node-b"], nodes["node-c"]
    for node in (a, b, c):
        await operations.unfence([node.unit], node.key)
    await operations.fence([a.unit], a.key, b.key)

    before = a.path.commands
    outcome = await operations.fence([a.unit], a.key, c.key)

    assert outcome.success, outcome.reason
    assert a.path.commands - before == outcome.commands == 4


async def test_fencing_the_holder_moves_the_reservation(
    nodes: dict[str, Node],
) -> None:
    """Fencing the node that holds the reservation makes us the holder."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([b.unit], b.key)
    await operations.unfence([a.unit], a.key)
    assert (await a.path.read_reservation()).key == b.key

    outcome = await operations.fence([a.unit], a.key, b.key)

    assert outcome.success, outcome.reason
    reservation = await a.path.read_reservation()
    assert reservation.key == a.key
    assert reservation.type is ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    with pytest.raises(spc.ReservationConflictError):
        await b.write(0, b"x")


async def test_unit_attention_after_preempt_is_retried(
    nodes: dict[str, Node],
) -> None:
    """UNIT ATTENTION 2Ah/03h after a preempt is retried, not an error."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)
    await operations.fence([a.unit], a.key, b.key)

    with capture_logs() as logs:
        outcome = await operations.status([b.unit], b.key)

    unit = outcome.units[0]
    assert not outcome.success and unit.error is None
    assert unit.reason is not None and "not registered" in unit.reason
    retries = [e for e in logs if e["event"] == "scsi_retry"]
    assert retries and "2Ah/03h" in retries[0]["reason"]


async def test_target_stopped_mid_fence_is_a_failure(
    tgtd: Tgtd, nodes: dict[str, Node]
) -> None:
    """The target dies between REGISTER and PREEMPT: failure, reason."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)
    killer = _KillAfter(a.path.transport, tgtd, commands=1)
    unit = LogicalUnit(a.url, (PersistentReservations(killer, timeout=5),))

    outcome = await operations.fence([unit], a.key, b.key)

    assert not outcome.success
    result = outcome.units[0]
    assert isinstance(result.error, UnreachableError)
    assert result.reason is not None and "session lost" in result.reason
    assert killer.sent == 2


async def test_a_fenced_node_cannot_fence_back(
    nodes: dict[str, Node],
) -> None:
    """B, once fenced, cannot fence A nor register again doing so."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)
    assert (await operations.fence([a.unit], a.key, b.key)).success

    outcome = await operations.fence([b.unit], b.key, a.key)

    assert not outcome.success
    assert isinstance(outcome.units[0].error, FenceError)
    assert "preempted" in (outcome.reason or "")
    keys = await a.path.read_keys()
    assert a.key in keys.keys and b.key not in keys.keys


async def test_fence_race_leaves_one_winner(nodes: dict[str, Node]) -> None:
    """A and B fence each other at once: at most one wins, and stays."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)

    by_a, by_b = await asyncio.gather(
        operations.fence([a.unit], a.key, b.key),
        operations.fence([b.unit], b.key, a.key),
    )

    assert not (by_a.success and by_b.success)
    keys = (await nodes["node-c"].path.read_keys()).keys
    if by_a.success:
        assert a.key in keys and b.key not in keys
    if by_b.success:
        assert b.key in keys and a.key not in keys


async def test_hung_target_is_a_timeout_within_the_deadline(
    tgtd: Tgtd, nodes: dict[str, Node]
) -> None:
    """A target that stops answering mid-fence: a timeout failure."""
    a, b = nodes["node-a"], nodes["node-b"]
    await operations.unfence([a.unit], a.key)
    await operations.unfence([b.unit], b.key)
    unit = LogicalUnit(
        a.url, (PersistentReservations(a.path.transport, timeout=2),)
    )
    tgtd.pause()
    try:
        started = time.monotonic()
        outcome = await operations.fence([unit], a.key, b.key)
        elapsed = time.monotonic() - started
    finally:
        tgtd.resume()

    assert not outcome.success
    assert isinstance(outcome.units[0].error, DeviceTimeoutError)
    assert elapsed < 30


async def test_self_check_fails_closed_when_target_is_gone(
    tgtd: Tgtd, nodes: dict[str, Node]
) -> None:
    """Keys that cannot be read count as absent for the watchdog."""
    a = nodes["node-a"]
    await operations.unfence([a.unit], a.key)
    assert (await operations.self_check([a.unit], a.key)).success

    tgtd.kill()
    outcome = await operations.self_check([a.unit], a.key)

    assert not outcome.success
    assert outcome.units[0].error is not None


async def test_two_paths_register_twice_and_one_preempt_clears_both(
    tgtd: Tgtd, nodes: dict[str, Node]
) -> None:
    """Two paths register twice; one preempt removes both."""
    a, b = nodes["node-a"], nodes["node-b"]
    twin = _unit(tgtd.url(), b.initiator, paths=2)
    try:
        await operations.unfence([a.unit], a.key)
        unfenced = await operations.unfence([twin], b.key)
        assert unfenced.success, unfenced.reason
        assert unfenced.units[0].registered == 2

        outcome = await operations.fence([a.unit], a.key, b.key)

        assert outcome.success, outcome.reason
        assert (await a.path.read_keys()).count(b.key) == 0
        status = await operations.status([twin], b.key)
        assert not status.success and status.units[0].registered == 0
    finally:
        for path in twin.paths:
            await path.transport.close()


async def test_fencing_an_absent_key_is_verified_not_sent_blind(
    nodes: dict[str, Node],
) -> None:
    """A victim key that is not registered: the read-back decides."""
    a = nodes["node-a"]
    await operations.unfence([a.unit], a.key)

    outcome = await operations.fence([a.unit], a.key, 0xDEAD)

    assert outcome.success
    assert "already fenced" in (outcome.units[0].reason or "")


async def test_read_commands_against_tgtd(nodes: dict[str, Node]) -> None:
    """REPORT CAPABILITIES parses; READ FULL STATUS is unsupported."""
    a = nodes["node-a"]

    capabilities = await a.path.report_capabilities()

    assert capabilities.type_mask_valid
    assert ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY in (
        capabilities.types
    )
    with pytest.raises(UnsupportedError):
        await a.path.read_full_status()


class _KillAfter:
    """A transport that kills the target after ``commands`` commands."""

    def __init__(self, inner: IscsiTransport, tgtd: Tgtd, commands: int):
        self.inner = inner
        self.device = inner.device
        self.tgtd = tgtd
        self.left = commands
        self.sent = 0

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        timeout: float,
    ) -> CommandResult:
        self.sent += 1
        if self.left == 0:
            self.tgtd.kill()
        self.left -= 1
        return await self.inner.execute(
            cdb, data_out=data_out, data_in=data_in, timeout=timeout
        )

    async def close(self) -> None:
        await self.inner.close()
