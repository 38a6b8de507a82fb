"""The Redfish and iRMC drivers against sushy-tools' emulator over HTTPS."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
    ProtocolError,
    UnreachableError,
)
from fencekit.outcome import Action, PowerState
from fencekit.power.irmc import IrmcDriver
from fencekit.power.operate import Verification, attempt, operate
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret
from tests.support import peers
from tests.support.ipmisim import IpmiSim
from tests.support.redfish import (
    SYSTEM_IDS,
    FaultyRedfish,
    Pki,
    SushyEmulator,
    faulty,
    pki,
    silent_listener,
    sushy,
)

__all__ = ["faulty", "pki", "sushy"]

NODE1, NODE2 = SYSTEM_IDS
FAST = Verification(timeout=20.0, settle=2, interval=0.05)


def driver_for(emu: SushyEmulator, **options: object) -> RedfishDriver:
    options.setdefault("system", NODE1)
    options.setdefault("ca_file", emu.ca_file)
    return RedfishDriver(
        emu.host,
        port=emu.port,
        username=emu.user,
        password=Secret(emu.password),
        **options,  # type: ignore[arg-type]
    )


async def test_status_reads_on(sushy: SushyEmulator) -> None:
    """status reads the emulator's PowerState On."""
    async with driver_for(sushy) as driver:
        state = await operate(driver, Action.STATUS, verification=FAST)

    assert state is PowerState.ON


async def test_off_is_verified_and_emulator_reports_off(
    sushy: SushyEmulator,
) -> None:
    """off succeeds verified and the emulator then reports Off."""
    async with driver_for(sushy) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.state is PowerState.OFF
    assert outcome.commands_sent == 1
    assert sushy.power_state(NODE1) == "Off"
    assert sushy.power_state(NODE2) == "On"


async def test_off_when_already_off_sends_nothing(
    sushy: SushyEmulator,
) -> None:
    """off on a system already off is verified without a command."""
    sushy.set_power("Off")

    async with driver_for(sushy) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success
    assert outcome.commands_sent == 0


async def test_on_is_verified(sushy: SushyEmulator) -> None:
    """on powers an off system up and reads it back On."""
    sushy.set_power("Off")

    async with driver_for(sushy) as driver:
        outcome = await attempt(driver, Action.ON, verification=FAST)

    assert outcome.success, outcome.reason
    assert sushy.power_state(NODE1) == "On"


async def test_reboot_is_off_verified_then_on(sushy: SushyEmulator) -> None:
    """reboot sends ForceOff then On, each verified."""
    async with driver_for(sushy) as driver:
        outcome = await attempt(driver, Action.REBOOT, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.commands_sent == 2
    assert sushy.power_state(NODE1) == "On"


async def test_refused_nmi_carries_the_emulator_message(
    sushy: SushyEmulator,
) -> None:
    """diag sends Nmi; the fake driver refuses it (501) in its own words."""
    async with driver_for(sushy) as driver:
        with pytest.raises(ProtocolError) as caught:
            await operate(driver, Action.DIAG, verification=FAST)

    assert caught.value.code == 501
    assert not caught.value.transient
    assert "Nmi is not supported" in str(caught.value)


async def test_system_chosen_by_uri(sushy: SushyEmulator) -> None:
    """A system given as a URI is used as it is."""
    uri = f"/redfish/v1/Systems/{NODE2}"

    async with driver_for(sushy, system=uri) as driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success
    assert sushy.power_state(NODE2) == "Off"
    assert sushy.power_state(NODE1) == "On"


async def test_two_systems_without_choice_is_config_error(
    sushy: SushyEmulator,
) -> None:
    """Without --system, two systems give an error naming both ids."""
    async with driver_for(sushy, system=None) as driver:
        with pytest.raises(ConfigError) as caught:
            await operate(driver, Action.STATUS, verification=FAST)

    assert NODE1 in str(caught.value) and NODE2 in str(caught.value)


async def test_unknown_system_is_config_error(sushy: SushyEmulator) -> None:
    """A system id that matches nothing is named in the error."""
    async with driver_for(sushy, system="node9") as driver:
        with pytest.raises(ConfigError, match="node9"):
            await operate(driver, Action.STATUS, verification=FAST)


async def test_wrong_password_is_authentication_error(
    sushy: SushyEmulator,
) -> None:
    """A wrong password gives AuthenticationError, not a retry loop."""
    driver = RedfishDriver(
        sushy.host,
        port=sushy.port,
        username=sushy.user,
        password=Secret("not-the-password"),
        system=NODE1,
        ca_file=sushy.ca_file,
    )
    start = time.monotonic()

    async with driver:
        with pytest.raises(AuthenticationError, match="401"):
            await operate(driver, Action.OFF, verification=FAST)

    assert time.monotonic() - start < 10
    assert sushy.power_state(NODE1) == "On"


async def test_untrusted_certificate_is_refused(
    sushy: SushyEmulator, tmp_path: Path
) -> None:
    """A certificate not signed by the pinned CA fails the TLS check."""
    other = Pki(tmp_path / "other")

    async with driver_for(sushy, ca_file=other.ca_file) as driver:
        with pytest.raises(ProtocolError, match="TLS"):
            await operate(driver, Action.STATUS, verification=FAST)


async def test_ca_bundle_variable_is_ignored(
    sushy: SushyEmulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """REQUESTS_CA_BUNDLE does not override the pinned CA file."""
    other = Pki(tmp_path / "other")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.ca_file))

    async with driver_for(sushy) as driver:
        state = await operate(driver, Action.STATUS, verification=FAST)

    assert state is PowerState.ON


