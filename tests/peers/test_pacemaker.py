"""fencekit's agents as Pacemaker sees them: stonith_admin, crm_resource,
ocf-tester, and a live single-node cluster fencing a second node whose
BMC is ipmi_sim."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit.integrations import agents
from tests.support import peers
from tests.support.ipmisim import IpmiSim
from tests.support.pacemaker import Cluster, installed_agents, run

OCF_AGENT = "/usr/lib/ocf/resource.d/fencekit/check"


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    """The agents installed where Pacemaker looks, for this module."""
    with installed_agents():
        yield


@pytest.fixture
def tcp_service() -> Iterator[int]:
    """A TCP service on loopback for the OCF check to watch."""

    class Quiet(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            pass

    server = socketserver.ThreadingTCPServer((peers.LOOPBACK, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", agents.agent_names())
def test_stonith_admin_metadata(installed: None, name: str) -> None:
    """stonith_admin --metadata prints the agent's metadata."""
    stonith_admin = peers.require("stonith_admin")

    done = run(stonith_admin, "--metadata", "--agent", name)

    assert done.returncode == 0, done.stderr
    assert f'resource-agent name="{name}"' in done.stdout


def test_stonith_admin_validate_accepts(installed: None) -> None:
    """stonith_admin --validate passes a complete configuration."""
    stonith_admin = peers.require("stonith_admin")

    done = run(
        stonith_admin,
        "--validate",
        "--agent",
        "fence_fencekit_ipmi",
        "--option",
        "ip=127.0.0.1:6230",
        "--option",
        "username=admin",
        "--option",
        "password_script=/bin/true",
        "--option",
        "lanplus=yes",
    )

    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["ip=127.0.0.1", "password=x"], "username: required"),
        (["username=a", "password=x"], "ip: required"),
        (["ip=h", "username=a", "password=x", "lanplus=maybe"], "lanplus"),
        (["ip=h", "username=a", "password=x", "delay=soon"], "delay"),
        (["ip=h", "username=a", "password=x", "host_map=node1"], "host_map"),
    ],
)
def test_stonith_admin_validate_rejects(
    installed: None, options: list[str], reason: str
) -> None:
    """Invalid options make stonith_admin --validate fail, with the
    reason in its output."""
    stonith_admin = peers.require("stonith_admin")
    argv = [stonith_admin, "--validate", "--agent", "fence_fencekit_ipmi"]
    for option in options:
        argv += ["--option", option]

    done = run(*argv)

    assert done.returncode != 0
    assert reason in done.stdout + done.stderr


def test_crm_resource_validates_ocf_agent(
    installed: None, tcp_service: int
) -> None:
    """crm_resource --validate runs the OCF agent's validate-all."""
    crm_resource = peers.require("crm_resource")
    options = f'host = "127.0.0.1", port = {tcp_service}'

    good = run(
        crm_resource,
        "--validate",
        "--class",
        "ocf",
        "--provider",
        "fencekit",
        "--agent",
        "check",
        "--option",
        "probe=tcp",
        "--option",
        f"options={options}",
    )
    bad = run(
        crm_resource,
        "--validate",
        "--class",
        "ocf",
        "--provider",
        "fencekit",
        "--agent",
        "check",
        "--option",
        "probe=warp",
    )

    assert good.returncode == 0, good.stdout + good.stderr
    assert bad.returncode != 0
    assert "warp" in bad.stdout + bad.stderr


def test_ocf_tester_passes(
    installed: None, tcp_service: int, tmp_path: Path
) -> None:
    """ocf-tester passes the OCF agent watching a live TCP service."""
    ocf_tester = peers.require("ocf-tester")
    options = f'host = "127.0.0.1", port = {tcp_service}'

    done = run(
        ocf_tester,
        "-n",
        "fk-check",
        "-o",
        "probe=tcp",
        "-o",
        f"options={options}",
        "-o",
        f"state_dir={tmp_path}",
        OCF_AGENT,
        timeout=180,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed all tests" in done.stdout + done.stderr


def _stonith_device(sim: IpmiSim, other: IpmiSim, journal: Path) -> str:
    # One device for the cluster, its BMCs in host_map; Pacemaker asks
    # the agent's list action which nodes it can fence.
    attrs = {
        "host_map": f"node-b={sim.host}:{sim.port};"
        f"node-c={other.host}:{other.port}",
        "username": sim.user,
        "password_file": str(sim.password_file()),
        "journal": str(journal),
        "power_timeout": "20",
        "pcmk_host_check": "dynamic-list",
    }
    pairs = "".join(
        f'<nvpair id="fence-node-b-{k}" name="{k}" value="{v}"/>'
        for k, v in attrs.items()
    )
    return (
        '<primitive id="fence-node-b" class="stonith"'
        ' type="fence_fencekit_ipmi">'
        f'<instance_attributes id="fence-node-b-ia">{pairs}'
        "</instance_attributes></primitive>"
    )


def test_live_cluster_fences_node_b(
    installed: None, ipmi_sim_factory: Any, tmp_path: Path
) -> None:
    """A live cluster fences node-b through fence_fencekit_ipmi: its BMC
    powers off (node-c's stays on), Pacemaker's history and fencekit's
    journal record it."""
    from fencekit.journal import read

    ipmi_sim, node_c = ipmi_sim_factory("node-b"), ipmi_sim_factory("node-c")
    journal = tmp_path / "journal.jsonl"
    cluster = Cluster().start()
    try:
        cluster.cib_create(
            "resources", _stonith_device(ipmi_sim, node_c, journal)
        )
        cluster.wait(
            lambda: (
                "fence-node-b"
                in run(cluster.stonith_admin, "--list-registered").stdout
            ),
            90,
            "the fence device to be registered",
        )

        fenced = run(
            cluster.stonith_admin,
            "--fence",
            "node-b",
            "--timeout",
            "90",
            timeout=120,
        )
        history = run(cluster.stonith_admin, "--history", "node-b")
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()

    assert fenced.returncode == 0, fenced.stderr + cluster.logs()
    assert ipmi_sim.ipmitool_status() == "off"
    assert ipmi_sim.commands() == ["power=0"]
    assert node_c.commands() == []
    assert node_c.ipmitool_status() == "on"
    assert "node-b" in history.stdout
    assert "successful" in history.stdout.lower(), history.stdout
    records = read(journal).records
    outcome = [r for r in records if r["event"] == "outcome"]
    assert len(outcome) == 1, records
    assert outcome[0]["node"] == "node-b"
    assert outcome[0]["action"] == "off"
    assert outcome[0]["success"] is True
    assert outcome[0]["state"] == "off"


def test_no_cluster_left_running() -> None:
    """After the live test no corosync runs and no CIB is left behind."""
    assert not run("pgrep", "-x", "corosync").stdout
    assert not list(Path("/var/lib/pacemaker/cib").glob("cib*"))
