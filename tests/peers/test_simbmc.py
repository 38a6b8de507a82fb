"""fencekit's simulated BMC, checked with ipmitool and our own driver."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fencekit.outcome import Action, PowerState
from fencekit.power.ipmi import IpmiDriver
from fencekit.power.operate import Verification, operate
from fencekit.secrets import Secret
from fencekit.testing import SimulatedBmc
from tests.support import peers


@pytest.fixture
def bmc(tmp_path: Path) -> SimulatedBmc:
    sim = SimulatedBmc(tmp_path / "sim")
    sim.start()
    yield sim  # type: ignore[misc]
    sim.stop()


def ipmitool(bmc: SimulatedBmc, *args: str) -> str:
    binary = peers.require("ipmitool")
    done = subprocess.run(
        [
            binary,
            "-I",
            "lanplus",
            "-C",
            "3",
            "-H",
            bmc.host,
            "-p",
            str(bmc.port),
            "-U",
            bmc.user,
            "-E",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
        env=dict(os.environ, IPMI_PASSWORD=bmc.password),
    )
    return done.stdout.strip()


def test_ipmitool_status_off_on(bmc: SimulatedBmc) -> None:
    """ipmitool -C 3 reads and switches the simulated chassis."""
    assert ipmitool(bmc, "chassis", "power", "status").endswith("on")

    ipmitool(bmc, "chassis", "power", "off")
    assert ipmitool(bmc, "chassis", "power", "status").endswith("off")
    assert not bmc.power_is_on()

    ipmitool(bmc, "chassis", "power", "on")
    assert ipmitool(bmc, "chassis", "power", "status").endswith("on")
    assert bmc.commands() == ["power=0", "power=1"]


async def test_fencekit_driver_pinned_to_suite_3(bmc: SimulatedBmc) -> None:
    """The IPMI driver fences the simulated BMC with cipher suite 3."""
    async with IpmiDriver(
        bmc.host,
        port=bmc.port,
        username=bmc.user,
        password=Secret(bmc.password),
        cipher=3,
    ) as driver:
        state = await operate(
            driver, Action.OFF, verification=Verification(timeout=10)
        )

    assert state is PowerState.OFF
    assert bmc.commands() == ["power=0"]
