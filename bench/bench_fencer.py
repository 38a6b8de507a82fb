"""Parallel fences: fencekit's fencer against 32 fence_ipmilan processes.

Run from the repository root, in the project's virtual environment:

    .venv/bin/python -m bench.bench_fencer [--runs 7] [--sizes 1 8 32]

For N nodes (one ``ipmi_sim`` BMC each, power set back on before every
run), the wall time to fence all N at once, measured three ways:

1. ``fencekit fence node-1 ... node-N --config FILE``, the whole command
   (interpreter start-up included), with ``max_parallel`` = N;
2. ``Fencer.fence_many`` in this process (the library alone);
3. for the largest N only: N ``fence_ipmilan -o off`` processes started
   at once (lanplus, cipher 3, ``power_wait=0``; options on standard
   input, as Pacemaker passes them), until the last one exits.

Every run checks that every BMC reads off afterwards. Medians, p90 and
max are printed, and the ratio N-node/1-node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.fencer import write_inventory
from tests.support.ipmisim import IpmiSim

from fencekit.config import load
from fencekit.fencing import Fencer

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and max of ``samples`` in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def reset(sims: dict[str, IpmiSim]) -> None:
    for sim in sims.values():
        sim.set_power(True)


def check_off(sims: dict[str, IpmiSim], what: str) -> None:
    on = [name for name, sim in sims.items() if sim.power_is_on()]
    if on:
        raise SystemExit(f"{what}: still on after the run: {on}")


def cli_runs(
    sims: dict[str, IpmiSim], inventory: Path, runs: int
) -> list[float]:
    """The whole ``fencekit fence`` command, ``runs`` times."""
    argv = [FENCEKIT, "fence", *sims, "--config", str(inventory), "--json"]
    samples = []
    for _ in range(runs):
        reset(sims)
        started = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, check=False)
        samples.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"fencekit fence failed: {done.stderr!r}")
        check_off(sims, "fencekit fence")
    return samples


def machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (Linux /proc/stat)."""
    with open("/proc/stat") as stream:
        ticks = [int(x) for x in stream.readline().split()[1:]]
    idle = ticks[3] + ticks[4]
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def library_runs(
    sims: dict[str, IpmiSim], inventory: Path, runs: int
) -> tuple[list[float], dict[str, float]]:
    """``Fencer.fence_many`` in this process, ``runs`` times.

    Also returns the median CPU seconds per run used by this process and
    by the whole machine (BMC simulators and their hooks included).
    """
    loaded = load(inventory)
    cpu: dict[str, list[float]] = {"fencekit": [], "machine": []}

    async def once() -> float:
        async with Fencer(loaded) as fencer:
            mine, busy = own_cpu(), machine_busy()
            started = time.perf_counter()
            outcomes = await fencer.fence_many(list(sims))
            elapsed = time.perf_counter() - started
            cpu["fencekit"].append(own_cpu() - mine)
            cpu["machine"].append(machine_busy() - busy)
        if not all(o.success for o in outcomes):
            raise SystemExit(f"fence_many failed: {outcomes}")
        return elapsed

    samples = []
    for _ in range(runs):
        reset(sims)
        samples.append(asyncio.run(once()))
        check_off(sims, "Fencer.fence_many")
    medians = {
        f"{k}_cpu_s": round(statistics.median(v), 3) for k, v in cpu.items()
    }
    return samples, medians


def incumbent_runs(sims: dict[str, IpmiSim], runs: int) -> list[float]:
    """N ``fence_ipmilan`` processes at once, ``runs`` times."""
    agent = shutil.which("fence_ipmilan") or "/usr/sbin/fence_ipmilan"
    samples = []
    for _ in range(runs):
        reset(sims)
        started = time.perf_counter()
        procs = []
        for sim in sims.values():
            proc = subprocess.Popen(
                [agent],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            assert proc.stdin is not None
            proc.stdin.write(_agent_options(sim).encode())
            proc.stdin.close()
            procs.append(proc)
        codes = [proc.wait() for proc in procs]
        samples.append(time.perf_counter() - started)
        if any(codes):
            raise SystemExit(f"fence_ipmilan failed: exit codes {codes}")
        check_off(sims, "fence_ipmilan")
    return samples


def _agent_options(sim: IpmiSim) -> str:
    return "\n".join(
        [
            "action=off",
            f"ip={sim.host}",
            f"ipport={sim.port}",
            f"username={sim.user}",
            f"password={sim.password}",
            "lanplus=1",
            "cipher=3",
            "power_wait=0",
            "",
        ]
    )


def main() -> None:
    from fencekit.logging import configure

    configure(verbosity=0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    results: dict[str, dict[str, dict[str, float]]] = {}
    largest = max(args.sizes)
    with tempfile.TemporaryDirectory(prefix="bench-fencer-") as tmp:
        base = Path(tmp)
        sims: dict[str, IpmiSim] = {}
        try:
            for size in sorted(args.sizes):
                while len(sims) < size:
                    name = f"node-{len(sims) + 1}"
                    sims[name] = IpmiSim(base / name).start()
                group = dict(list(sims.items())[:size])
                inventory = write_inventory(
                    base / f"inventory-{size}.toml",
                    group,
                    fencer={"max_parallel": size},
                )
                key = f"{size} node(s)"
                command = summary(cli_runs(group, inventory, args.runs))
                samples, cpu = library_runs(group, inventory, args.runs)
                results[key] = {
                    "fencekit fence (command)": command,
                    "Fencer.fence_many (library)": {**summary(samples), **cpu},
                }
                if size == largest:
                    results[key][f"{size} x fence_ipmilan"] = summary(
                        incumbent_runs(group, args.runs)
                    )
        finally:
            for sim in sims.values():
                sim.stop()

    print(json.dumps(results, indent=2))
    smallest = f"{min(args.sizes)} node(s)"
    for way in ("fencekit fence (command)", "Fencer.fence_many (library)"):
        ratio = (
            results[f"{largest} node(s)"][way]["median_ms"]
            / results[smallest][way]["median_ms"]
        )
        print(f"{way}: {largest}/{min(args.sizes)} median ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
