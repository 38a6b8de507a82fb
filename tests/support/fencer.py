"""Inventories for the fencer tests, written for running ``ipmi_sim``s."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tests.support.ipmisim import IpmiSim

# The fencer's own settings in tests: short deadlines, fast polling.
FAST = {"fence_timeout": 30, "settle": 2, "interval": 0.05}


def write_inventory(
    path: Path,
    sims: Mapping[str, IpmiSim],
    *,
    levels: Mapping[str, Sequence[Sequence[str]]] | None = None,
    extra_devices: str = "",
    node_lines: Mapping[str, str] | None = None,
    fencer: Mapping[str, Any] | None = None,
) -> Path:
    """Write an inventory: node ``N`` is fenced by device ``bmc-N``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {
        "run_dir": str(path.parent / "run"),
        "journal": str(path.parent / "journal.jsonl"),
        **FAST,
        **(fencer or {}),
    }
    lines = ['cluster = "test"', "", "[fencer]"]
    lines += [f"{k} = {_toml(v)}" for k, v in settings.items()]
    for node, sim in sims.items():
        lines += [
            "",
            f"[devices.bmc-{node}]",
            'driver = "ipmi"',
            f'host = "{sim.host}"',
            f"port = {sim.port}",
            f'username = "{sim.user}"',
            f'password_file = "{sim.password_file()}"',
            "timeout = 10",
            "options = { cipher = 3 }",
        ]
    lines.append(extra_devices)
    for number, node in enumerate(sims, 1):
        node_levels = (levels or {}).get(node, [[f"bmc-{node}"]])
        lines += [
            "",
            "[[nodes]]",
            f'name = "{node}"',
            f"id = {number}",
            f'addresses = ["10.0.1.{number}"]',
            f"levels = {_toml([list(x) for x in node_levels])}",
            (node_lines or {}).get(node, ""),
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


def fencekit(
    *args: str, timeout: float = 60, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the ``fencekit`` command in a child process, no terminal."""
    kwargs.setdefault("env", dict(os.environ))
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
        **kwargs,
    )


def popen_fencekit(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """Start the ``fencekit`` command in a child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "fencekit.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        **kwargs,
    )
