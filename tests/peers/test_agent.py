"""The agent as a process: checks against real servers, /metrics, /probe,
actions, the fencer, reload and stop."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fencer import write_inventory
from tests.support.http import HttpServer
from tests.support.ipmisim import IpmiSim
from tests.support.peers import LOOPBACK, free_port, require, wait_until

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "multipath"
RULES = ROOT / "contrib" / "prometheus" / "fencekit.rules.yml"

INTERVAL = 0.5
DOWN_AFTER = 3
TIMEOUT = 1.0


class AgentProcess:
    """``fencekit agent`` in a child process on a free port."""

    def __init__(self, config: Path, port: int) -> None:
        self.config = config
        self.port = port
        self.log = config.parent / "agent.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fencekit.cli",
                    "agent",
                    "--config",
                    str(config),
                ],
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._serving, 30, "the agent to serve /metrics")

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"agent exited: {self.log.read_text()}")
        try:
            self.get("/-/healthy")
        except OSError:
            return False
        return True

    def get(self, path: str) -> str:
        """GET ``path`` from the agent; the body as text."""
        url = f"http://{LOOPBACK}:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            body: bytes = answer.read()
        return body.decode()

    def metrics(self) -> dict[tuple[str, frozenset[Any]], float]:
        """Every sample of /metrics by name and labels."""
        text = self.get("/metrics")
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        """One sample's value, or None."""
        return self.metrics().get((name, frozenset(labels.items())))

    def signal(self, number: int) -> None:
        """Send a signal by PID."""
        os.kill(self.process.pid, number)

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[list[HttpServer]]:
    """HTTP servers the test starts; stopped afterwards."""
    started: list[HttpServer] = []
    yield started
    for server in started:
        server.stop()


@pytest.fixture
def agents() -> Iterator[list[AgentProcess]]:
    """Agent processes the test starts; stopped afterwards."""
    started: list[AgentProcess] = []
    yield started
    for agent in started:
        agent.stop()


def start_server(
    servers: list[HttpServer], folder: Path, **kwargs: Any
) -> HttpServer:
    """Start one HTTP server and keep it for clean-up."""
    server = HttpServer(folder, **kwargs)
    servers.append(server.start())
    return server


def config_text(web: HttpServer, silent: HttpServer, events: Path) -> str:
    """An agent configuration: a web check, a hung one, an action."""
    script = (
        'env | grep "^FENCEKIT_EVENT_" | sort'
        ' > "$0/.part$$"'
        ' && mv "$0/.part$$"'
        ' "$0/$FENCEKIT_EVENT_CHECK-$FENCEKIT_EVENT_STATE.env"'
    )
    return f"""
[agent]
listen = "{LOOPBACK}:{{port}}"

[defaults]
interval = {INTERVAL}
timeout = {TIMEOUT}
down_after = {DOWN_AFTER}
up_after = 2

[checks.web]
kind = "http"
url = "{web.url}health"
body_regex = "fencekit-ok"
actions = ["record"]

[checks.silent]
kind = "http"
url = "{silent.url}"
timeout = 0.3

[checks.paths]
kind = "multipath"
input_file = "{FIXTURES / "maps.json"}"

[actions.record]
type = "command"
command = ["sh", "-c", '{script}', "{events}"]
on = ["down", "up"]

[modules.http_2xx]
kind = "http"
timeout = 5
"""


def start_agent(
    agents: list[AgentProcess], folder: Path, text: str
) -> AgentProcess:
    """Write the configuration, start an agent on a free port."""
    port = free_port()
    config = folder / "agent.toml"
    config.write_text(text.replace("{port}", str(port)))
    agent = AgentProcess(config, port)
    agents.append(agent)
    return agent


