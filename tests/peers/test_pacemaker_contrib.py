"""The operators' kit beside the cluster agents: the systemd unit, the
Grafana dashboard against a running agent's /metrics, the LifeKeeper
scripts against a real service, and the example inventories."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit.config import parse
from tests.support import peers
from tests.support.http import HttpServer

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket on loopback: an application that is up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((peers.LOOPBACK, 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the agent's unit."""
    analyze = peers.require("systemd-analyze")
    unit = tmp_path / "fencekit-agent.service"
    text = (CONTRIB / "systemd" / "fencekit-agent.service").read_text()
    # verify checks that ExecStart exists: point it at this fencekit.
    unit.write_text(text.replace("/usr/local/bin/fencekit", FENCEKIT))

    done = subprocess.run(
        [analyze, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "fencekit-agent.service" not in done.stderr, done.stderr


def _dashboard_metrics() -> set[str]:
    data = json.loads(
        (CONTRIB / "grafana" / "fencekit-dashboard.json").read_text()
    )
    exprs = [
        target["expr"]
        for panel in data["panels"]
        for target in panel.get("targets", [])
    ]
    exprs += [
        variable["definition"]
        for variable in data["templating"]["list"]
        if "definition" in variable
    ]
    return {
        name
        for expr in exprs
        for name in re.findall(r"\b(fencekit_[a-z_]+|probe_[a-z_]+)", expr)
    }


def _exposed(text: str) -> set[str]:
    """Every sample name, and every family named by HELP or TYPE."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE ") or line.startswith("# HELP "):
            family = line.split()[2]
            names.add(family)
            names.update(
                family + suffix
                for suffix in ("_total", "_bucket", "_sum", "_count")
            )
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _scrape(port: int) -> str | None:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ) as response:
            text: str = response.read().decode()
    except OSError:
        return None
    return (
        text if "fencekit_check_last_run_timestamp_seconds{" in text else None
    )


def test_dashboard_metrics_exist_in_agent_metrics(
    tmp_path: Path, listener: socket.socket
) -> None:
    """Every metric the Grafana dashboard queries is on a running
    agent's /metrics (an HTTPS check and a TCP check configured)."""
    web = HttpServer(tmp_path / "web", tls=True).start()
    port = peers.free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nlisten = "127.0.0.1:{port}"\n\n'
        f'[checks.web]\nkind = "http"\nurl = "{web.url}health"\n'
        f'ca_file = "{web.ca_file}"\ninterval = 0.5\n\n'
        f'[checks.app]\nkind = "tcp"\nhost = "127.0.0.1"\n'
        f"port = {listener.getsockname()[1]}\ninterval = 0.5\n"
    )
    agent = subprocess.Popen(
        [FENCEKIT, "agent", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    scraped: list[str] = []
    try:
        peers.wait_until(
            lambda: bool(scraped.append(_scrape(port) or "") or scraped[-1]),
            30,
            "the agent's /metrics with both checks",
        )
    finally:
        os.kill(agent.pid, signal.SIGTERM)
        agent.wait(timeout=30)
        web.stop()

    missing = _dashboard_metrics() - _exposed(scraped[-1])

    assert not missing, f"dashboard names absent from /metrics: {missing}"


def _lifekeeper(
    script: str, tag: str, conf_dir: Path
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FENCEKIT_LK_CONF_DIR=str(conf_dir))
    flag = "-t" if script == "quickCheck" else "-d"
    return subprocess.run(
        [str(CONTRIB / "lifekeeper" / script), flag, tag, "-i", tag],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def _lk_conf(folder: Path, tag: str, port: int, restart: str) -> None:
    folder.mkdir(exist_ok=True)
    (folder / f"{tag}.conf").write_text(
        f"FENCEKIT={FENCEKIT}\n"
        f'FENCEKIT_PROBE="tcp 127.0.0.1 {port} --timeout 2"\n'
        f'FENCEKIT_RESTART="{restart}"\n'
        "FENCEKIT_RECOVER_TIMEOUT=20\nFENCEKIT_RECOVER_INTERVAL=1\n"
    )


def test_lifekeeper_quickcheck(
    listener: socket.socket, tmp_path: Path
) -> None:
    """quickCheck exits 0 while the application answers, 1 once not."""
    port = listener.getsockname()[1]
    _lk_conf(tmp_path / "lk", "app", port, "true")

    up = _lifekeeper("quickCheck", "app", tmp_path / "lk")
    listener.close()
    down = _lifekeeper("quickCheck", "app", tmp_path / "lk")

    assert up.returncode == 0, up.stderr
    assert down.returncode == 1
    assert "app is unhealthy" in down.stderr


def test_lifekeeper_recover_restarts(tmp_path: Path) -> None:
    """recover runs the restart command and exits 0 once the probe
    passes; with a restart that brings nothing up, it exits 1."""
    port = peers.free_port()
    pid_file = tmp_path / "server.pid"
    restart = (
        f"{sys.executable} -m http.server {port} --bind 127.0.0.1"
        f" >/dev/null 2>&1 & echo \\$! > {pid_file}"
    )
    _lk_conf(tmp_path / "lk", "web", port, restart)
    _lk_conf(tmp_path / "lk2", "dead", peers.free_port(), "true")
    (tmp_path / "lk2" / "dead.conf").write_text(
        (tmp_path / "lk2" / "dead.conf")
        .read_text()
        .replace("FENCEKIT_RECOVER_TIMEOUT=20", "FENCEKIT_RECOVER_TIMEOUT=1")
    )

    try:
        recovered = _lifekeeper("recover", "web", tmp_path / "lk")
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
    failed = _lifekeeper("recover", "dead", tmp_path / "lk2")

    assert recovered.returncode == 0, recovered.stderr
    assert "web recovered" in recovered.stdout
    assert failed.returncode == 1
    assert "still unhealthy" in failed.stderr


def test_lifekeeper_stonith_lines_name_fencekit_fence() -> None:
    """Each stonith.conf line is a node name and a fencekit fence of
    that same node, with no password on it."""
    text = (CONTRIB / "lifekeeper" / "stonith.conf.example").read_text()
    lines = [
        line for line in text.splitlines() if line and not line.startswith("#")
    ]

    assert lines
    for line in lines:
        node, command = line.split(maxsplit=1)
        assert command.split()[1:3] == ["fence", node]
        assert "-P" not in command.split()
        assert "password" not in command


def _with_readable_credentials(data: Any, folder: Path) -> Any:
    password = folder / "pw"
    password.write_text("x\n")
    for device in data["devices"].values():
        if "password_file" in device:
            device["password_file"] = str(password)
    return data


def test_two_node_inventory_with_ipmi_then_scsi(tmp_path: Path) -> None:
    """The two-node example parses: IPMI at level 1, SCSI at level 2."""
    example = CONTRIB / "inventory-two-node-ipmi-scsi.toml"
    data = _with_readable_credentials(
        tomllib.loads(example.read_text()), tmp_path
    )

    inventory = parse(data, source=example)

    assert set(inventory.nodes) == {"node-a", "node-b"}
    for node in inventory.nodes.values():
        drivers = [
            [inventory.devices[name].driver for name in level]
            for level in node.levels
        ]
        assert drivers == [["ipmi"], ["scsi"]]


def test_irmc_inventory(tmp_path: Path) -> None:
    """The iRMC example parses with the registered irmc driver."""
    example = CONTRIB / "inventory-irmc.toml"
    data = _with_readable_credentials(
        tomllib.loads(example.read_text()), tmp_path
    )

    inventory = parse(data, source=example)

    assert {d.driver for d in inventory.devices.values()} == {"irmc"}
    assert set(inventory.nodes) == {"px1", "px2"}
