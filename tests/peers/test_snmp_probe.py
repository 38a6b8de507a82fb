"""The SNMP check against net-snmp's snmpd on loopback (v2c and v3)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit import probes
from fencekit.errors import ConfigError
from fencekit.probes.base import close
from tests.support import snmp as peer

SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYS_LOCATION = "1.3.6.1.2.1.1.6.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_SERVICES = "1.3.6.1.2.1.1.7.0"


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[peer.Snmpd]:
    """A running snmpd on a free loopback port."""
    yield from peer.serve(peer.Snmpd(tmp_path / "snmpd"))


def _v2c(agent: peer.Snmpd, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    community = peer.secret_file(tmp_path, "community", peer.COMMUNITY)
    return {
        "host": agent.host,
        "port": agent.port,
        "community_file": str(community),
        "timeout": 5,
        **extra,
    }


def _v3(
    agent: peer.Snmpd,
    tmp_path: Path,
    *,
    user: str = peer.AGENT_USER,
    auth_protocol: str = "sha",
    auth: str = peer.AGENT_AUTH,
    **extra: Any,
) -> dict[str, Any]:
    keys = tmp_path / "keys"
    return {
        "host": agent.host,
        "port": agent.port,
        "version": "3",
        "user": user,
        "auth_protocol": auth_protocol,
        "auth_key_file": str(peer.secret_file(keys, "auth", auth)),
        "priv_protocol": "aes",
        "priv_key_file": str(peer.secret_file(keys, "priv", peer.AGENT_PRIV)),
        "timeout": 5,
        **extra,
    }


EXPECT_HEALTHY = [
    {"oid": SYS_NAME, "equals": "fk-snmpd", "name": "name"},
    {"oid": SYS_UPTIME, "min": 0, "max": 10**9, "name": "uptime"},
    {"oid": SYS_LOCATION, "matches": "^fencekit-"},
]


async def test_v2c_check_passes_every_comparison(
    snmpd: peer.Snmpd, tmp_path: Path
) -> None:
    """A v2c check with equals, range and pattern is healthy."""
    probe = probes.build(
        "snmp", _v2c(snmpd, tmp_path, expect=EXPECT_HEALTHY), "checks.sys"
    )

    try:
        outcome = await probe.run()
    finally:
        await close(probe)

    assert outcome.healthy, outcome.reason
    assert outcome.kind == "snmp"
    assert outcome.details["name"] == "fk-snmpd"
    assert isinstance(outcome.details["uptime"], int)
    assert outcome.details[SYS_LOCATION] == "fencekit-lab"


@pytest.mark.parametrize(
    ("user", "protocol", "privacy"),
    [
        (peer.AGENT_USER, "sha", "aes"),
        (peer.AGENT_USER + "256", "sha256", "aes"),
        (peer.AGENT_USER + "512", "sha512", "aes256"),
    ],
)
async def test_v3_authpriv_check(
    snmpd: peer.Snmpd,
    tmp_path: Path,
    user: str,
    protocol: str,
    privacy: str,
) -> None:
    """v3 authPriv checks (SHA-1/256/512 with AES) read and judge."""
    table = _v3(
        snmpd,
        tmp_path,
        user=user,
        auth_protocol=protocol,
        priv_protocol=privacy,
        expect=EXPECT_HEALTHY,
    )
    probe = probes.build("snmp", table, "checks.sys")

    try:
        outcome = await probe.run()
    finally:
        await close(probe)

    assert outcome.healthy, outcome.reason
    assert outcome.details["name"] == "fk-snmpd"


async def test_failed_comparisons_are_each_named(
    snmpd: peer.Snmpd, tmp_path: Path
) -> None:
    """Each failed comparison, and a missing OID, is in the reason."""
    expect = [
        {"oid": SYS_NAME, "equals": "other-host"},
        {"oid": SYS_UPTIME, "max": -1, "name": "uptime"},
        {"oid": SYS_LOCATION, "matches": "^dc-"},
        {"oid": "1.3.6.1.2.1.1.99.0", "equals": 1, "name": "missing"},
    ]
    probe = probes.build("snmp", _v2c(snmpd, tmp_path, expect=expect), "c")

    try:
        outcome = await probe.run()
    finally:
        await close(probe)

    assert not outcome.healthy
    assert "'fk-snmpd', expected 'other-host'" in outcome.reason
    assert "uptime:" in outcome.reason and "above -1" in outcome.reason
    assert "does not match '^dc-'" in outcome.reason
    assert "missing: no such object" in outcome.reason


async def test_wrong_v3_key_is_unhealthy_with_the_reason(
    snmpd: peer.Snmpd, tmp_path: Path
) -> None:
    """A wrong v3 key is unhealthy, names the refusal, hides the key."""
    canary = "CANARY-authkey-5e1"
    probe = probes.build(
        "snmp",
        _v3(snmpd, tmp_path, auth=canary, expect=EXPECT_HEALTHY),
        "c",
    )

    try:
        outcome = await probe.run()
    finally:
        await close(probe)

    assert not outcome.healthy
    assert "refused SNMPv3 user fkuser" in outcome.reason
    assert canary not in str(outcome.to_dict()) + repr(probe)


async def test_wrong_community_is_unhealthy_within_the_deadline(
    snmpd: peer.Snmpd, tmp_path: Path
) -> None:
    """A wrong community is unhealthy within the probe's timeout."""
    table = _v2c(snmpd, tmp_path, expect=EXPECT_HEALTHY, timeout=1.5)
    table["community_file"] = str(
        peer.secret_file(tmp_path, "wrong", "not-the-community")
    )
    probe = probes.build("snmp", table, "c")

    try:
        outcome = await probe.run()
    finally:
        await close(probe)

    assert not outcome.healthy
    assert "wrong community" in outcome.reason
    assert outcome.duration < 3.0


def test_bad_options_name_the_key(tmp_path: Path) -> None:
    """Bad check options give a ConfigError naming the key."""
    community = peer.secret_file(tmp_path, "community", "c-community")
    base = {"host": "127.0.0.1", "community_file": str(community)}
    good = [{"oid": SYS_NAME, "equals": "x"}]
    cases = [
        ({"expect": []}, "expect"),
        ({"expect": [{"oid": "sysName.0", "equals": 1}]}, "expect[0].oid"),
        ({"expect": [{"oid": SYS_NAME}]}, "expect[0].equals"),
        ({"expect": [{"oid": SYS_NAME, "matches": "("}]}, "expect[0].matches"),
        ({"expect": good, "community": "public"}, "community"),
        ({"expect": good, "colour": 1}, "colour"),
    ]

    for extra, where in cases:
        with pytest.raises(ConfigError) as caught:
            probes.build("snmp", {**base, **extra}, "checks.c")
        assert caught.value.where == f"checks.c.{where}", extra


def test_probe_runs_again_on_a_new_event_loop(
    snmpd: peer.Snmpd, tmp_path: Path
) -> None:
    """A kept probe runs again on a new event loop."""
    import asyncio

    probe = probes.build(
        "snmp", _v2c(snmpd, tmp_path, expect=EXPECT_HEALTHY), "c"
    )

    first = asyncio.run(probe.run())
    second = asyncio.run(probe.run())
    asyncio.run(close(probe))

    assert first.healthy, first.reason
    assert second.healthy, second.reason
