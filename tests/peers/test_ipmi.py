"""IPMI power fencing against OpenIPMI's ipmi_sim on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fencekit.errors import (
    AuthenticationError,
    NotConfirmedError,
)
from fencekit.outcome import Action, PowerState
from fencekit.power.ipmi import IpmiDriver
from fencekit.power.operate import Verification, attempt, operate
from fencekit.secrets import Secret
from tests.support import peers
from tests.support.ipmisim import IpmiSim

QUICK = Verification(timeout=10.0, settle=2, interval=0.05)
FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def driver_for(sim: IpmiSim, **kwargs: object) -> IpmiDriver:
    password = kwargs.pop("password", Secret(sim.password))
    return IpmiDriver(
        sim.host,
        port=sim.port,
        username=sim.user,
        password=password,  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


def cli(
    sim: IpmiSim, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    command = [
        FENCEKIT,
        "power",
        *args,
        "--driver",
        "ipmi",
        "--host",
        sim.host,
        "--port",
        str(sim.port),
        "--username",
        sim.user,
        "--password-file",
        str(sim.password_file()),
    ]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


async def test_status_off_on_reboot_through_the_library(
    ipmi_sim: IpmiSim,
) -> None:
    """Each action is verified and ipmitool agrees with the result."""
    async with driver_for(ipmi_sim) as driver:
        assert await operate(driver, Action.STATUS) is PowerState.ON

        assert (
            await operate(driver, Action.OFF, verification=QUICK)
            is PowerState.OFF
        )
        assert ipmi_sim.ipmitool_status() == "off"

        assert (
            await operate(driver, Action.ON, verification=QUICK)
            is PowerState.ON
        )
        assert ipmi_sim.ipmitool_status() == "on"

        outcome = await attempt(driver, Action.REBOOT, verification=QUICK)
        assert outcome.success and outcome.state is PowerState.ON

    assert ipmi_sim.commands() == [
        "power=0",
        "power=1",
        "power=0",
        "power=1",
    ]


def test_cli_power_off_exits_zero_and_ipmitool_reads_off(
    ipmi_sim: IpmiSim,
) -> None:
    """The acceptance command: `fencekit power off` against ipmi_sim."""
    done = cli(ipmi_sim, "off")

    assert done.returncode == 0, done.stderr
    assert "off verified" in done.stdout
    assert ipmi_sim.ipmitool_status() == "off"


def test_cli_status_on_reboot_and_json(ipmi_sim: IpmiSim) -> None:
    """status, on and reboot through the CLI; --json prints one object."""
    status = cli(ipmi_sim, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["state"] == "on" and data["verified"] is True

    ipmi_sim.set_power(False)
    on = cli(ipmi_sim, "on")
    assert on.returncode == 0, on.stderr
    assert ipmi_sim.ipmitool_status() == "on"

    reboot = cli(ipmi_sim, "reboot", "--json")
    assert reboot.returncode == 0, reboot.stderr
    assert json.loads(reboot.stdout)["commands_sent"] == 2
    assert ipmi_sim.commands()[-2:] == ["power=0", "power=1"]


def test_off_on_a_node_already_off_sends_no_command(
    ipmi_sim: IpmiSim,
) -> None:
    """No power command reaches the BMC; the CLI still succeeds."""
    ipmi_sim.set_power(False)

    done = cli(ipmi_sim, "off", "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["commands_sent"] == 0
    assert ipmi_sim.commands() == []


async def test_wrong_password_is_an_authentication_error(
    ipmi_sim: IpmiSim,
) -> None:
    """Refused in under a second, naming the host, without the secret."""
    canary = "canary-Wr0ng-7731"
    driver = driver_for(ipmi_sim, password=Secret(canary))
    started = time.monotonic()

    with pytest.raises(AuthenticationError) as caught:
        await operate(driver, Action.STATUS, verification=QUICK)
    await driver.close()

    assert time.monotonic() - started < 1.0
    assert ipmi_sim.host in str(caught.value)
    assert canary not in str(caught.value)
    assert canary not in repr(caught.value)


def test_cli_wrong_password_fails_with_one_line(
    ipmi_sim: IpmiSim, tmp_path: Path
) -> None:
    """Non-zero exit, one line on stderr naming the host."""
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)

    done = subprocess.run(
        [
            FENCEKIT,
            "power",
            "off",
            "--driver",
            "ipmi",
            "--host",
            ipmi_sim.host,
            "--port",
            str(ipmi_sim.port),
            "--username",
            ipmi_sim.user,
            "--password-file",
            str(wrong),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )

    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fencekit: error:")
    assert ipmi_sim.host in last and "refused the login" in last
    assert "Traceback" not in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout
    assert ipmi_sim.commands() == []


def test_nothing_listening_fails_within_the_timeout(tmp_path: Path) -> None:
    """No BMC on the port: unreachable or timed out, in time."""
    import socket

    port = peers.free_port(socket.SOCK_DGRAM)
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    secret.chmod(0o600)
    started = time.monotonic()

    done = subprocess.run(
        [
            FENCEKIT,
            "power",
            "off",
            "--driver",
            "ipmi",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--username",
            "u",
            "--password-file",
            str(secret),
            "--timeout",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    elapsed = time.monotonic() - started

    assert done.returncode == 1
    assert elapsed < 2 + 1, f"took {elapsed:.2f} s"
    last = done.stderr.strip().splitlines()[-1]
    assert "127.0.0.1" in last
    assert "no answer" in last or "did not answer" in last


async def test_unreachable_bmc_raises_unreachable_in_the_library() -> None:
    """The library maps a silent BMC to UnreachableError or a timeout."""
    import socket

    port = peers.free_port(socket.SOCK_DGRAM)
    driver = IpmiDriver(
        "127.0.0.1", port=port, username="u", password=Secret("x")
    )
    started = time.monotonic()

    outcome = await attempt(
        driver, Action.OFF, verification=Verification(timeout=1.5)
    )
    await driver.close()

    assert not outcome.success
    assert outcome.commands_sent == 0
    assert time.monotonic() - started < 2.5
    assert "127.0.0.1" in (outcome.reason or "")


async def test_bmc_dying_after_the_off_command_is_not_confirmed(
    ipmi_sim: IpmiSim,
) -> None:
    """ipmi_sim stopped between off and verification: never success."""
    assert ipmi_sim.proc is not None
    ipmi_sim.kill_on_power_off(ipmi_sim.proc.pid)
    driver = driver_for(ipmi_sim)

    outcome = await attempt(
        driver, Action.OFF, verification=Verification(timeout=3.0)
    )
    await driver.close()

    assert not outcome.success
    assert isinstance(outcome.error, NotConfirmedError)
    assert "not confirmed" in (outcome.reason or "")


async def test_transient_failures_are_retried_not_read_as_state(
    ipmi_sim: IpmiSim,
) -> None:
    """Completion code 0xff twice, then the real state: success."""
    ipmi_sim.fail_next_calls(2)

    async with driver_for(ipmi_sim) as driver:
        outcome = await attempt(driver, Action.OFF, verification=QUICK)

    assert outcome.success, outcome.reason
    assert ipmi_sim.commands() == ["power=0"]


async def test_two_sessions_one_after_the_other(ipmi_sim: IpmiSim) -> None:
    """A second session to the same BMC in one process completes."""
    for _ in range(2):
        async with driver_for(ipmi_sim) as driver:
            assert await operate(driver, Action.STATUS) is PowerState.ON


async def test_two_sessions_at_once(ipmi_sim: IpmiSim) -> None:
    """Two drivers on one BMC, concurrently, both complete."""
    first, second = driver_for(ipmi_sim), driver_for(ipmi_sim)

    states = await asyncio.wait_for(
        asyncio.gather(
            operate(first, Action.STATUS),
            operate(second, Action.OFF, verification=QUICK),
        ),
        timeout=20,
    )
    await first.close()
    await second.close()

    assert states[1] is PowerState.OFF
    async with driver_for(ipmi_sim) as third:
        assert await operate(third, Action.STATUS) is PowerState.OFF


async def test_suite_3_pinned_works_and_17_pinned_is_refused(
    ipmi_sim: IpmiSim,
) -> None:
    """ipmi_sim refuses suite 17: pinning it fails, pinning 3 works."""
    async with driver_for(ipmi_sim, cipher=3) as driver:
        assert await operate(driver, Action.STATUS) is PowerState.ON

    other = IpmiSim(ipmi_sim.workdir.parent / "bmc17").start()
    try:
        driver = driver_for(other, cipher=17)
        outcome = await attempt(
            driver, Action.STATUS, verification=Verification(timeout=5)
        )
        await driver.close()
    finally:
        other.stop()
    assert not outcome.success
    assert "17" in (outcome.reason or "")


def test_canary_password_never_leaks(
    ipmi_sim: IpmiSim, tmp_path: Path
) -> None:
    """Not in logs, stdout, stderr, errors, nor any process's argv."""
    canary = "canary-7f3a-PASSWORD"
    secret = tmp_path / "canary"
    secret.write_text(canary + "\n")
    secret.chmod(0o600)
    seen_in_argv: list[str] = []
    runs = []

    for password_file, action in (
        (ipmi_sim.password_file(), "off"),
        (secret, "status"),
    ):
        proc = subprocess.Popen(
            [
                FENCEKIT,
                "-vv",
                "power",
                action,
                "--driver",
                "ipmi",
                "--host",
                ipmi_sim.host,
                "--port",
                str(ipmi_sim.port),
                "--username",
                ipmi_sim.user,
                "--password-file",
                str(password_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )
        while proc.poll() is None:
            seen_in_argv.extend(_argv_with(canary, ipmi_sim.password))
            time.sleep(0.005)
        out, err = proc.communicate(timeout=30)
        runs.append((proc.returncode, out, err))

    captured = "".join(out + err for _, out, err in runs)
    assert runs[0][0] == 0 and runs[1][0] == 1
    assert "power_action" in captured, "debug logging was on"
    assert canary not in captured
    assert ipmi_sim.password not in captured
    assert seen_in_argv == []


def _argv_with(*secrets: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        text = argv.decode("utf-8", "replace")
        if any(secret in text for secret in secrets):
            found.append(f"{pid}: {text}")
    return found
