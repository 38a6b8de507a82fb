"""The agent, configured with a trap destination, notifies snmptrapd."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.monitor import Agent, load_config
from tests.support import peers
from tests.support import snmp as peer

ROOT = "1.3.6.1.4.1.32473"


@pytest.fixture
def snmptrapd(tmp_path: Path) -> Iterator[peer.SnmpTrapd]:
    """A running snmptrapd on a free loopback port."""
    yield from peer.serve(peer.SnmpTrapd(tmp_path / "snmptrapd"))


async def test_failing_check_makes_snmptrapd_log_check_down(
    snmptrapd: peer.SnmpTrapd, tmp_path: Path
) -> None:
    """A check that fails past its threshold sends fencekitCheckDown."""
    community = peer.secret_file(tmp_path, "community", peer.COMMUNITY)
    closed = peers.free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nlisten = "127.0.0.1:{peers.free_port()}"\n\n'
        "[checks.db-port]\n"
        f'kind = "tcp"\nhost = "127.0.0.1"\nport = {closed}\n'
        'node = "node-b"\ninterval = 0.2\ntimeout = 0.5\ndown_after = 2\n\n'
        "[notifications.destinations.noc]\n"
        f'host = "127.0.0.1"\nport = {snmptrapd.port}\n'
        f'community_file = "{community}"\n'
    )
    agent = Agent(load_config(config))

    task = asyncio.create_task(agent.run())
    try:
        await asyncio.to_thread(snmptrapd.wait_for, "db-port", 30)
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)

    line = next(
        ln for ln in snmptrapd.log_text().splitlines() if "db-port" in ln
    )
    assert f"OID: .{ROOT}.0.3" in line, "fencekitCheckDown"
    assert f'.{ROOT}.1.1.0 = STRING: "node-b"' in line
    assert peer.COMMUNITY not in (tmp_path / "agent.toml").read_text()


def test_unknown_notification_key_is_named(tmp_path: Path) -> None:
    """A typo in [notifications] is a one-line error naming the key."""
    from fencekit.errors import ConfigError

    config = tmp_path / "agent.toml"
    config.write_text("[notifications]\ndestination = 1\n")

    with pytest.raises(ConfigError, match=r"notifications\.destination"):
        load_config(config)
