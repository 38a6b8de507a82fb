"""PostgreSQL and MariaDB probes against real servers on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.probes import Probe, ProbeOutcome, build
from fencekit.probes.base import close
from tests.support.db import PASSWORD, MariaDB, Postgres
from tests.support.peers import LOOPBACK


async def once(probe: Probe) -> ProbeOutcome:
    """Run ``probe`` once and release what it keeps."""
    try:
        return await probe.run()
    finally:
        await close(probe)


@pytest.fixture(scope="module")
def pg() -> Iterator[Postgres]:
    """A PostgreSQL 15 primary shared by this module's tests."""
    server = Postgres().start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def standby(pg: Postgres) -> Iterator[Postgres]:
    """A streaming standby of ``pg``."""
    server = Postgres(primary=pg).start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def maria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    """A MariaDB server shared by this module's tests."""
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    """A file holding the servers' test password."""
    path = tmp_path / "db.pass"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return str(path)


def pg_probe(server: Postgres, password_file: str, **options: object) -> Probe:
    """A postgres probe of ``server`` over TCP with the password."""
    table = {
        "host": LOOPBACK,
        "port": server.port,
        "password_file": password_file,
        **options,
    }
    return build("postgres", table)


async def test_postgres_up(pg: Postgres, password_file: str) -> None:
    """A running primary is healthy and reports it is not in recovery."""
    outcome = await once(pg_probe(pg, password_file, role="primary"))

    assert outcome.healthy, outcome.reason
    assert outcome.details["in_recovery"] is False


async def test_postgres_wrong_password(pg: Postgres, tmp_path: Path) -> None:
    """A wrong password is unhealthy, and the reason says so."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    outcome = await once(pg_probe(pg, str(wrong)))

    assert not outcome.healthy
    assert "password authentication failed" in outcome.reason
    assert "not-the-password" not in outcome.reason


async def test_postgres_query_error(pg: Postgres, password_file: str) -> None:
    """A failing query makes the probe unhealthy with the server's text."""
    probe = pg_probe(pg, password_file, query="SELECT * FROM no_such_table")

    outcome = await once(probe)

    assert not outcome.healthy
    assert "no_such_table" in outcome.reason


async def test_postgres_standby_role_and_lag(
    pg: Postgres, standby: Postgres, password_file: str
) -> None:
    """A standby passes role=standby, fails role=primary, reports lag."""
    as_standby = await once(
        pg_probe(standby, password_file, role="standby", max_lag=60)
    )
    as_primary = await once(pg_probe(standby, password_file, role="primary"))
    primary_as_standby = await once(
        pg_probe(pg, password_file, role="standby")
    )

    assert as_standby.healthy, as_standby.reason
    assert as_standby.details["in_recovery"] is True
    assert "replication_lag_seconds" in as_standby.details
    assert not as_primary.healthy
    assert as_primary.reason == "is a standby, expected a primary"
    assert not primary_as_standby.healthy


async def test_postgres_stopped_mid_run(password_file: str) -> None:
    """The same probe goes from healthy to unhealthy when pg stops."""
    server = Postgres().start()
    try:
        probe = pg_probe(server, password_file, timeout=3)
        before = await once(probe)
        server.stop()
        after = await once(probe)
    finally:
        server.remove()

    assert before.healthy, before.reason
    assert not after.healthy
    assert "refused" in after.reason or "connect" in after.reason


def maria_probe(
    server: MariaDB, password_file: str, **options: object
) -> Probe:
    """A mysql probe of ``server`` over TCP as ``fencekit``."""
    table = {
        "host": LOOPBACK,
        "port": server.port,
        "user": "fencekit",
        "password_file": password_file,
        **options,
    }
    return build("mysql", table)


async def test_mariadb_up(maria: MariaDB, password_file: str) -> None:
    """A running server is healthy and writable."""
    outcome = await once(maria_probe(maria, password_file, read_only=False))

    assert outcome.healthy, outcome.reason
    assert outcome.details["read_only"] is False


async def test_mariadb_wrong_password(maria: MariaDB, tmp_path: Path) -> None:
    """Access denied is unhealthy with the server's error code."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    outcome = await once(maria_probe(maria, str(wrong)))

    assert not outcome.healthy
    assert "(1045)" in outcome.reason
    assert "not-the-password" not in outcome.reason


async def test_mariadb_read_only(maria: MariaDB, password_file: str) -> None:
    """read_only on: read_only=true passes, read_only=false fails."""
    maria.sql("SET GLOBAL read_only = 1")
    try:
        want_ro = await once(maria_probe(maria, password_file, read_only=True))
        want_rw = await once(
            maria_probe(maria, password_file, read_only=False)
        )
    finally:
        maria.sql("SET GLOBAL read_only = 0")

    assert want_ro.healthy, want_ro.reason
    assert not want_rw.healthy
    assert want_rw.reason == "server is not writable"


async def test_mariadb_stopped_mid_run(
    tmp_path: Path, password_file: str
) -> None:
    """The same probe goes from healthy to unhealthy when it stops."""
    server = MariaDB(tmp_path / "maria").start()
    try:
        probe = maria_probe(server, password_file, timeout=3)
        before = await once(probe)
        server.stop()
        after = await once(probe)
    finally:
        server.stop()

    assert before.healthy, before.reason
    assert not after.healthy
    assert after.reason.startswith("connect:")


def fencekit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``fencekit ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def test_cli_postgres_and_mysql(
    pg: Postgres, maria: MariaDB, password_file: str
) -> None:
    """fencekit probe postgres / mysql take the password from a file."""
    common = ["--host", LOOPBACK, "--password-file", password_file]

    postgres = fencekit(
        "probe",
        "postgres",
        *common,
        "--port",
        str(pg.port),
        "--role",
        "standby",
        "--json",
    )
    mysql = fencekit(
        "probe",
        "mysql",
        *common,
        "--port",
        str(maria.port),
        "--user",
        "fencekit",
        "--writable",
    )

    assert postgres.returncode == 1
    assert json.loads(postgres.stdout)["reason"] == (
        "is a primary, expected a standby"
    )
    assert mysql.returncode == 0, mysql.stderr
    assert mysql.stdout.startswith(f"mysql://fencekit@{LOOPBACK}:")
    assert PASSWORD not in postgres.stdout + postgres.stderr + mysql.stdout
