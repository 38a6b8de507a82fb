"""fence_fencekit_redfish and fence_fencekit_irmc, run as Pacemaker runs
them, against sushy-tools' Redfish emulator over HTTPS."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.redfish import SYSTEM_IDS, SushyEmulator, sushy

__all__ = ["sushy"]

AGENTS = Path(__file__).resolve().parents[2] / "agents"
NODE1, NODE2 = SYSTEM_IDS


def agent(name: str, stdin: str) -> subprocess.CompletedProcess[str]:
    """Run one agent in a process of its own, options on stdin."""
    return subprocess.run(
        [sys.executable, str(AGENTS / name)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def device(emulator: SushyEmulator, system: str) -> str:
    """The options of a stonith device for one emulated system."""
    return (
        f"ip={emulator.host}:{emulator.port}\nusername={emulator.user}\n"
        f"password={emulator.password}\nsystems_uri={system}\n"
        f"ssl_ca_file={emulator.ca_file}\npower_timeout=20\n"
        "stonith_status_sleep=0.05\n"
    )


def test_redfish_off_is_verified(sushy: SushyEmulator) -> None:
    """off powers the named system off; the other stays on."""
    done = agent(
        "fence_fencekit_redfish",
        "action=off\nport=node1\n" + device(sushy, NODE1),
    )

    assert done.returncode == 0, done.stderr
    assert sushy.power_state(NODE1) == "Off"
    assert sushy.power_state(NODE2) == "On"


def test_redfish_status_exit_codes(sushy: SushyEmulator) -> None:
    """status exits 0 for on and 2 for off."""
    sushy.set_power("ForceOff", NODE2)

    on = agent(
        "fence_fencekit_redfish", "action=status\n" + device(sushy, NODE1)
    )
    off = agent(
        "fence_fencekit_redfish", "action=status\n" + device(sushy, NODE2)
    )

    assert (on.returncode, on.stdout) == (0, "Status: ON\n")
    assert (off.returncode, off.stdout) == (2, "Status: OFF\n")


def test_redfish_untrusted_certificate_fails(sushy: SushyEmulator) -> None:
    """Without the CA the certificate is refused and nothing is sent."""
    options = device(sushy, NODE1).replace(
        f"ssl_ca_file={sushy.ca_file}\n", ""
    )

    done = agent("fence_fencekit_redfish", "action=off\n" + options)

    assert done.returncode == 1
    assert sushy.power_state(NODE1) == "On"


def test_irmc_reboot(sushy: SushyEmulator) -> None:
    """The iRMC agent reboots a system through Redfish: off, then on."""
    done = agent(
        "fence_fencekit_irmc", "action=reboot\n" + device(sushy, NODE1)
    )

    assert done.returncode == 0, done.stderr
    assert sushy.power_state(NODE1) == "On"
    assert "reboot" in done.stdout