def read_env(path: Path) -> dict[str, str]:
    """The FENCEKIT_EVENT_* lines an action wrote."""
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_service_killed_and_recovered(
    tmp_path: Path,
    servers: list[HttpServer],
    agents: list[AgentProcess],
) -> None:
    """Killed: down within interval x threshold + timeout, then up again;
    the action gets each event; a hung check delays nothing."""
    web = start_server(servers, tmp_path / "web")
    silent = start_server(servers, tmp_path / "silent", mode="hang")
    events = tmp_path / "events"
    events.mkdir()
    agent = start_agent(agents, tmp_path, config_text(web, silent, events))
    up_file = events / "web-up.env"
    wait_until(up_file.exists, 30, "the web check to be up")
    runs_before = agent.value(
        "fencekit_check_runs_total", check="web", kind="http"
    )

    killed_at = time.time()
    web.kill()
    down_file = events / "web-down.env"
    wait_until(down_file.exists, 30, "the web check to be down")
    down = read_env(down_file)

    detection = float(down["FENCEKIT_EVENT_TIME"]) - killed_at
    assert detection <= INTERVAL * DOWN_AFTER + TIMEOUT
    assert down["FENCEKIT_EVENT_PREVIOUS"] == "up"
    assert down["FENCEKIT_EVENT_STREAK"] == str(DOWN_AFTER)
    assert down["FENCEKIT_EVENT_REASON"].startswith("connect:")
    assert agent.value("fencekit_check_up", check="web", kind="http") == 0

    up_file.unlink()
    start_server(servers, tmp_path / "web2", port=web.port)
    wait_until(up_file.exists, 30, "the web check to be up again")
    assert read_env(up_file)["FENCEKIT_EVENT_PREVIOUS"] == "down"

    # While the silent server hung every run of its check, the web
    # check kept its schedule.
    runs_after = agent.value(
        "fencekit_check_runs_total", check="web", kind="http"
    )
    assert runs_before is not None and runs_after is not None
    assert runs_after - runs_before >= DOWN_AFTER + 2
    assert agent.value("fencekit_check_up", check="silent", kind="http") == 0
    changes = agent.value(
        "fencekit_check_state_changes_total",
        check="web",
        kind="http",
        state="down",
    )
    assert changes == 1
    assert agent.stop() == 0
    lines = [
        line
        for line in agent.log.read_text().splitlines()
        if '"check_state_changed"' in line and '"check": "web"' in line
    ]
    assert len(lines) == 3  # unknown -> up, up -> down, down -> up


def test_metrics_pass_promtool_and_cover_the_rules(
    tmp_path: Path,
    servers: list[HttpServer],
    agents: list[AgentProcess],
) -> None:
    """/metrics passes promtool; every name in contrib rules exists."""
    promtool = require("promtool")
    web = start_server(servers, tmp_path / "web", tls=True)
    silent = start_server(servers, tmp_path / "silent", mode="hang")
    text = config_text(web, silent, tmp_path).replace(
        'body_regex = "fencekit-ok"', f'ca_file = "{web.ca_file}"'
    )
    agent = start_agent(agents, tmp_path, text)
    wait_until(
        lambda: (
            agent.value("fencekit_check_up", check="web", kind="http") == 1
        ),
        30,
        "the web check to be up",
    )

    exposition = agent.get("/metrics")
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        input=exposition,
        capture_output=True,
        text=True,
    )
    rules = subprocess.run(
        [promtool, "check", "rules", str(RULES)],
        capture_output=True,
        text=True,
    )

    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The exposition's own names: a family without samples yet (no
    # fence so far) still has its TYPE line.
    names = set(re.findall(r"^# TYPE (\S+) ", exposition, re.M))
    for name in rule_metric_names(RULES.read_text()):
        assert name in names, f"{name} is used in {RULES.name}"
    expiry = agent.value(
        "fencekit_tls_certificate_expiry_timestamp_seconds", check="web"
    )
    assert expiry is not None and expiry > time.time()
    assert agent.value("fencekit_collector_success", collector="checks") == 1


def rule_metric_names(text: str) -> set[str]:
    """Metric names an alerting rules file refers to."""
    exprs = re.findall(
        r"expr:\s*(?:\|\s*\n)?(.+?)(?:\n\s+\w+:|\Z)", text, re.S
    )
    words = set()
    for expr in exprs:
        words |= set(re.findall(r"\b(fencekit_[a-z0-9_]+)\b", expr))
    return words


def test_probe_endpoint(
    tmp_path: Path,
    servers: list[HttpServer],
    agents: list[AgentProcess],
) -> None:
    """/probe runs a module against a target in blackbox's manner."""
    web = start_server(servers, tmp_path / "web")
    silent = start_server(servers, tmp_path / "silent", mode="hang")
    agent = start_agent(agents, tmp_path, config_text(web, silent, tmp_path))

    good = agent.get(f"/probe?module=http_2xx&target={web.url}health")
    bad = agent.get(
        f"/probe?module=http_2xx&target=http://{LOOPBACK}:{free_port()}/"
    )
    with pytest.raises(urllib.error.HTTPError) as unknown:
        agent.get(f"/probe?module=nope&target={web.url}")

    assert "probe_success 1.0" in good
    assert "probe_http_status_code 200.0" in good
    assert "probe_duration_seconds" in good
    assert "probe_success 0.0" in bad
    assert unknown.value.code == 400
    unknown.value.close()


