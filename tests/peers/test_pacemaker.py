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


@pytest.fixture(scope="module")
def live(installed: None) -> Iterator[Cluster]:
    """One live single-node cluster for the tests of this module."""
    cluster = Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
    # Pacemaker's state lives in machine-wide folders: none may be left.
    assert not run("pgrep", "-x", "corosync").stdout
    assert not list(Path("/var/lib/pacemaker/cib").glob("cib*"))


def test_live_cluster_fences_node_b(
    live: Cluster, ipmi_sim_factory: Any, tmp_path: Path
) -> None:
    """A live cluster fences node-b through fence_fencekit_ipmi: its BMC
    powers off (node-c's stays on), Pacemaker's history and fencekit's
    journal record it."""
    from fencekit.journal import read

    ipmi_sim, node_c = ipmi_sim_factory("node-b"), ipmi_sim_factory("node-c")
    journal = tmp_path / "journal.jsonl"
    live.cib_create("resources", _stonith_device(ipmi_sim, node_c, journal))
    live.wait(
        lambda: (
            "fence-node-b"
            in run(live.stonith_admin, "--list-registered").stdout
        ),
        90,
        "the fence device to be registered",
    )

    fenced = run(
        live.stonith_admin, "--fence", "node-b", "--timeout", "90",
        timeout=120,
    )  # fmt: skip
    history = run(live.stonith_admin, "--history", "node-b")

    assert fenced.returncode == 0, fenced.stderr + live.logs()
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


def _check_resource(port: int, state_dir: Path) -> str:
    attrs = {
        "probe": "tcp",
        "options": f"host = &quot;127.0.0.1&quot;, port = {port}",
        "state_dir": str(state_dir),
    }
    pairs = "".join(
        f'<nvpair id="web-check-{k}" name="{k}" value="{v}"/>'
        for k, v in attrs.items()
    )
    return (
        '<primitive id="web-check" class="ocf" provider="fencekit"'
        ' type="check">'
        f'<instance_attributes id="web-check-ia">{pairs}'
        "</instance_attributes><operations>"
        '<op id="web-check-monitor" name="monitor" interval="2s"'
        ' timeout="20s"/></operations></primitive>'
    )


def _located(cluster: Cluster) -> bool:
    crm_resource = peers.require("crm_resource")
    done = run(crm_resource, "--locate", "--resource", "web-check")
    return "is running on: node-a" in done.stdout


def _failures(cluster: Cluster) -> int:
    crm_failcount = peers.require("crm_failcount")
    done = run(
        crm_failcount, "--query", "--quiet", "--resource", "web-check",
        "--node", "node-a",
    )  # fmt: skip
    value = done.stdout.strip()
    if value.upper() == "INFINITY":
        return 1_000_000
    return int(value) if value.isdigit() else 0


def test_live_cluster_watches_a_service_through_a_check(
    live: Cluster, tmp_path: Path
) -> None:
    """ocf:fencekit:check starts while the service answers; when the
    service stops, its monitor fails and Pacemaker counts the failure."""
    import socket

    service = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    service.bind((peers.LOOPBACK, 0))
    service.listen(16)
    port = service.getsockname()[1]
    tmp_path.chmod(0o755)
    try:
        live.cib_create("resources", _check_resource(port, tmp_path))
        live.wait(lambda: _located(live), 90, "web-check to start")
        assert _failures(live) == 0
    finally:
        service.close()

    live.wait(lambda: _failures(live) > 0, 90, "a failed monitor")
