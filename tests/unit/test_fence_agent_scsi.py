"""fence_fencekit_scsi, run as Pacemaker runs it, against tgtd: unfence
on the node itself, fence another node, its writes refused."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fencekit.integrations.storage_agent import parse_cmap
from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from tests.support.tgtd import BLOCK_SIZE, Tgtd

AGENT = Path(__file__).resolve().parents[2] / "agents" / "fence_fencekit_scsi"
IQN = "iqn.2024-01.io.fencekit:{}"
IDS = "node_ids=node-a=1;node-b=2\ncluster_name=shop\n"


def agent(stdin: str) -> subprocess.CompletedProcess[str]:
    """Run the agent in a process of its own, options on stdin."""
    return subprocess.run(
        [sys.executable, str(AGENT)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def options(tgtd: Tgtd, local: str, **extra: str) -> str:
    """The stonith device's options as node ``local`` runs it."""
    lines = {
        "devices": tgtd.url(),
        "initiator": IQN.format(local),
        "local_node": local,
        **extra,
    }
    return IDS + "".join(f"{k}={v}\n" for k, v in lines.items())


@pytest.fixture
async def node_b(tgtd: Tgtd) -> AsyncIterator[LogicalUnit]:
    """Node B's own long-lived session to the disk, registered."""
    path = PersistentReservations(
        IscsiTransport(tgtd.url(), initiator=IQN.format("node-b"))
    )
    unit = LogicalUnit(tgtd.url(), (path,))
    assert (await operations.unfence([unit], key_for_node("shop", 2))).success
    try:
        yield unit
    finally:
        await path.transport.close()


async def test_fence_refuses_the_victims_writes(
    tgtd: Tgtd, node_b: LogicalUnit, tmp_path: Path
) -> None:
    """node-a's fencer fences node-b: exit 0, B's key gone, B's next
    write gets RESERVATION CONFLICT, and the journal has the outcome."""
    from fencekit.journal import read

    journal = tmp_path / "journal.jsonl"

    done = agent(
        "action=off\nport=node-b\n"
        + options(tgtd, "node-a", journal=str(journal))
    )

    assert done.returncode == 0, done.stderr
    assert "off node-b verified" in done.stdout
    with pytest.raises(spc.ReservationConflictError):
        await node_b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )
    outcome = read(journal).records[-1]
    assert (outcome["event"], outcome["node"]) == ("outcome", "node-b")
    assert outcome["success"] is True


async def test_status_on_then_off(tgtd: Tgtd, node_b: LogicalUnit) -> None:
    """status is 0 while node-b's key is registered, 2 once fenced."""
    before = agent("action=status\nport=node-b\n" + options(tgtd, "node-a"))
    agent("action=off\nport=node-b\n" + options(tgtd, "node-a"))
    after = agent("action=status\nport=node-b\n" + options(tgtd, "node-a"))

    assert (before.returncode, before.stdout) == (0, "Status: ON\n")
    assert (after.returncode, after.stdout) == (2, "Status: OFF\n")


def test_unfence_on_the_node_itself(tgtd: Tgtd) -> None:
    """on registers the local node's key (by name here) and takes the
    reservation; on for another node is refused."""
    own = agent(
        "action=on\nport=node-a\n" + options(tgtd, "node-a", key_value="name")
    )
    other = agent(
        "action=on\nport=node-b\n" + options(tgtd, "node-a", key_value="name")
    )
    status = agent(
        "action=status\nport=node-a\n"
        + options(tgtd, "node-b", key_value="name")
    )

    assert own.returncode == 0, own.stderr
    assert other.returncode == 1
    assert "run it on node-b itself" in other.stderr
    assert status.returncode == 0, status.stderr


def test_fencing_itself_is_refused(tgtd: Tgtd) -> None:
    """off of the local node fails without touching the disk."""
    done = agent("action=off\nport=node-a\n" + options(tgtd, "node-a"))

    assert done.returncode == 1
    assert "ourselves" in done.stderr


def test_monitor_and_unreachable_target(tgtd: Tgtd) -> None:
    """monitor is 0 while the target answers, 1 once it is gone."""
    up = agent("action=monitor\n" + options(tgtd, "node-a"))
    tgtd.stop()
    down = agent(
        "action=monitor\n" + options(tgtd, "node-a", power_timeout="5")
    )

    assert up.returncode == 0, up.stderr
    assert down.returncode == 1


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ("devices=\n", "devices"),
        ("devices=iscsi://127.0.0.1:3260/iqn.x/1\n", "initiator"),
        ("devices=/dev/sdz\nnode_ids=node-a\n", "node_ids"),
    ],
)
def test_validate_all_rejects(extra: str, reason: str) -> None:
    """validate-all names what is wrong, without opening a disk."""
    done = agent("action=validate-all\n" + extra)

    assert done.returncode == 1
    assert reason in done.stderr


def test_parse_cmap() -> None:
    """corosync-cmapctl output gives the cluster name and node ids."""
    text = (
        "nodelist.local_node_pos (u32) = 0\n"
        "nodelist.node.0.name (str) = node-a\n"
        "nodelist.node.0.nodeid (u32) = 1\n"
        "nodelist.node.0.ring0_addr (str) = 10.0.0.1\n"
        "nodelist.node.1.nodeid (u32) = 12\n"
        "nodelist.node.1.ring0_addr (str) = 10.0.0.2\n"
        "totem.cluster_name (str) = shop\n"
    )

    assert parse_cmap(text) == ("shop", {"node-a": 1, "10.0.0.2": 12})
