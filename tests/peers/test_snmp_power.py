"""SNMP fence devices against snmpsim (a switch and an APC-style PDU).

net-snmp's ``snmpget`` and Debian's ``fence_ifmib`` read back what
fencekit set, independently of fencekit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit._snmp import SnmpCredentials
from fencekit.errors import ConfigError, ProtocolError
from fencekit.outcome import Action, PowerState
from fencekit.power.drivers import build
from fencekit.power.operate import Verification, attempt
from fencekit.power.snmp import (
    IF_ADMIN_STATUS,
    SnmpPduDriver,
    SnmpPortDriver,
)
from fencekit.secrets import Secret
from tests.support import peers
from tests.support import snmp as peer

OUTLET = "1.3.6.1.4.1.318.1.1.12.3.3.1.1.4"
FAST = Verification(timeout=15.0, settle=2, interval=0.1)


@pytest.fixture
def snmpsim(tmp_path: Path) -> Iterator[peer.SnmpSim]:
    """A running snmpsim switch-and-PDU with fresh writable cells."""
    yield from peer.serve(peer.SnmpSim(tmp_path / "snmpsim"))


def _credentials() -> SnmpCredentials:
    return SnmpCredentials(version="2c", community=Secret(peer.SIM_COMMUNITY))


def _port(sim: peer.SnmpSim, plug: str, **kwargs: object) -> SnmpPortDriver:
    return SnmpPortDriver(
        sim.host,
        port=sim.port,
        credentials=_credentials(),
        plug=plug,
        **kwargs,  # type: ignore[arg-type]
    )


def _pdu(sim: peer.SnmpSim, plug: str) -> SnmpPduDriver:
    return SnmpPduDriver(
        sim.host, port=sim.port, credentials=_credentials(), plug=plug
    )


def _fence_ifmib_status(sim: peer.SnmpSim, plug: str) -> str:
    """Debian's fence_ifmib reads the port's state (options on stdin)."""
    binary = peers.require("fence_ifmib")
    options = (
        f"ip={sim.host}\nipport={sim.port}\ncommunity={peer.SIM_COMMUNITY}\n"
        f"snmp_version=2c\nplug={plug}\naction=status\n"
    )
    done = subprocess.run(
        [binary],
        input=options,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.stdout.strip()


async def test_port_off_by_index_is_verified_and_seen_by_fence_ifmib(
    snmpsim: peer.SnmpSim,
) -> None:
    """Port 2 off is verified; snmpget and fence_ifmib read it off."""
    driver = _port(snmpsim, "2")

    try:
        outcome = await attempt(driver, Action.OFF, verification=FAST)
    finally:
        await driver.close()

    assert outcome.verified, outcome.reason
    assert outcome.state is PowerState.OFF
    assert outcome.commands_sent == 1
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "2"
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.1") == "1"
    assert _fence_ifmib_status(snmpsim, "2") == "Status: OFF"
    assert _fence_ifmib_status(snmpsim, "1") == "Status: ON"


@pytest.mark.parametrize("name", ["Gi1/0/2", "eth1"])
async def test_port_named_by_ifname_or_ifdescr(
    snmpsim: peer.SnmpSim, name: str
) -> None:
    """A port named by ifName or ifDescr is fenced and switched back on."""
    driver = _port(snmpsim, name)

    try:
        off = await attempt(driver, Action.OFF, verification=FAST)
        assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "2"
        on = await attempt(driver, Action.ON, verification=FAST)
    finally:
        await driver.close()

    assert off.verified, off.reason
    assert on.verified, on.reason
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "1"


async def test_unknown_port_name_is_a_clear_error(
    snmpsim: peer.SnmpSim,
) -> None:
    """An unknown port name fails naming the known ports; nothing sent."""
    driver = _port(snmpsim, "eth9")

    try:
        outcome = await attempt(driver, Action.OFF, verification=FAST)
    finally:
        await driver.close()

    assert not outcome.verified
    assert outcome.commands_sent == 0
    assert isinstance(outcome.error, ConfigError)
    assert "no port named 'eth9'" in str(outcome.reason)
    assert "Gi1/0/1" in str(outcome.reason)


async def test_unknown_port_index_is_a_clear_error(
    snmpsim: peer.SnmpSim,
) -> None:
    """A port index the switch does not have fails with a clear error."""
    driver = _port(snmpsim, "42")

    try:
        outcome = await attempt(driver, Action.OFF, verification=FAST)
    finally:
        await driver.close()

    assert not outcome.verified
    assert isinstance(outcome.error, ConfigError)
    assert "no port 42" in str(outcome.reason)


async def test_refused_set_is_a_clear_failure(snmpsim: peer.SnmpSim) -> None:
    """A SET refused with notWritable is a failure naming the refusal."""
    driver = _port(snmpsim, "3")

    try:
        outcome = await attempt(driver, Action.OFF, verification=FAST)
    finally:
        await driver.close()

    assert not outcome.verified
    assert isinstance(outcome.error, ProtocolError)
    assert "notWritable" in str(outcome.reason)
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.3") == "1"


async def test_accepted_but_ignored_set_is_not_confirmed(
    snmpsim: peer.SnmpSim,
) -> None:
    """An accepted but ignored SET ends not confirmed, never fenced."""
    driver = _pdu(snmpsim, "3")

    try:
        outcome = await attempt(
            driver,
            Action.OFF,
            verification=Verification(timeout=2.0, settle=2, interval=0.1),
        )
    finally:
        await driver.close()

    assert not outcome.verified
    assert outcome.commands_sent == 1
    assert outcome.state is PowerState.ON
    assert "not confirmed off" in str(outcome.reason)


async def test_oper_status_still_up_is_not_confirmed(
    snmpsim: peer.SnmpSim,
) -> None:
    """With ifOperStatus checked, a link still up is not fenced."""
    driver = _port(snmpsim, "1", oper_status=True)

    try:
        outcome = await attempt(
            driver,
            Action.OFF,
            verification=Verification(timeout=2.0, settle=2, interval=0.1),
        )
    finally:
        await driver.close()

    assert not outcome.verified
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.1") == "2"
    assert "not confirmed off" in str(outcome.reason)


@pytest.mark.parametrize("plug", ["2", "node-b"])
async def test_pdu_outlet_off_and_on(snmpsim: peer.SnmpSim, plug: str) -> None:
    """An outlet by number or name goes off and on, each verified."""
    driver = _pdu(snmpsim, plug)

    try:
        off = await attempt(driver, Action.OFF, verification=FAST)
        state_off = snmpsim.get(f"{OUTLET}.2")
        on = await attempt(driver, Action.ON, verification=FAST)
    finally:
        await driver.close()

    assert off.verified, off.reason
    assert state_off == "2"
    assert on.verified, on.reason
    assert snmpsim.get(f"{OUTLET}.2") == "1"
    assert snmpsim.get(f"{OUTLET}.1") == "1"


async def test_pdu_refuses_a_vendor_value_it_does_not_know(
    snmpsim: peer.SnmpSim,
) -> None:
    """A configured off value the PDU refuses is a failure."""
    driver = build(
        "snmp-pdu",
        snmpsim.host,
        port=snmpsim.port,
        username="",
        password=Secret(peer.SIM_COMMUNITY),
        options={"plug": "1", "off_command": 7},
    )

    try:
        outcome = await attempt(driver, Action.OFF, verification=FAST)
    finally:
        await driver.close()

    assert not outcome.verified
    assert "wrongValue" in str(outcome.reason)
    assert snmpsim.get(f"{OUTLET}.1") == "1"


async def test_wrong_community_is_a_timeout_with_a_hint(
    snmpsim: peer.SnmpSim,
) -> None:
    """A wrong community times out with a hint; it is never printed."""
    from fencekit.errors import DeviceTimeoutError

    canary = "CANARY-community-41d2"
    driver = SnmpPortDriver(
        snmpsim.host,
        port=snmpsim.port,
        credentials=SnmpCredentials(version="2c", community=Secret(canary)),
        plug="2",
        retries=0,
    )

    try:
        with pytest.raises(DeviceTimeoutError) as caught:
            await driver.read_state(1.0)
        outcome = await attempt(
            driver,
            Action.OFF,
            verification=Verification(timeout=2.0, settle=1, interval=0.1),
        )
    finally:
        await driver.close()

    assert "wrong community" in str(caught.value)
    assert not outcome.verified
    assert "no answer" in str(outcome.reason)
    for text in (repr(outcome), str(outcome.to_dict()), repr(driver)):
        assert canary not in text
    assert canary not in repr(caught.value) + repr(outcome.error)
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "1"


def test_inventory_options_are_checked() -> None:
    """Bad driver options fail with a ConfigError naming the option."""
    cases = [
        ("snmp-port", {}, "plug"),
        ("snmp-port", {"plug": "1", "colour": "red"}, "colour"),
        ("snmp-port", {"plug": "1", "community": "public"}, "community"),
        ("snmp-pdu", {"plug": "1", "control_oid": "apc"}, "control_oid"),
        ("snmp-pdu", {"plug": "1", "retries": 99}, "retries"),
        ("snmp-port", {"plug": "1", "snmp_version": "3"}, "user"),
    ]

    for driver, options, where in cases:
        with pytest.raises(ConfigError) as caught:
            build(
                driver,
                "127.0.0.1",
                username="",
                password=Secret("community-x"),
                options=options,
            )
        assert caught.value.where == where, (driver, options)


def _cli(
    *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_cli_power_off_snmp_port(
    snmpsim: peer.SnmpSim, tmp_path: Path
) -> None:
    """fencekit power off --driver snmp-port exits 0; the port reads down."""
    community = peer.secret_file(tmp_path, "community", peer.SIM_COMMUNITY)

    done = _cli(
        "power",
        "off",
        "--driver",
        "snmp-port",
        "--host",
        snmpsim.host,
        "--port",
        str(snmpsim.port),
        "--community-file",
        str(community),
        "--plug",
        "2",
    )

    assert done.returncode == 0, done.stderr
    assert "off verified" in done.stdout
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "2"
    assert _fence_ifmib_status(snmpsim, "2") == "Status: OFF"


def test_cli_snmp_pdu_status_json_and_unknown_outlet(
    snmpsim: peer.SnmpSim, tmp_path: Path
) -> None:
    """PDU status prints JSON; an unknown outlet exits 1 in one line."""
    base = [
        "--driver",
        "snmp-pdu",
        "--host",
        snmpsim.host,
        "--port",
        str(snmpsim.port),
        "--community-env",
        "FK_TEST_COMMUNITY",
    ]
    env = {"FK_TEST_COMMUNITY": peer.SIM_COMMUNITY}

    status = _cli(
        "power", "status", *base, "--plug", "node-a", "--json", env=env
    )
    unknown = _cli("power", "off", *base, "--plug", "node-z", env=env)

    assert status.returncode == 0, status.stderr
    assert '"state": "on"' in status.stdout
    assert unknown.returncode == 1
    errors = [
        ln for ln in unknown.stderr.splitlines() if ln.startswith("fencekit:")
    ]
    assert len(errors) == 1
    assert "no outlet named 'node-z'" in errors[0]
    assert "Traceback" not in unknown.stderr


def test_cli_snmp_without_plug_is_bad_input(tmp_path: Path) -> None:
    """No --plug is bad input: exit 2, one line, no traceback."""
    community = peer.secret_file(tmp_path, "community", "x-community")

    done = _cli(
        "power",
        "status",
        "--driver",
        "snmp-port",
        "--host",
        "127.0.0.1",
        "--community-file",
        str(community),
    )

    assert done.returncode == 2
    assert "plug" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_failing_fence_never_prints_the_community(
    snmpsim: peer.SnmpSim, tmp_path: Path
) -> None:
    """A failing CLI fence at debug level never prints the community."""
    canary = "CANARY-cli-community-9b"
    community = peer.secret_file(tmp_path, "community", canary)
    argv = [
        "--verbose",
        "--verbose",
        "power",
        "off",
        "--driver",
        "snmp-port",
        "--host",
        snmpsim.host,
        "--port",
        str(snmpsim.port),
        "--community-file",
        str(community),
        "--plug",
        "2",
        "--timeout",
        "2",
    ]

    done = _cli(*argv)

    assert done.returncode == 1
    assert "no answer" in done.stderr
    assert canary not in done.stdout + done.stderr + " ".join(argv)
    assert snmpsim.get(f"{IF_ADMIN_STATUS}.2") == "1"
