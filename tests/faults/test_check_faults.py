"""Checks under faults: a command that hangs, a database that hangs or dies.

Each probe must come back unhealthy with a reason within its timeout
plus a margin, leave no process behind, and (for a database that comes
back) be healthy again on the next run: the agent's checks are bounded
whatever the service does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.probes import build
from fencekit.probes.base import close
from tests.support.db import PASSWORD, Postgres
from tests.support.peers import LOOPBACK

TIMEOUT = 1.5
MARGIN = 2.0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def _children_named(name: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if name.encode() in cmdline:
            found.append(int(pid))
    return found


@pytest.mark.parametrize(
    "command",
    [
        ["sleep", "600", "fk-hang-1"],
        ["sh", "-c", 'trap "" TERM; sleep 600; : fk-hang-2'],
    ],
    ids=["sleeps", "ignores-SIGTERM"],
)
async def test_command_check_that_hangs_is_bounded(command: list[str]) -> None:
    """A hung command: unhealthy within its timeout, no process left."""
    marker = command[-1].split()[-1]
    probe = build("command", {"command": command, "timeout": TIMEOUT})
    started = time.monotonic()
    outcome = await probe.run()
    took = time.monotonic() - started
    await close(probe)

    assert not outcome.healthy
    assert outcome.reason
    assert took <= TIMEOUT + MARGIN, took
    deadline = time.monotonic() + 10
    while _children_named(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _children_named(marker), "the hung command was left running"


@pytest.fixture
def pg() -> Iterator[Postgres]:
    """A PostgreSQL primary of its own."""
    server = Postgres().start()
    try:
        yield server
    finally:
        for pid in _tree(server):
            with_signal(pid, signal.SIGCONT)
        server.remove()


def _tree(server: Postgres) -> list[int]:
    """The postmaster and every backend it forked."""
    if server.pid is None:
        return []
    pids = [server.pid]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            ppid = int(Path(f"/proc/{pid}/stat").read_text().split()[3])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == server.pid:
            pids.append(int(pid))
    return pids


def with_signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _probe(pg: Postgres, tmp_path: Path) -> object:
    secret = tmp_path / "pg.pass"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    return build(
        "postgres",
        {
            "host": LOOPBACK,
            "port": pg.port,
            "password_file": str(secret),
            "timeout": TIMEOUT,
        },
    )


async def test_database_hung_mid_check_then_back(
    pg: Postgres, tmp_path: Path
) -> None:
    """Every postgres process stopped: unhealthy in time, then healthy."""
    probe = _probe(pg, tmp_path)
    try:
        first = await probe.run()  # type: ignore[attr-defined]
        assert first.healthy, first.reason

        frozen = _tree(pg)
        for pid in frozen:
            with_signal(pid, signal.SIGSTOP)
        started = time.monotonic()
        hung = await probe.run()  # type: ignore[attr-defined]
        took = time.monotonic() - started
        for pid in frozen:
            with_signal(pid, signal.SIGCONT)

        assert not hung.healthy
        assert hung.reason
        assert took <= TIMEOUT + MARGIN, took

        deadline = time.monotonic() + 20
        again = await probe.run()  # type: ignore[attr-defined]
        while not again.healthy and time.monotonic() < deadline:
            time.sleep(0.2)
            again = await probe.run()  # type: ignore[attr-defined]
        assert again.healthy, again.reason
    finally:
        await close(probe)  # type: ignore[arg-type]


async def test_database_killed_mid_check(pg: Postgres, tmp_path: Path) -> None:
    """postgres SIGKILLed under a kept connection: unhealthy, in time."""
    probe = _probe(pg, tmp_path)
    try:
        first = await probe.run()  # type: ignore[attr-defined]
        assert first.healthy, first.reason
        for pid in _tree(pg):
            with_signal(pid, signal.SIGKILL)
        pg.pid = None
        started = time.monotonic()
        dead = await probe.run()  # type: ignore[attr-defined]
        took = time.monotonic() - started
        assert not dead.healthy
        assert dead.reason
        assert took <= TIMEOUT + MARGIN, took
    finally:
        await close(probe)  # type: ignore[arg-type]
