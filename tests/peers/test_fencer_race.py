"""Crash and race safety of the fencer, with real processes and BMCs.

A node's fencer runs as its own ``fencekit fence`` process, and dies
with its node: ipmi_sim's chassis-control hook kills the process whose
PID is registered for a BMC when that BMC powers off.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fencekit.journal import read
from tests.support.fencer import popen_fencekit, write_inventory
from tests.support.ipmisim import IpmiSim

Factory = Callable[..., IpmiSim]

RUNS = 20
# node-a's delay: node-b's fencer waits this long before powering node-a
# off, so node-a wins the race. Paid only by a run that goes wrong: when
# node-a's fencer wins, node-b's fencer dies during its delay.
RACE_DELAY = 3.0


def test_fence_race_leaves_exactly_one_node_on(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """Two nodes fencing each other: one stays on, in 20 runs of 20."""
    sims = {n: ipmi_sim_factory(n) for n in ("node-a", "node-b")}
    inventories = {
        local: write_inventory(
            tmp_path / local / "inventory.toml",
            sims,
            node_lines={"node-a": f"delay = {RACE_DELAY}"},
            fencer={"local_node": local},
        )
        for local in sims
    }
    survivors = []

    for _ in range(RUNS):
        for sim in sims.values():
            sim.set_power(True)
        procs = {
            "node-a": popen_fencekit(
                "fence", "node-b", "--config", str(inventories["node-a"])
            ),
            "node-b": popen_fencekit(
                "fence", "node-a", "--config", str(inventories["node-b"])
            ),
        }
        for node, proc in procs.items():
            sims[node].kill_on_power_off(proc.pid)
        codes = {node: _wait(proc) for node, proc in procs.items()}

        on = [n for n, sim in sims.items() if sim.power_is_on()]
        assert len(on) == 1, (on, codes)
        survivors.append(on[0])
        assert codes[on[0]] == 0, codes

    assert survivors == ["node-a"] * RUNS


def _wait(proc: subprocess.Popen[str]) -> int:
    try:
        proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return proc.returncode


def test_sigkill_at_random_moments(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """Killed mid-fence 20 times: the journal reads, no unverified success."""
    sim = ipmi_sim_factory("node-b")
    inventory = write_inventory(tmp_path / "inventory.toml", {"node-b": sim})
    path = tmp_path / "journal.jsonl"
    rng = random.Random(int(os.environ.get("FENCEKIT_TEST_SEED", "3")))
    seen_ops: set[str] = set()
    killed = 0
    lifetime = _unkilled_run(sim, inventory)
    seen_ops |= set(_by_op(read(path).records))

    for _ in range(RUNS):
        sim.set_power(True)
        proc = popen_fencekit("fence", "node-b", "--config", str(inventory))
        time.sleep(rng.uniform(0.0, lifetime))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed += 1
        proc.communicate(timeout=60)

        records = read(path).records
        ops = _by_op(records)
        for op, events in ops.items():
            if op in seen_ops:
                continue
            _assert_verified_if_success(events, sim)
        seen_ops |= set(ops)

    assert killed > 0
    result = read(path)
    assert len(result.records) > 0
    assert all("event" in r for r in result.records)


def _unkilled_run(sim: IpmiSim, inventory: Path) -> float:
    """How long one whole fence process takes on this machine now."""
    started = time.monotonic()
    proc = popen_fencekit("fence", "node-b", "--config", str(inventory))
    assert _wait(proc) == 0
    return time.monotonic() - started


def _by_op(
    records: tuple[dict[str, Any], ...],
) -> dict[str, list[dict[str, Any]]]:
    ops: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        ops.setdefault(record["op"], []).append(record)
    return ops


def _assert_verified_if_success(
    events: list[dict[str, Any]], sim: IpmiSim
) -> None:
    """A recorded success has a verified off before it, and is true."""
    for index, record in enumerate(events):
        if record["event"] != "outcome" or not record["success"]:
            continue
        assert record["verified"] is True
        assert record["state"] == "off"
        before = events[:index]
        assert any(
            r["event"] == "attempt" and r["verified"] and r["state"] == "off"
            for r in before
        ), events
        assert not sim.power_is_on()
