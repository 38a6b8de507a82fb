"""One verified SCSI fence against the floor of one READ KEYS round trip.

Run from the repository root, in the project's virtual environment:

    .venv/bin/python -m bench.bench_scsi [--runs 50]

A tgtd on loopback serves one file-backed LUN; node A and node B each
hold a long-lived iSCSI session (their own initiator names). Each run:
B unfences (not timed); A fences B with :func:`fencekit.storage.fence`
(register on the path, preempt, read keys and reservation back: timed,
round trips counted); B's WRITE is checked to end in RESERVATION
CONFLICT (not timed). Interleaved with the fences, single READ KEYS
round trips on A's session give the floor. The first fence, which meets
tgtd's refusal of PREEMPT AND ABORT and falls back to PREEMPT, is
reported on its own.

Also timed: the whole ``fencekit storage fence`` command (interpreter
start-up and iSCSI login included). ``fence_scsi`` cannot run here (it
needs a kernel SCSI device), so there is no incumbent column.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.tgtd import BLOCK_SIZE, Tgtd

from fencekit.logging import configure
from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import format_key, key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.spc import PrIn

IQN = "iqn.2024-01.io.fencekit:{}"
KEY_A, KEY_B = key_for_node("bench", 1), key_for_node("bench", 2)
FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and max of ``samples`` in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 3),
        "p90_ms": round(p90 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
    }


def unit(url: str, node: str) -> LogicalUnit:
    path = PersistentReservations(
        IscsiTransport(url, initiator=IQN.format(node))
    )
    return LogicalUnit(url, (path,))


async def floor(path: PersistentReservations) -> float:
    """One READ KEYS round trip on the transport, nothing around it."""
    cdb = spc.pr_in_cdb(PrIn.READ_KEYS, 520)
    start = time.perf_counter()
    result = await path.transport.execute(cdb, data_in=520, timeout=10)
    elapsed = time.perf_counter() - start
    spc.check(result, what="READ KEYS")
    return elapsed


async def refused(b: LogicalUnit) -> bool:
    try:
        await b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )
    except spc.ReservationConflictError:
        return True
    return False


async def library(url: str, runs: int) -> dict[str, object]:
    a, b = unit(url, "node-a"), unit(url, "node-b")
    fences: list[float] = []
    floors: list[float] = []
    commands: set[int] = set()
    first: dict[str, object] = {}
    try:
        await operations.unfence([a], KEY_A)
        for _ in range(3):
            await floor(a.paths[0])  # warm-up
        for run in range(runs + 1):
            assert (await operations.unfence([b], KEY_B)).success
            floors.append(await floor(a.paths[0]))
            start = time.perf_counter()
            outcome = await operations.fence([a], KEY_A, KEY_B)
            elapsed = time.perf_counter() - start
            assert outcome.success, outcome.reason
            assert await refused(b), "B's write was not refused"
            floors.append(await floor(a.paths[0]))
            if run == 0:
                first = {
                    "ms": round(elapsed * 1000, 3),
                    "commands": outcome.commands,
                }
                continue
            fences.append(elapsed)
            commands.add(outcome.commands)
    finally:
        await operations.close_units([a, b])
    (per_fence,) = commands
    fence = summary(fences)
    base = summary(floors)
    ratio = fence["median_ms"] / (base["median_ms"] * per_fence)
    return {
        "fence": fence,
        "floor_read_keys": base,
        "commands_per_fence": per_fence,
        "ratio_to_floor_x_commands": round(ratio, 2),
        "first_fence_with_fallback": first,
    }


def command(url: str, runs: int) -> dict[str, float]:
    """The whole ``fencekit storage fence`` process, B re-registered."""

    async def unfence_b() -> LogicalUnit:
        b = unit(url, "node-b")
        assert (await operations.unfence([b], KEY_B)).success
        return b

    samples = []
    for _ in range(runs):
        loop = asyncio.new_event_loop()
        b = loop.run_until_complete(unfence_b())
        start = time.perf_counter()
        result = subprocess.run(
            [
                FENCEKIT, "storage", "fence", url,
                "--initiator", IQN.format("node-a"),
                "--key", format_key(KEY_A),
                "--victim-key", format_key(KEY_B),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        samples.append(time.perf_counter() - start)
        assert result.returncode == 0, result.stderr
        assert loop.run_until_complete(refused(b))
        loop.run_until_complete(operations.close_units([b]))
        loop.close()
    return summary(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--command-runs", type=int, default=10)
    parser.add_argument(
        "--verbosity",
        type=int,
        default=1,
        help="log level as -v gives it (1: the INFO line of each fence)",
    )
    args = parser.parse_args()
    configure(verbosity=args.verbosity, stream=sys.stderr, json=True)
    with tempfile.TemporaryDirectory() as scratch:
        target = Tgtd(Path(scratch) / "tgtd").start()
        try:
            results = {
                "library": asyncio.run(library(target.url(), args.runs)),
                "command": command(target.url(), args.command_runs),
            }
        finally:
            target.stop()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
