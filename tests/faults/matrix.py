"""The fault matrix: each run's result, and the table they make.

Every fault test records its runs here: the fence path, the fault, whether
fencekit reported success, whether the peer (read independently of
fencekit) agrees, and how long the run took against its deadline. A
*false success* is a reported success the peer contradicts; the matrix
requires none.

``pytest tests/faults`` prints the table at the end of the session. With
``FENCEKIT_MATRIX_FILE`` set, runs are also appended to that file as JSON
lines; ``python -m tests.faults.matrix FILE`` prints it as the Markdown
table kept in ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterable

RUNS_VARIABLE = "FENCEKIT_FAULT_RUNS"


def runs(default: int) -> int:
    """Runs per fault: ``default`` unless FENCEKIT_FAULT_RUNS says more."""
    text = os.environ.get(RUNS_VARIABLE, "")
    return int(text) if text.isdigit() and int(text) > 0 else default


@dataclasses.dataclass(frozen=True)
class Run:
    """One fence attempt under one fault.

    Attributes:
        path: the fence path (``ipmi``, ``redfish``, ``snmp-pdu``...).
        fault: the fault injected, in a few words.
        success: whether fencekit reported a verified success.
        peer_off: whether the peer reads the node off afterwards.
        duration: seconds the attempt took.
        deadline: the attempt's deadline in seconds.
        reason: fencekit's reason for a failure.
    """

    path: str
    fault: str
    success: bool
    peer_off: bool
    duration: float
    deadline: float
    reason: str | None = None

    @property
    def false_success(self) -> bool:
        return self.success and not self.peer_off


@dataclasses.dataclass
class Row:
    path: str
    fault: str
    runs: int = 0
    successes: int = 0
    failures: int = 0
    false_successes: int = 0
    worst: float = 0.0
    deadline: float = 0.0

    def add(self, run: Run) -> None:
        self.runs += 1
        self.successes += run.success
        self.failures += not run.success
        self.false_successes += run.false_success
        self.worst = max(self.worst, run.duration)
        self.deadline = max(self.deadline, run.deadline)


RECORDED: list[Run] = []


def record(run: Run) -> Run:
    """Keep ``run`` for the table (and the file, when one is set)."""
    RECORDED.append(run)
    path = os.environ.get("FENCEKIT_MATRIX_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(dataclasses.asdict(run)) + "\n")
    return run


def rows(runs: Iterable[Run]) -> list[Row]:
    """One row per (path, fault), in the order first seen."""
    table: dict[tuple[str, str], Row] = {}
    for run in runs:
        key = (run.path, run.fault)
        table.setdefault(key, Row(run.path, run.fault)).add(run)
    return list(table.values())


def markdown(runs: Iterable[Run]) -> str:
    """The matrix as a Markdown table."""
    lines = [
        "| path | fault | runs | successes | failures | false successes"
        " | worst time (s) | deadline (s) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows(runs):
        lines.append(
            f"| {row.path} | {row.fault} | {row.runs} | {row.successes}"
            f" | {row.failures} | {row.false_successes}"
            f" | {row.worst:.2f} | {row.deadline:g} |"
        )
    return "\n".join(lines)


def load(path: str) -> list[Run]:
    """Runs from a JSON-lines file written by :func:`record`."""
    with open(path, encoding="utf-8") as stream:
        return [Run(**json.loads(line)) for line in stream if line.strip()]


if __name__ == "__main__":
    print(markdown(load(sys.argv[1])))