async def test_insecure_works_and_warns(
    sushy: SushyEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--insecure skips the check and says so at WARNING."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with driver_for(sushy, ca_file=None, insecure=True) as driver:
            state = await operate(driver, Action.STATUS, verification=FAST)

    assert state is PowerState.ON
    events = [e["event"] for e in logs if e["log_level"] == "warning"]
    assert "redfish_tls_unverified" in events


async def test_basic_fallback_is_warned_once(sushy: SushyEmulator) -> None:
    """The emulator has no sessions: Basic is used, one WARNING says so."""
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        async with driver_for(sushy) as driver:
            await attempt(driver, Action.REBOOT, verification=FAST)

    basic = [e for e in logs if e["event"] == "redfish_basic_auth"]
    assert len(basic) == 1
    assert basic[0]["log_level"] == "warning"


async def test_no_server_is_unreachable_within_deadline(pki: Pki) -> None:
    """Nothing listening: UnreachableError well before the deadline."""
    driver = RedfishDriver(
        peers.LOOPBACK,
        port=peers.free_port(),
        username="admin",
        password=Secret("fk-pw"),
        ca_file=pki.ca_file,
    )
    start = time.monotonic()

    async with driver:
        with pytest.raises(UnreachableError):
            await operate(
                driver, Action.OFF, verification=Verification(timeout=5.0)
            )

    assert time.monotonic() - start < 5.0


async def test_silent_listener_is_cut_off_by_the_deadline(pki: Pki) -> None:
    """A port that accepts and never answers fails within the deadline."""
    sock, port = silent_listener()
    driver = RedfishDriver(
        peers.LOOPBACK,
        port=port,
        username="admin",
        password=Secret("fk-pw"),
        ca_file=pki.ca_file,
    )
    start = time.monotonic()

    try:
        async with driver:
            outcome = await attempt(
                driver, Action.OFF, verification=Verification(timeout=2.0)
            )
    finally:
        sock.close()

    assert not outcome.success
    assert isinstance(outcome.error, DeviceTimeoutError | UnreachableError)
    assert time.monotonic() - start < 6.0


async def test_hung_service_is_cut_off_by_the_read_timeout(
    faulty: FaultyRedfish,
) -> None:
    """A service that reads the request and never answers: read timeout."""
    faulty.behaviour.hang = True
    driver = RedfishDriver(
        faulty.host,
        port=faulty.port,
        username="admin",
        password=Secret("fk-pw"),
        ca_file=faulty.pki.ca_file,
    )
    start = time.monotonic()

    async with driver:
        with pytest.raises(DeviceTimeoutError):
            await driver.read_state(1.5)

    elapsed = time.monotonic() - start
    assert 1.0 < elapsed < 5.0


def run_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``fencekit`` in a child process, as an operator would."""
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_cli_off_against_emulator(sushy: SushyEmulator) -> None:
    """`fencekit power off --driver redfish ...` exits 0, system Off."""
    done = run_cli(
        "power", "off", "--driver", "redfish",
        "--host", sushy.host, "--port", str(sushy.port),
        "--system", NODE1, "--username", sushy.user,
        "--password-file", str(sushy.password_file()),
        "--ca-file", str(sushy.ca_file),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "off verified" in done.stdout
    assert sushy.power_state(NODE1) == "Off"


def test_cli_irmc_driver_against_emulator(sushy: SushyEmulator) -> None:
    """`--driver irmc` fences a Redfish system and names its path."""
    done = run_cli(
        "power", "off", "--driver", "irmc", "--json",
        "--host", sushy.host, "--port", str(sushy.port),
        "--system", NODE2, "--username", sushy.user,
        "--password-file", str(sushy.password_file()),
        "--ca-file", str(sushy.ca_file),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert '"method": "irmc-redfish"' in done.stdout
    assert sushy.power_state(NODE2) == "Off"


def test_cli_wrong_password_exits_1(sushy: SushyEmulator) -> None:
    """A refused password: exit 1 and one error line, no traceback."""
    done = run_cli(
        "power", "status", "--driver", "redfish",
        "--host", sushy.host, "--port", str(sushy.port),
        "--system", NODE1, "--username", sushy.user,
        "--password-file", str(sushy.password_file("wrong-pw")),
        "--ca-file", str(sushy.ca_file),
    )  # fmt: skip

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "refused the credentials" in done.stderr


def test_cli_ca_file_and_insecure_exclude(sushy: SushyEmulator) -> None:
    """--ca-file with --insecure is refused as bad input (exit 2)."""
    done = run_cli(
        "power", "status", "--driver", "redfish",
        "--host", sushy.host, "--username", sushy.user,
        "--password-file", str(sushy.password_file()),
        "--ca-file", str(sushy.ca_file), "--insecure",
    )  # fmt: skip

    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_cli_missing_ca_file_names_it(sushy: SushyEmulator) -> None:
    """A CA file that does not exist: exit 2 naming the option."""
    done = run_cli(
        "power", "status", "--driver", "redfish",
        "--host", sushy.host, "--username", sushy.user,
        "--password-file", str(sushy.password_file()),
        "--ca-file", "/nonexistent/ca.pem",
    )  # fmt: skip

    assert done.returncode == 2
    assert "ca_file" in done.stderr


async def test_irmc_driver_uses_redfish_when_it_answers(
    sushy: SushyEmulator, ipmi_sim: IpmiSim
) -> None:
    """iRMC with an IPMI fallback: Redfish answers, so Redfish is used."""
    driver = IrmcDriver(
        sushy.host,
        port=sushy.port,
        username=sushy.user,
        password=Secret(sushy.password),
        system=NODE1,
        ca_file=sushy.ca_file,
        ipmi_fallback=True,
        ipmi_port=ipmi_sim.port,
        ipmi_username=ipmi_sim.user,
        ipmi_password=Secret(ipmi_sim.password),
    )

    async with driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.method == "irmc-redfish"
    assert sushy.power_state(NODE1) == "Off"
    assert ipmi_sim.commands() == []


async def test_irmc_falls_back_to_ipmi_when_redfish_is_down(
    ipmi_sim: IpmiSim, pki: Pki
) -> None:
    """Redfish unreachable: the iRMC driver fences over IPMI and says so."""
    from structlog.testing import capture_logs

    driver = IrmcDriver(
        ipmi_sim.host,
        port=peers.free_port(),
        username=ipmi_sim.user,
        password=Secret(ipmi_sim.password),
        ca_file=pki.ca_file,
        ipmi_fallback=True,
        ipmi_port=ipmi_sim.port,
    )

    with capture_logs() as logs:
        async with driver:
            outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert outcome.success, outcome.reason
    assert outcome.method == "irmc-ipmi"
    assert not ipmi_sim.power_is_on()
    assert ipmi_sim.ipmitool_status() == "off"
    fallback = [e for e in logs if e["event"] == "irmc_ipmi_fallback"]
    assert fallback and fallback[0]["log_level"] == "warning"
    done = [e for e in logs if e["event"] == "power_action"]
    assert done and done[0]["method"] == "irmc-ipmi"


async def test_irmc_without_fallback_reports_unreachable(pki: Pki) -> None:
    """Without IPMI configured, an unreachable iRMC is a plain failure."""
    driver = IrmcDriver(
        peers.LOOPBACK,
        port=peers.free_port(),
        username="admin",
        password=Secret("fk-pw"),
        ca_file=pki.ca_file,
    )

    async with driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert not outcome.success
    assert isinstance(outcome.error, UnreachableError)
    assert outcome.method == "irmc"


async def test_irmc_wrong_password_does_not_fall_back(
    sushy: SushyEmulator, ipmi_sim: IpmiSim
) -> None:
    """A refused password is an answer: no switch to IPMI."""
    driver = IrmcDriver(
        sushy.host,
        port=sushy.port,
        username=sushy.user,
        password=Secret("wrong-pw"),
        system=NODE1,
        ca_file=sushy.ca_file,
        ipmi_fallback=True,
        ipmi_port=ipmi_sim.port,
        ipmi_username=ipmi_sim.user,
        ipmi_password=Secret(ipmi_sim.password),
    )

    async with driver:
        outcome = await attempt(driver, Action.OFF, verification=FAST)

    assert isinstance(outcome.error, AuthenticationError)
    assert ipmi_sim.power_is_on()
    assert ipmi_sim.commands() == []


def inventory(tmp_path: Path, devices: str, levels: str) -> Path:
    """A one-node inventory whose levels use the given devices."""
    path = tmp_path / "inventory.toml"
    path.write_text(
        f"""\
cluster = "test"

[fencer]
run_dir = "{tmp_path / "run"}"
journal = "{tmp_path / "journal.jsonl"}"

{devices}

[[nodes]]
name = "node-b"
id = 2
addresses = ["10.0.1.2"]
levels = {levels}
"""
    )
    return path


async def test_fencer_fences_through_redfish_inventory(
    sushy: SushyEmulator, tmp_path: Path
) -> None:
    """An inventory Redfish device with system and ca_file options."""
    from fencekit.config import load
    from fencekit.fencing import Fencer

    devices = f"""\
[devices.rf-b]
driver = "redfish"
host = "{sushy.host}"
port = {sushy.port}
username = "{sushy.user}"
password_file = "{sushy.password_file()}"
options = {{ system = "{NODE2}", ca_file = "{sushy.ca_file}" }}
"""
    path = inventory(tmp_path, devices, '[["rf-b"]]')

    async with Fencer(load(path)) as fencer:
        outcome = await fencer.fence("node-b", "off")

    assert outcome.success, outcome.reason
    assert sushy.power_state(NODE2) == "Off"
    assert sushy.power_state(NODE1) == "On"


async def test_fencer_journals_the_irmc_ipmi_path(
    ipmi_sim: IpmiSim, pki: Pki, tmp_path: Path
) -> None:
    """iRMC with Redfish down: fenced over IPMI, the journal says so."""
    from fencekit.config import load
    from fencekit.fencing import Fencer
    from fencekit.journal import read

    devices = f"""\
[devices.irmc-b]
driver = "irmc"
host = "{ipmi_sim.host}"
port = {peers.free_port()}
username = "{ipmi_sim.user}"
password_file = "{ipmi_sim.password_file()}"

[devices.irmc-b.options]
ca_file = "{pki.ca_file}"
ipmi_fallback = true
ipmi_port = {ipmi_sim.port}
"""
    path = inventory(tmp_path, devices, '[["irmc-b"]]')

    async with Fencer(load(path)) as fencer:
        outcome = await fencer.fence("node-b", "off")

    assert outcome.success, outcome.reason
    assert ipmi_sim.ipmitool_status() == "off"
    records = list(read(tmp_path / "journal.jsonl").records)
    methods = {r.get("method") for r in records if "method" in r}
    assert "irmc-ipmi" in methods
