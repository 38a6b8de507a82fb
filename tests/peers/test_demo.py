"""`fencekit demo`: the whole takeover on the embedded lab."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import peers

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def run_demo(
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FENCEKIT, "demo"],
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def assert_takeover(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "check web-b is down after 3 failures" in out
    assert "node-b fenced through bmc-b (ipmi): verified OFF" in out
    assert "node-b's BMC reads power off" in out
    assert "node-a's BMC reads power on" in out
    assert "journal records: requested, attempt, outcome" in out
    assert 'fencekit_fence_operations_total{action="off",node="node-b"' in out
    assert re.search(r"summary: detection \d+\.\d+ s .* verified: yes", out)
    lab = re.search(r"lab in (\S+)", out)
    assert lab and not Path(lab.group(1)).exists(), "nothing left behind"
    assert "Traceback" not in done.stderr


def test_demo_with_ipmi_sim() -> None:
    """With OpenIPMI installed, the demo fences node-b on ipmi_sim."""
    peers.require("ipmi_sim")
    peers.require("snmptrapd")

    done = run_demo()

    assert "BMC (ipmi_sim)" in done.stdout
    assert_takeover(done)
    received = re.search(r"snmptrapd received: (.*)", done.stdout)
    assert received, "the notification receiver ran"
    assert "fencekitCheckDown" in received.group(1)
    assert "fencekitNodeFenced" in received.group(1)


def test_demo_with_the_simulated_bmc_only() -> None:
    """Without ipmi_sim on the PATH, fencekit's own BMC is used."""
    env = dict(os.environ, PATH=str(Path(sys.executable).parent))

    done = run_demo(env)

    assert "BMC (simulated-bmc, cipher suite 3)" in done.stdout
    assert_takeover(done)


def test_keep_running_stops_everything_on_sigterm() -> None:
    """--keep-running, then SIGTERM: every lab process and file is gone."""
    import signal
    import time

    peers.require("ipmi_sim")
    proc = subprocess.Popen(
        [FENCEKIT, "demo", "--keep-running"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while not any("stays up until Ctrl-C" in line for line in lines):
        assert time.monotonic() < deadline and proc.poll() is None
        lines.append(proc.stdout.readline())
    lab = next(re.search(r"lab in (\S+)", x) for x in lines if "lab in" in x)
    assert lab is not None

    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)

    assert "Traceback" not in err
    assert not Path(lab.group(1)).exists()
    leftovers = subprocess.run(
        ["pgrep", "-f", lab.group(1)], capture_output=True, text=True
    )
    assert leftovers.stdout == "", "no lab process left running"
