"""IPMI power off: fencekit against fence_ipmilan on one ipmi_sim.

Run from the repository root, in the project's virtual environment:

    .venv/bin/python -m bench.bench_ipmi [--runs 30] [--cycles 200]

Three measurements, all on the same ``ipmi_sim`` BMC in this process
tree, with the power set back on before every run:

1. whole commands, alternating: ``fencekit power off`` and Debian's
   ``fence_ipmilan -o off --lanplus --cipher 3 --power-wait 0``;
2. the same two commands under hyperfine, as a cross-check;
3. the library's verified off on a warm session, in process.

Medians, p90 and max are printed, with the ratio fencekit/incumbent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.ipmisim import IpmiSim

from fencekit.outcome import Action, PowerState
from fencekit.power.ipmi import IpmiDriver
from fencekit.power.operate import Verification, operate
from fencekit.secrets import Secret

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


def commands(sim: IpmiSim) -> dict[str, list[str]]:
    """The two whole commands being compared."""
    return {
        "fencekit power off": [
            FENCEKIT,
            "power",
            "off",
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
        ],
        "fence_ipmilan -o off": [
            shutil.which("fence_ipmilan") or "/usr/sbin/fence_ipmilan",
            "-a",
            sim.host,
            "-u",
            str(sim.port),
            "-l",
            sim.user,
            "-p",
            sim.password,
            "--lanplus",
            "--cipher",
            "3",
            "--power-wait",
            "0",
            "-o",
            "off",
        ],
    }


def alternate(sim: IpmiSim, runs: int) -> dict[str, list[float]]:
    """Run both commands in turn, ``runs`` times each."""
    timings: dict[str, list[float]] = {name: [] for name in commands(sim)}
    argvs = commands(sim)
    for _ in range(runs):
        for name, argv in argvs.items():
            sim.set_power(True)
            started = time.perf_counter()
            done = subprocess.run(argv, capture_output=True, check=False)
            elapsed = time.perf_counter() - started
            if done.returncode != 0 or sim.power_is_on():
                raise SystemExit(f"{name} failed: {done.stderr!r}")
            timings[name].append(elapsed)
    return timings


def hyperfine(sim: IpmiSim, runs: int, out: Path) -> dict[str, float]:
    """Mean seconds per command under hyperfine (power reset first)."""
    argvs = commands(sim)
    prepare = f"sh -c 'echo 1 > {sim.state}'"
    subprocess.run(
        [
            "hyperfine",
            "-N",
            "--runs",
            str(runs),
            "--prepare",
            prepare,
            "--export-json",
            str(out),
            *(subprocess.list2cmdline(a) for a in argvs.values()),
        ],
        check=True,
        capture_output=True,
    )
    results = json.loads(out.read_text())["results"]
    names = list(argvs)
    return {
        names[i]: round(r["median"] * 1000, 1) for i, r in enumerate(results)
    }


def max_rss(argv: list[str], sim: IpmiSim) -> int:
    """Peak resident memory (kB) of one run, from /usr/bin/time -v."""
    sim.set_power(True)
    done = subprocess.run(
        ["/usr/bin/time", "-v", *argv],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in done.stderr.splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1])
    return -1


async def library(sim: IpmiSim, cycles: int, settle: int = 2) -> list[float]:
    """Verified off on one warm session, ``cycles`` times."""
    # settle_interval 0: the confirming readings back to back, so that
    # the figure is the IPMI exchange itself, not the chosen wait.
    verify = Verification(
        timeout=10, settle=settle, interval=0.01, settle_interval=0
    )
    samples = []
    async with IpmiDriver(
        sim.host,
        port=sim.port,
        username=sim.user,
        password=Secret(sim.password),
    ) as driver:
        await operate(driver, Action.STATUS)
        for _ in range(cycles):
            sim.set_power(True)
            started = time.perf_counter()
            state = await operate(driver, Action.OFF, verification=verify)
            samples.append(time.perf_counter() - started)
            assert state is PowerState.OFF
    return samples


def main() -> None:
    """Run the benchmark and print the figures as JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sim = IpmiSim(Path(tmp) / "bmc", user="u", password="p").start()
        try:
            whole = alternate(sim, args.runs)
            hf = hyperfine(sim, args.runs, Path(tmp) / "hf.json")
            rss = {n: max_rss(a, sim) for n, a in commands(sim).items()}
            lib = asyncio.run(library(sim, args.cycles))
            lib1 = asyncio.run(library(sim, args.cycles, settle=1))
        finally:
            sim.stop()

    fk, incumbent = (summary(s) for s in whole.values())
    report = {
        "whole_command_alternating": dict(
            zip(whole, (fk, incumbent), strict=False)
        ),
        "ratio_median": round(fk["median_ms"] / incumbent["median_ms"], 2),
        "ratio_p90": round(fk["p90_ms"] / incumbent["p90_ms"], 2),
        "hyperfine_median_ms": hf,
        "max_rss_kb": rss,
        "library_warm_verified_off": summary(lib),
        "library_warm_verified_off_settle_1": summary(lib1),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
