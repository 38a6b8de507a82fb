"""Process and storage faults around the fencer, with ipmi_sim as BMC.

- ``fencekit fence`` SIGKILLed at random moments, 50 times: the journal
  always reads, each line is a whole record or skipped with a warning, a
  recorded success was verified and is true, and every outcome a caller
  was given is in the journal.
- the journal on a full disk (``/dev/full``): the fence is not reported
  as a success, and the error names the journal.
- a read-only run directory: no lock, no power command, a clear error.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.journal import read
from tests.support.fencer import fencekit, popen_fencekit, write_inventory
from tests.support.ipmisim import IpmiSim

KILLS = 50


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[IpmiSim]:
    """ipmi_sim for node-b, power on."""
    bmc = IpmiSim(tmp_path / "bmc").start()
    try:
        yield bmc
    finally:
        bmc.stop()


def _finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.mark.slow
def test_sigkill_fifty_times_journal_stays_whole(
    sim: IpmiSim, tmp_path: Path
) -> None:
    """50 fences killed at random moments: the journal reads and agrees."""
    inventory = write_inventory(tmp_path / "inventory.toml", {"node-b": sim})
    journal = tmp_path / "journal.jsonl"
    rng = random.Random(int(os.environ.get("FENCEKIT_TEST_SEED", "50")))

    started = time.monotonic()
    code, out, err = _finish(
        popen_fencekit("fence", "node-b", "--json", "--config", str(inventory))
    )
    assert code == 0, err
    lifetime = time.monotonic() - started

    killed = reported = 0
    for _ in range(KILLS):
        sim.set_power(True)
        before = {r.get("op") for r in read(journal).records}
        proc = popen_fencekit(
            "fence", "node-b", "--json", "--config", str(inventory)
        )
        if rng.random() < 0.5:
            # Anywhere in the process's life, start-up included.
            time.sleep(rng.uniform(0.0, lifetime * 1.2))
        else:
            # During the fence itself: once its first record is written.
            _wait_for_growth(journal, proc)
            time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        code, out, err = _finish(proc)

        result = read(journal)
        assert all("event" in r and "op" in r for r in result.records)
        new = [r for r in result.records if r["op"] not in before]
        for record in new:
            if record["event"] == "outcome" and record["success"]:
                assert record["verified"] and record["state"] == "off"
                assert not sim.power_is_on(), record
        if code != -signal.SIGKILL and out.strip():
            # The caller was told an outcome: it must be in the journal.
            told = json.loads(out)
            reported += 1
            outcomes = [r for r in new if r["event"] == "outcome"]
            assert outcomes, (out, new)
            assert outcomes[-1]["success"] == told["success"]
            assert code == (0 if told["success"] else 1)

    final = read(journal)
    print(
        f"journal durability: {KILLS} runs, {killed} SIGKILLed,"
        f" {reported} outcomes reported, {len(final.records)} records,"
        f" {len(final.skipped)} torn lines skipped"
    )
    assert killed >= KILLS // 4, (killed, reported)
    assert final.records, "nothing journalled"
    # Lines torn by a kill mid-write are skipped, never misread.
    raw = journal.read_bytes().split(b"\n")
    for number in final.skipped:
        with contextlib.suppress(ValueError):
            assert "event" not in json.loads(raw[number - 1])


def _wait_for_growth(journal: Path, proc: subprocess.Popen[str]) -> None:
    size = journal.stat().st_size if journal.exists() else 0
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        if journal.exists() and journal.stat().st_size > size:
            return
        time.sleep(0.002)


def test_journal_on_a_full_disk_is_not_a_success(
    sim: IpmiSim, tmp_path: Path
) -> None:
    """ENOSPC on the journal: exit non-zero, one line, the journal named."""
    inventory = write_inventory(
        tmp_path / "inventory.toml",
        {"node-b": sim},
        fencer={"journal": "/dev/full"},
    )
    done = fencekit("fence", "node-b", "--config", str(inventory))

    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert "journal" in done.stderr
    assert "/dev/full" in done.stderr
    assert "verified" not in done.stdout


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory no one may create files in, root included."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)
        return
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        # No mount allowed here: sysfs refuses new files to root as well.
        yield Path("/sys/fencekit-faults-run")
        return
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def test_read_only_run_dir_fails_before_any_command(
    sim: IpmiSim, tmp_path: Path, read_only_dir: Path
) -> None:
    """No lock file can be made: no power command, a one-line error."""
    inventory = write_inventory(
        tmp_path / "inventory.toml",
        {"node-b": sim},
        fencer={"run_dir": str(read_only_dir / "run")},
    )
    done = fencekit("fence", "node-b", "--config", str(inventory))

    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert sim.commands() == []
    assert sim.power_is_on()
    assert len(done.stderr.strip().splitlines()) <= 3, done.stderr


def test_agent_sigkilled_at_random_moments_restarts_clean(
    tmp_path: Path,
) -> None:
    """The agent killed 5 times at random: each restart serves /metrics."""
    import urllib.request

    from tests.support import peers

    port = peers.free_port()
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nlisten = "127.0.0.1:{port}"\n\n'
        "[defaults]\ninterval = 0.2\ntimeout = 1\njitter = 0\n\n"
        '[checks.cmd]\nkind = "command"\ncommand = ["true"]\n\n'
        f'[checks.tcp]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    rng = random.Random(5)

    def serving() -> bool:
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            with urllib.request.urlopen(url, timeout=5) as answer:
                return (
                    b'fencekit_check_runs_total{check="cmd"' in answer.read()
                )
        except OSError:
            return False

    for _ in range(5):
        proc = popen_fencekit("agent", "--config", str(config))
        time.sleep(rng.uniform(0.0, 2.0))
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
    proc = popen_fencekit("agent", "--config", str(config))
    try:
        peers.wait_until(serving, 30, "the restarted agent to serve")
    finally:
        proc.terminate()
        _finish(proc)