def test_reload_keeps_old_config_when_invalid(
    tmp_path: Path,
    servers: list[HttpServer],
    agents: list[AgentProcess],
) -> None:
    """SIGHUP: a bad file is refused and the agent keeps running; a good
    one is taken."""
    web = start_server(servers, tmp_path / "web")
    silent = start_server(servers, tmp_path / "silent", mode="hang")
    agent = start_agent(agents, tmp_path, config_text(web, silent, tmp_path))
    good = agent.config.read_text()

    agent.config.write_text(good + "\n[checks.broken]\nkind = 'nope'\n")
    agent.signal(signal.SIGHUP)
    wait_until(
        lambda: agent.value("fencekit_agent_config_reload_success") == 0,
        30,
        "the reload to fail",
    )
    assert (
        agent.value("fencekit_check_up", check="web", kind="http") is not None
    )
    assert "config_reload_failed" in agent.log.read_text()

    agent.config.write_text(good.replace("[checks.silent]", "[checks.quiet]"))
    agent.signal(signal.SIGHUP)
    wait_until(
        lambda: (
            agent.value("fencekit_agent_config_reload_success") == 1
            and agent.value("fencekit_check_up", check="quiet", kind="http")
            is not None
        ),
        30,
        "the reload to succeed",
    )
    assert (
        agent.value("fencekit_check_up", check="silent", kind="http") is None
    )
    assert agent.stop() == 0


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    """A bad configuration exits 2 with one line naming file and key."""
    config = tmp_path / "agent.toml"
    config.write_text("[checks.w]\nkind = 'http'\nurl = 5\n")

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fencekit.cli",
            "agent",
            "--config",
            str(config),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2
    assert done.stderr == (
        f"fencekit: error: {config}: checks.w.url: must be a string\n"
    )


def test_fence_action_through_the_fencer(
    tmp_path: Path,
    servers: list[HttpServer],
    agents: list[AgentProcess],
    ipmi_sim_factory: Callable[..., IpmiSim],
) -> None:
    """A node's service dies: the agent asks the fencer, which turns the
    node off through its BMC and verifies it."""
    sims = {"node-b": ipmi_sim_factory("node-b")}
    inventory = write_inventory(tmp_path / "inv" / "inventory.toml", sims)
    web = start_server(servers, tmp_path / "web")
    text = f"""
[agent]
listen = "{LOOPBACK}:{{port}}"
inventory = "{inventory}"

[checks.node-b-web]
kind = "http"
url = "{web.url}health"
interval = {INTERVAL}
timeout = {TIMEOUT}
down_after = 2
node = "node-b"
actions = ["fence-it"]

[actions.fence-it]
type = "fence"
fence_action = "off"
"""
    agent = start_agent(agents, tmp_path, text)
    wait_until(
        lambda: (
            agent.value("fencekit_check_up", check="node-b-web", kind="http")
            == 1
        ),
        30,
        "the check to be up",
    )

    web.kill()
    wait_until(
        lambda: (
            agent.value(
                "fencekit_fence_operations_total",
                node="node-b",
                action="off",
                result="success",
            )
            == 1
        ),
        90,
        "the fence to be verified",
    )

    assert sims["node-b"].ipmitool_status() == "off"
    assert sims["node-b"].commands() == ["power=0"]
    assert (
        agent.value("fencekit_fence_duration_seconds_count", action="off") == 1
    )


def test_example_configuration_runs(
    tmp_path: Path, agents: list[AgentProcess]
) -> None:
    """contrib/agent.example.toml starts, probes, serves both endpoints."""
    example = (ROOT / "contrib" / "agent.example.toml").read_text()
    port = free_port()
    text = example.replace("9811", "{port}").replace("{port}", str(port))
    config = tmp_path / "agent.toml"
    config.write_text(text)
    agent = AgentProcess(config, port)
    agents.append(agent)

    wait_until(
        lambda: (
            agent.value("fencekit_check_up", check="agent-tcp", kind="tcp")
            == 1
        ),
        60,
        "the example's tcp check to be up",
    )
    probe = agent.get(
        f"/probe?module=http_2xx&target=http://{LOOPBACK}:{port}/-/healthy"
    )

    assert "probe_success 1.0" in probe
    assert agent.stop() == 0


def test_metrics_over_tls(tmp_path: Path, agents: list[AgentProcess]) -> None:
    """With tls_cert the endpoint serves HTTPS with that certificate."""
    import ssl

    import trustme

    ca = trustme.CA()
    chain = tmp_path / "agent.pem"
    ca.issue_cert(LOOPBACK).private_key_and_cert_chain_pem.write_to_path(
        str(chain)
    )
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nlisten = "{LOOPBACK}:{port}"\ntls_cert = "{chain}"\n'
        "[checks.true]\nkind = 'command'\ncommand = ['true']\n"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fencekit.cli",
            "agent",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    url = f"https://{LOOPBACK}:{port}/metrics"

    def fetch() -> str | None:
        try:
            with urllib.request.urlopen(url, context=context, timeout=10) as r:
                body: bytes = r.read()
                return body.decode()
        except OSError:
            return None

    try:
        wait_until(lambda: fetch() is not None, 30, "HTTPS /metrics")
        text = fetch()
    finally:
        process.terminate()
        process.wait(30)

    assert text is not None and "fencekit_check_up" in text
    assert process.returncode == 0
