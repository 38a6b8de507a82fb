"""A database password never shows in the agent's argv, logs, metrics
or /probe output."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.test_agent import AgentProcess
from tests.support.db import Postgres
from tests.support.peers import LOOPBACK, free_port, wait_until

CANARY = "canary-Pw-5f1e0c2d"


@pytest.fixture
def pg() -> Iterator[Postgres]:
    """A PostgreSQL server that will refuse the canary password."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.remove()


def test_canary_password_is_never_printed(
    tmp_path: Path, pg: Postgres
) -> None:
    """A failing postgres check leaks the password nowhere we can see."""
    secret = tmp_path / "pg.pass"
    secret.write_text(CANARY + "\n")
    secret.chmod(0o600)
    port = free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
[agent]
listen = "{LOOPBACK}:{port}"

[checks.pg]
kind = "postgres"
host = "{LOOPBACK}"
port = {pg.port}
password_file = "{secret}"
interval = 0.2
down_after = 1

[modules.pg]
kind = "postgres"
password_file = "{secret}"
"""
    )
    agent = AgentProcess(config, port)
    try:
        wait_until(
            lambda: (
                agent.value("fencekit_check_up", check="pg", kind="postgres")
                == 0
                and agent.value(
                    "fencekit_check_failures_total",
                    check="pg",
                    kind="postgres",
                )
                not in (None, 0.0)
            ),
            60,
            "the pg check to fail",
        )
        metrics = agent.get("/metrics")
        probe = agent.get(f"/probe?module=pg&target={LOOPBACK}:{pg.port}")
        argv = subprocess.run(
            ["ps", "-eo", "args"], capture_output=True, text=True
        ).stdout
        reason_seen = "password authentication failed" in agent.log.read_text()
    finally:
        agent.stop()
    log = agent.log.read_text()

    assert reason_seen
    assert "probe_success 0.0" in probe
    for text in (metrics, probe, argv, log):
        assert CANARY not in text
