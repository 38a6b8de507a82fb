"""fence_fencekit_snmp_pdu and fence_fencekit_snmp_port, run as
Pacemaker runs them, against snmpsim (an APC-style PDU and a switch)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import snmp as peer

AGENTS = Path(__file__).resolve().parents[2] / "agents"
OUTLET = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
ADMIN_STATUS = "1.3.6.1.2.1.2.2.1.7"


@pytest.fixture(scope="module")
def snmpsim(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[peer.SnmpSim]:
    """One snmpsim for the module; each test uses its own outlet/port."""
    yield from peer.serve(peer.SnmpSim(tmp_path_factory.mktemp("snmpsim")))


def agent(name: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """Run one agent in a process of its own, options on stdin."""
    return subprocess.run(
        [sys.executable, str(AGENTS / name)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def device(sim: peer.SnmpSim, plug: str) -> str:
    """A stonith device on the simulated PDU/switch, v2c."""
    return (
        f"ip={sim.host}:{sim.port}\ncommunity={peer.SIM_COMMUNITY}\n"
        f"port={plug}\npower_timeout=10\nstonith_status_sleep=0.1\n"
    )


def test_pdu_off_by_outlet_name(snmpsim: peer.SnmpSim) -> None:
    """off of outlet 'node-b' (resolved by name) is verified; the
    outlet reads off through net-snmp's snmpget."""
    done = agent(
        "fence_fencekit_snmp_pdu",
        "action=off\nnodename=node-b\n" + device(snmpsim, "node-b"),
    )

    assert done.returncode == 0, done.stderr
    assert "off node-b verified" in done.stdout
    assert snmpsim.get(f"{OUTLET}.2") == "2"


def test_pdu_status(snmpsim: peer.SnmpSim) -> None:
    """status of an outlet that is on exits 0."""
    done = agent(
        "fence_fencekit_snmp_pdu", "action=status\n" + device(snmpsim, "1")
    )

    assert (done.returncode, done.stdout) == (0, "Status: ON\n")


def test_pdu_accepted_but_not_carried_out_fails(
    snmpsim: peer.SnmpSim,
) -> None:
    """An outlet that accepts the SET and stays on: exit 1, not a
    success."""
    done = agent(
        "fence_fencekit_snmp_pdu", "action=off\n" + device(snmpsim, "3")
    )

    assert done.returncode == 1
    assert "not confirmed" in done.stderr
    assert snmpsim.get(f"{OUTLET}.3") == "1"


def test_switch_port_off_with_community_file(
    snmpsim: peer.SnmpSim, tmp_path: Path
) -> None:
    """The switch-port agent sets the port down; community from a file."""
    community = peer.secret_file(tmp_path, "community", peer.SIM_COMMUNITY)
    options = device(snmpsim, "Gi1/0/1").replace(
        f"community={peer.SIM_COMMUNITY}\n", f"community_file={community}\n"
    )

    done = agent("fence_fencekit_snmp_port", "action=off\n" + options)

    assert done.returncode == 0, done.stderr
    assert snmpsim.get(f"{ADMIN_STATUS}.1") == "2"


def test_monitor_without_plug(snmpsim: peer.SnmpSim) -> None:
    """monitor needs no plug: the device answers with the community."""
    options = device(snmpsim, "1").replace("port=1\n", "")

    done = agent("fence_fencekit_snmp_pdu", "action=monitor\n" + options)

    assert done.returncode == 0, done.stderr


def test_wrong_community_fails(snmpsim: peer.SnmpSim) -> None:
    """A community the device does not know: exit 1, nothing switched."""
    options = device(snmpsim, "2").replace(
        f"community={peer.SIM_COMMUNITY}", "community=Canary-snmp-91"
    )
    options = options.replace("power_timeout=10", "power_timeout=3")

    done = agent("fence_fencekit_snmp_pdu", "action=status\n" + options)

    assert done.returncode == 1
    assert "Canary-snmp-91" not in done.stdout + done.stderr


def test_community_refused_on_command_line() -> None:
    """The community is a secret: refused on the agent's command line."""
    done = subprocess.run(
        [
            sys.executable,
            str(AGENTS / "fence_fencekit_snmp_pdu"),
            "--ip=127.0.0.1",
            "--community=Canary-snmp-92",
            "-o",
            "status",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert "command line" in done.stderr
    assert "Canary-snmp-92" not in done.stderr
