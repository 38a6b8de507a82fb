"""Stopping `fencekit fence` (Ctrl-C, SIGTERM) before it is verified."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.ipmisim import IpmiSim

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def inventory(tmp_path: Path, bmc: IpmiSim, delay: float) -> Path:
    path = tmp_path / "inventory.toml"
    path.write_text(
        'cluster = "c"\n[fencer]\n'
        f'run_dir = "{tmp_path / "run"}"\n'
        f'journal = "{tmp_path / "journal.jsonl"}"\n'
        'local_node = "node-a"\n\n'
        f'[devices.bmc-b]\ndriver = "ipmi"\nhost = "{bmc.host}"\n'
        f'port = {bmc.port}\nusername = "{bmc.user}"\n'
        f'password_file = "{bmc.password_file()}"\n\n'
        '[[nodes]]\nname = "node-a"\nid = 1\nlevels = ["bmc-b"]\n\n'
        '[[nodes]]\nname = "node-b"\nid = 2\nlevels = ["bmc-b"]\n'
        f"delay = {delay}\n"
    )
    return path


def events(journal: Path) -> list[str]:
    """The events journalled so far (a torn last line is skipped)."""
    if not journal.exists():
        return []
    found = []
    for line in journal.read_text().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line)["event"])
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_fence_sends_nothing_more_and_says_so(
    ipmi_sim: IpmiSim, tmp_path: Path, signum: int
) -> None:
    """Stopped during the delay: no command, journalled as unverified."""
    config = inventory(tmp_path, ipmi_sim, delay=4)
    proc = subprocess.Popen(
        [FENCEKIT, "fence", "node-b", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    journal = tmp_path / "journal.jsonl"
    deadline = time.monotonic() + 20
    while "delay" not in events(journal):
        assert time.monotonic() < deadline, "the fence never started"
        time.sleep(0.02)

    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    time.sleep(4.5)

    assert proc.returncode == 130
    assert "treat the node as NOT fenced" in err.splitlines()[-1]
    assert ipmi_sim.commands() == [], "nothing sent after the interrupt"
    assert ipmi_sim.power_is_on()
    records = [json.loads(line) for line in journal.read_text().splitlines()]
    outcome = records[-1]
    assert outcome["event"] == "outcome"
    assert outcome["verified"] is False
    assert "interrupted" in outcome["reason"]
