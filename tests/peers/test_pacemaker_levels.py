"""A live cluster with two fencing levels for node-b: IPMI first, then
SCSI reservations. The BMC does not answer, so Pacemaker falls back to
fence_fencekit_scsi, which cuts node-b off the disk; node-a itself is
unfenced by Pacemaker when it joins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from tests.support import peers
from tests.support.pacemaker import Cluster, installed_agents, run
from tests.support.tgtd import BLOCK_SIZE, Tgtd

IQN = "iqn.2024-01.io.fencekit:{}"
# Cluster.start's corosync.conf names the cluster so.
CLUSTER = "fencekit-test"
KEY_A, KEY_B = key_for_node(CLUSTER, 1), key_for_node(CLUSTER, 2)


@pytest.fixture
async def node_b(tgtd: Tgtd) -> AsyncIterator[LogicalUnit]:
    """node-b's own long-lived session to the disk, registered."""
    path = PersistentReservations(
        IscsiTransport(tgtd.url(), initiator=IQN.format("node-b"))
    )
    unit = LogicalUnit(tgtd.url(), (path,))
    assert (await operations.unfence([unit], KEY_B)).success
    try:
        yield unit
    finally:
        await path.transport.close()


def _primitive(
    name: str, agent: str, attrs: dict[str, str], meta: dict[str, str]
) -> str:
    def pairs(kind: str, values: dict[str, str]) -> str:
        return "".join(
            f'<nvpair id="{name}-{kind}-{k}" name="{k}" value="{v}"/>'
            for k, v in values.items()
        )

    return (
        f'<primitive id="{name}" class="stonith" type="{agent}">'
        f'<instance_attributes id="{name}-ia">{pairs("ia", attrs)}'
        f'</instance_attributes><meta_attributes id="{name}-meta">'
        f"{pairs('meta', meta)}</meta_attributes></primitive>"
    )


_TOPOLOGY = (
    "<fencing-topology>"
    '<fencing-level id="fl-b-1" target="node-b" index="1"'
    ' devices="fence-bmc-b"/>'
    '<fencing-level id="fl-b-2" target="node-b" index="2"'
    ' devices="fence-disks"/>'
    "</fencing-topology>"
)


async def test_ipmi_then_scsi_levels(
    tgtd: Tgtd, node_b: LogicalUnit, tmp_path: Path
) -> None:
    """node-a is unfenced (its key on the disk); fencing node-b tries the
    silent BMC, then the disks: node-b's writes are refused, and both
    attempts are in fencekit's journal."""
    from fencekit.journal import read

    journal = tmp_path / "journal.jsonl"
    password = tmp_path / "bmc.pass"
    password.write_text("unused\n")
    password.chmod(0o600)
    bmc = {
        "ip": f"127.0.0.1:{peers.free_port()}",
        "username": "admin",
        "password_file": str(password),
        "power_timeout": "4",
        "journal": str(journal),
        "pcmk_host_list": "node-b",
    }
    # The cluster name comes from corosync; node ids as the inventory
    # would give them.
    disks = {
        "devices": tgtd.url(),
        "initiator": IQN.format("node-a"),
        "node_ids": "node-a=1;node-b=2",
        "journal": str(journal),
        "pcmk_host_list": "node-a node-b",
    }

    with installed_agents():
        cluster = Cluster().start()
        try:
            cluster.cib_create(
                "resources",
                _primitive("fence-bmc-b", "fence_fencekit_ipmi", bmc, {}),
            )
            cluster.cib_create(
                "resources",
                _primitive(
                    "fence-disks",
                    "fence_fencekit_scsi",
                    disks,
                    {"provides": "unfencing"},
                ),
            )
            cluster.cib_create("configuration", _TOPOLOGY)
            cluster.wait(
                lambda: _unfenced(journal), 120, "node-a to be unfenced"
            )

            fenced = run(
                cluster.stonith_admin,
                "--fence",
                "node-b",
                "--timeout",
                "120",
                timeout=150,
            )
            history = run(cluster.stonith_admin, "--history", "node-b")
        finally:
            cluster.stop()

    assert fenced.returncode == 0, fenced.stderr + cluster.logs()
    assert not run("pgrep", "-x", "corosync").stdout
    assert "successful" in history.stdout.lower(), history.stdout
    with pytest.raises(spc.ReservationConflictError):
        await node_b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )
    keys = await node_b.paths[0].read_keys()
    assert KEY_A in keys.keys
    assert KEY_B not in keys.keys
    outcomes = [
        (r["source"], r["node"], r["action"], r["success"])
        for r in read(journal).records
        if r["event"] == "outcome"
    ]
    assert ("fence_fencekit_scsi", "node-a", "on", True) in outcomes
    assert ("fence_fencekit_ipmi", "node-b", "off", False) in outcomes
    assert ("fence_fencekit_scsi", "node-b", "off", True) in outcomes


def _unfenced(journal: Path) -> bool:
    """Whether node-a's unfencing outcome is in the journal."""
    from fencekit.journal import read

    return any(
        r["event"] == "outcome" and r["node"] == "node-a" and r["success"]
        for r in read(journal).records
    )
