"""SNMP fence devices in an inventory, fenced by the fencer, with the
notifier on the fencer's hook: snmpsim is the PDU and the switch,
snmptrapd the manager."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit import notify
from fencekit._snmp import SnmpCredentials
from fencekit.config import load
from fencekit.fencing import Fencer
from fencekit.power.snmp import IF_ADMIN_STATUS
from fencekit.secrets import Secret
from tests.support import snmp as peer

ROOT = notify.DEFAULT_MIB_ROOT
OUTLET = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"

INVENTORY = """\
cluster = "snmp-lab"

[fencer]
run_dir = "{run}"
journal = "{run}/journal.jsonl"
fence_timeout = 30
settle = 2
interval = 0.1

[devices.pdu-1]
driver = "snmp-pdu"
host = "127.0.0.1"
port = {port}
password_file = "{community}"
timeout = 10

[devices.switch-1]
driver = "snmp-port"
host = "127.0.0.1"
port = {port}
password_file = "{community}"
timeout = 10

[devices.pdu-wrong]
driver = "snmp-pdu"
host = "127.0.0.1"
port = {port}
password_file = "{wrong}"
timeout = 1
options = {{ plug = "1", retries = 0 }}

[[nodes]]
name = "node-b"
id = 2
levels = [["pdu-1"]]
options = {{ pdu-1 = {{ plug = "node-b" }} }}

[[nodes]]
name = "node-c"
id = 3
levels = [["pdu-1"], ["switch-1"]]
options = {{ pdu-1 = {{ plug = "3" }}, switch-1 = {{ plug = "Gi1/0/3" }} }}
"""


@pytest.fixture
def snmpsim(tmp_path: Path) -> Iterator[peer.SnmpSim]:
    """A running snmpsim switch-and-PDU with fresh writable cells."""
    yield from peer.serve(peer.SnmpSim(tmp_path / "snmpsim"))


@pytest.fixture
def snmptrapd(tmp_path: Path) -> Iterator[peer.SnmpTrapd]:
    """A running snmptrapd on a free loopback port."""
    yield from peer.serve(peer.SnmpTrapd(tmp_path / "snmptrapd"))


def _inventory(tmp_path: Path, sim: peer.SnmpSim) -> Path:
    keys = tmp_path / "keys"
    path = tmp_path / "inventory.toml"
    path.write_text(
        INVENTORY.format(
            run=tmp_path / "run",
            port=sim.port,
            community=peer.secret_file(keys, "community", peer.SIM_COMMUNITY),
            wrong=peer.secret_file(keys, "wrong", "not-the-community"),
        )
    )
    return path


def _notifier(trapd: peer.SnmpTrapd) -> notify.Notifier:
    return notify.Notifier(
        [
            notify.Destination(
                host=trapd.host,
                port=trapd.port,
                inform=True,
                credentials=SnmpCredentials(
                    version="3",
                    user=peer.INFORM_USER,
                    auth_key=Secret(peer.INFORM_AUTH),
                    priv_key=Secret(peer.INFORM_PRIV),
                ),
            )
        ]
    )


async def test_fencer_fences_through_a_pdu_outlet_and_notifies(
    snmpsim: peer.SnmpSim, snmptrapd: peer.SnmpTrapd, tmp_path: Path
) -> None:
    """Fencer switches node-b's named outlet off; snmptrapd logs it."""
    notifier = _notifier(snmptrapd)
    fencer = Fencer(
        load(_inventory(tmp_path, snmpsim)),
        on_event=notifier.on_fence_record,
    )

    try:
        outcome = await fencer.fence("node-b")
    finally:
        await fencer.close()
        await notifier.aclose()

    assert outcome.success, outcome.reason
    assert snmpsim.get(f"{OUTLET}.2") == "2"
    assert snmpsim.get(f"{OUTLET}.1") == "1"
    log = snmptrapd.wait_for('STRING: "node-b"')
    line = next(ln for ln in log.splitlines() if '"node-b"' in ln)
    assert f"OID: .{ROOT}.0.1" in line
    assert f'.{ROOT}.1.3.0 = STRING: "snmp-pdu"' in line
    assert f".{ROOT}.1.4.0 = INTEGER: 3" in line


async def test_failed_level_falls_to_the_switch_and_both_are_told(
    snmpsim: peer.SnmpSim, snmptrapd: peer.SnmpTrapd, tmp_path: Path
) -> None:
    """Ignored outlet, refused port: fence fails, fenceFailed logged."""
    notifier = _notifier(snmptrapd)
    fencer = Fencer(
        load(_inventory(tmp_path, snmpsim)),
        on_event=notifier.on_fence_record,
    )

    try:
        outcome = await fencer.fence("node-c")
    finally:
        await fencer.close()
        await notifier.aclose()

    assert not outcome.success
    assert "level 1" in str(outcome.reason)
    assert "not confirmed off" in str(outcome.reason)
    assert "notWritable" in str(outcome.reason)
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.3") == "1"
    log = snmptrapd.wait_for('STRING: "node-c"')
    line = next(ln for ln in log.splitlines() if '"node-c"' in ln)
    assert f"OID: .{ROOT}.0.2" in line
    assert "notWritable" in line


async def test_device_check_failure_is_notified(
    snmpsim: peer.SnmpSim, snmptrapd: peer.SnmpTrapd, tmp_path: Path
) -> None:
    """A device failing its check is logged as deviceUnreachable."""
    notifier = _notifier(snmptrapd)
    fencer = Fencer(load(_inventory(tmp_path, snmpsim)))

    try:
        results = await fencer.check(on_result=notifier.on_device_check)
    finally:
        await fencer.close()
        await notifier.aclose()

    by_name = {r.device: r for r in results}
    assert by_name["pdu-1"].ok, by_name["pdu-1"].reason
    assert by_name["switch-1"].ok, by_name["switch-1"].reason
    assert not by_name["pdu-wrong"].ok
    log = snmptrapd.wait_for(f"OID: .{ROOT}.0.5")
    line = next(ln for ln in log.splitlines() if f".{ROOT}.0.5" in ln)
    assert "no answer" in line or "no SNMP answer" in line
    assert f'.{ROOT}.1.3.0 = STRING: "snmp-pdu"' in line
