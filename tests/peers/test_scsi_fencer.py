"""The ``scsi`` fence device as an inventory level, against tgtd."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fencekit.config import Inventory, parse
from fencekit.fencing import Fencer
from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from tests.support.tgtd import BLOCK_SIZE, Tgtd

pytestmark = pytest.mark.peer("tgtd")

IQN = "iqn.2024-01.io.fencekit:{}"


def inventory(tmp_path: Path, url: str, local: str) -> Inventory:
    """Two nodes whose only fence level is the shared LUN."""
    data: dict[str, Any] = {
        "cluster": "shop",
        "fencer": {
            "run_dir": str(tmp_path / "run"),
            "journal": str(tmp_path / "journal.jsonl"),
            "local_node": local,
            "fence_timeout": 60,
        },
        "devices": {
            "shared-disks": {
                "driver": "scsi",
                "host": "127.0.0.1",
                "timeout": 30,
                "options": {"devices": [url], "initiator": IQN.format(local)},
            }
        },
        "nodes": [
            {"name": "node-a", "id": 1, "levels": [["shared-disks"]]},
            {"name": "node-b", "id": 2, "levels": [["shared-disks"]]},
        ],
    }
    return parse(data)


@pytest.fixture
async def node_b(tgtd: Tgtd) -> AsyncIterator[LogicalUnit]:
    """Node B's own long-lived session, unfenced with its derived key."""
    path = PersistentReservations(
        IscsiTransport(tgtd.url(), initiator=IQN.format("node-b"))
    )
    unit = LogicalUnit(tgtd.url(), (path,))
    assert (await operations.unfence([unit], key_for_node("shop", 2))).success
    try:
        yield unit
    finally:
        await path.transport.close()


async def test_fencer_fences_node_b_through_the_scsi_level(
    tmp_path: Path, tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """fence node-b from node-a: verified, and node B's writes conflict."""
    async with Fencer(inventory(tmp_path, tgtd.url(), "node-a")) as fencer:
        outcome = await fencer.fence("node-b")

    assert outcome.success, outcome.reason
    assert outcome.method == "scsi"
    keys = await node_b.paths[0].read_keys()
    assert key_for_node("shop", 2) not in keys.keys
    assert key_for_node("shop", 1) in keys.keys
    with pytest.raises(spc.ReservationConflictError):
        await node_b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )


async def test_on_unfences_the_local_node_only(
    tmp_path: Path, tgtd: Tgtd
) -> None:
    """'on' registers the local node's key; for another node it fails."""
    async with Fencer(inventory(tmp_path, tgtd.url(), "node-a")) as fencer:
        own = await fencer.fence("node-a", "on")
        other = await fencer.fence("node-b", "on")

    assert own.success, own.reason
    assert not other.success
    assert "run it on node-b" in (other.reason or "")


async def test_fencer_without_reachable_target_fails_with_reason(
    tmp_path: Path, tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """The target is gone: the fence fails, the reason says why."""
    tgtd.kill()

    async with Fencer(inventory(tmp_path, tgtd.url(), "node-a")) as fencer:
        outcome = await fencer.fence("node-b")

    assert not outcome.success
    assert "login" in (outcome.reason or "")


async def test_check_reads_the_keys_of_every_disk(
    tmp_path: Path, tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """fencekit check on a scsi device reads the disk's registrations."""
    async with Fencer(inventory(tmp_path, tgtd.url(), "node-a")) as fencer:
        (result,) = await fencer.check()

    assert result.ok, result.reason
    assert result.detail == "1 disk(s), 1 registration(s)"


async def test_fencekit_fence_command_with_an_inventory_file(
    tmp_path: Path, tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """`fencekit fence node-b --config FILE` fences B; its writes conflict."""
    config = tmp_path / "inventory.toml"
    config.write_text(
        f"""\
cluster = "shop"

[fencer]
run_dir = "{tmp_path / "run"}"
journal = "{tmp_path / "journal.jsonl"}"
local_node = "node-a"

[devices.shared-disks]
driver = "scsi"
host = "127.0.0.1"
timeout = 30

[devices.shared-disks.options]
devices = ["{tgtd.url()}"]
initiator = "{IQN.format("node-a")}"

[[nodes]]
name = "node-a"
id = 1
levels = [["shared-disks"]]

[[nodes]]
name = "node-b"
id = 2
levels = [["shared-disks"]]
"""
    )

    result = subprocess.run(
        [sys.executable, "-m", "fencekit.cli", "fence", "node-b",
         "--config", str(config), "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    with pytest.raises(spc.ReservationConflictError):
        await node_b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )
