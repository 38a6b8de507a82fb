"""The fencer and its commands against ipmi_sim BMCs on loopback."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import pty
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fencekit.config import load
from fencekit.fencing import Fencer
from fencekit.journal import read
from tests.support import peers
from tests.support.fencer import fencekit, popen_fencekit, write_inventory
from tests.support.ipmisim import IpmiSim

Factory = Callable[..., IpmiSim]


def three_nodes(
    factory: Factory, tmp_path: Path, **kwargs: Any
) -> tuple[dict[str, IpmiSim], Path]:
    sims = {n: factory(n) for n in ("node-a", "node-b", "node-c")}
    return sims, write_inventory(tmp_path / "inventory.toml", sims, **kwargs)


def journal(tmp_path: Path) -> list[dict[str, Any]]:
    return list(read(tmp_path / "journal.jsonl").records)


def test_fence_one_of_three_nodes(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """fencekit fence node-b turns node-b off and leaves the others on."""
    sims, inventory = three_nodes(ipmi_sim_factory, tmp_path)

    done = fencekit("fence", "node-b", "--config", str(inventory))

    assert done.returncode == 0, done.stderr
    assert "node-b: off verified through bmc-node-b" in done.stdout
    assert done.stderr == ""
    assert sims["node-b"].ipmitool_status() == "off"
    assert sims["node-a"].ipmitool_status() == "on"
    assert sims["node-c"].ipmitool_status() == "on"
    assert sims["node-b"].commands() == ["power=0"]
    records = journal(tmp_path)
    assert [r["event"] for r in records] == ["requested", "attempt", "outcome"]
    assert {r["node"] for r in records} == {"node-b"}
    assert records[-1]["success"] is True
    assert records[1]["state"] == "off"


def test_json_outcome_and_history(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """--json prints the outcome; history shows and filters the journal."""
    _, inventory = three_nodes(ipmi_sim_factory, tmp_path)

    done = fencekit("fence", "node-c", "--config", str(inventory), "--json")
    fencekit("fence", "node-a", "-o", "reboot", "--config", str(inventory))
    text = fencekit("history", "node-c", "--config", str(inventory))
    as_json = fencekit("history", "--config", str(inventory), "--json")

    outcome = json.loads(done.stdout)
    assert outcome["success"] is True
    assert outcome["node"] == "node-c"
    assert outcome["state"] == "off"
    assert text.returncode == 0
    assert len(text.stdout.splitlines()) == 3
    assert "node-c off outcome success through bmc-node-c" in text.stdout
    events = [json.loads(line) for line in as_json.stdout.splitlines()]
    reboot = [e["event"] for e in events if e["node"] == "node-a"]
    assert reboot == ["requested", "attempt", "off_time", "attempt", "outcome"]
    actions = [e.get("device_action") for e in events if e["node"] == "node-a"]
    assert [a for a in actions if a] == ["off", "on"]


def test_nodes_and_check(ipmi_sim_factory: Factory, tmp_path: Path) -> None:
    """nodes lists the inventory; check reports every device as ok."""
    _, inventory = three_nodes(ipmi_sim_factory, tmp_path)

    nodes = fencekit("nodes", "--config", str(inventory), "--json")
    check = fencekit("check", "--config", str(inventory))
    check_json = fencekit("check", "--config", str(inventory), "--json")

    assert nodes.returncode == 0
    names = [n["name"] for n in json.loads(nodes.stdout)["nodes"]]
    assert names == ["node-a", "node-b", "node-c"]
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": ok, power on") == 3
    assert check.stderr == ""
    data = json.loads(check_json.stdout)
    assert data["ok"] is True
    assert [d["device"] for d in data["devices"]] == [
        "bmc-node-a",
        "bmc-node-b",
        "bmc-node-c",
    ]


def test_check_fails_per_device_with_reason(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """A device refusing its credentials fails check, with the reason."""
    sims, inventory = three_nodes(ipmi_sim_factory, tmp_path)
    sims["node-c"].password_file().write_text("wrong-password\n")

    check = fencekit("check", "--config", str(inventory))

    assert check.returncode == 1
    lines = check.stdout.splitlines()
    assert lines[0].startswith("bmc-node-a: ipmi")
    assert ": ok, power on" in lines[0]
    assert "bmc-node-c" in lines[2]
    assert "FAILED" in lines[2]
    assert "refused" in lines[2]


def test_progress_only_on_a_terminal(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """On a terminal check shows progress on stderr; --json shows none."""
    _, inventory = three_nodes(ipmi_sim_factory, tmp_path)

    tty = _run_with_terminal_stderr(["check", "--config", str(inventory)])
    quiet = _run_with_terminal_stderr(
        ["check", "--config", str(inventory), "--json"]
    )
    fence = _run_with_terminal_stderr(
        ["fence", "node-a", "node-b", "--config", str(inventory)]
    )

    assert "checking 3 fence device(s)" in tty
    assert "[3/3]" in tty
    assert quiet == ""
    assert "node-a: level 1 bmc-node-a (ipmi" in fence
    assert "node-b: level 1 bmc-node-b (ipmi" in fence


def _run_with_terminal_stderr(args: list[str]) -> str:
    """Run fencekit with stderr on a pseudo-terminal; return its output."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fencekit.cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=child,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    proc.wait(timeout=60)
    os.close(main)
    return b"".join(chunks).decode()


def test_second_level_after_unreachable_first(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """Level 1 unreachable, level 2 works: fenced through level 2."""
    sims = {"node-a": ipmi_sim_factory("node-a")}
    sims["node-b"] = ipmi_sim_factory("node-b")
    silent = peers.free_port(socket.SOCK_DGRAM)
    password = sims["node-b"].password_file()
    dead = f"""
[devices.dead-bmc]
driver = "ipmi"
host = "127.0.0.1"
port = {silent}
username = "admin"
password_file = "{password}"
timeout = 1.5
options = {{ cipher = 3 }}
"""
    inventory = write_inventory(
        tmp_path / "inventory.toml",
        sims,
        extra_devices=dead,
        levels={"node-b": [["dead-bmc"], ["bmc-node-b"]]},
    )

    done = fencekit("fence", "node-b", "--config", str(inventory), "--json")

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["device"] == "bmc-node-b"
    assert sims["node-b"].ipmitool_status() == "off"
    attempts = [r for r in journal(tmp_path) if r["event"] == "attempt"]
    assert [(r["level"], r["device"], r["verified"]) for r in attempts] == [
        (1, "dead-bmc", False),
        (2, "bmc-node-b", True),
    ]
    assert attempts[0]["reason"]


def test_every_level_failing(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """All levels failing exits 1 and names each level's cause."""
    sims = {"node-b": ipmi_sim_factory("node-b")}
    inventory = write_inventory(tmp_path / "inventory.toml", sims)
    sims["node-b"].password_file().write_text("wrong-password\n")

    done = fencekit("fence", "node-b", "--config", str(inventory))

    assert done.returncode == 1
    error = done.stderr.splitlines()[-1]
    assert error.startswith("fencekit: error: node-b: off failed:")
    assert "every fence level failed" in error
    assert "level 1: bmc-node-b" in error
    assert "Traceback" not in done.stderr
    assert sims["node-b"].ipmitool_status() == "on"
    assert journal(tmp_path)[-1]["success"] is False


async def test_fifty_concurrent_fences_one_command(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """50 concurrent fence(node-b): one power-off, one shared outcome."""
    sims, inventory = three_nodes(ipmi_sim_factory, tmp_path)
    fencer = Fencer(load(inventory))

    outcomes = await asyncio.gather(
        *(fencer.fence("node-b") for _ in range(50))
    )

    assert sims["node-b"].commands() == ["power=0"]
    assert all(o is outcomes[0] for o in outcomes)
    assert outcomes[0].success
    assert sims["node-b"].ipmitool_status() == "off"
    assert [r["event"] for r in journal(tmp_path)].count("requested") == 1


def test_five_processes_serialised(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """5 processes fencing node-b: one power-off, the rest verify it off."""
    sims, inventory = three_nodes(ipmi_sim_factory, tmp_path)

    procs = [
        popen_fencekit("fence", "node-b", "--config", str(inventory), "--json")
        for _ in range(5)
    ]
    results = [(p.wait(timeout=90), p.communicate()) for p in procs]

    assert [code for code, _ in results] == [0] * 5, results
    outcomes = [json.loads(out) for _, (out, _) in results]
    assert sims["node-b"].commands() == ["power=0"]
    assert sorted(o["commands_sent"] for o in outcomes) == [0, 0, 0, 0, 1]
    assert all(o["state"] == "off" and o["verified"] for o in outcomes)
    records = journal(tmp_path)
    spans = _lock_spans(records)
    assert len(spans) == 5
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, "two fences of node-b overlapped"


def _lock_spans(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(first attempt, outcome) times of each operation, in order."""
    first: dict[str, str] = {}
    spans = []
    for record in records:
        if record["event"] == "attempt":
            first.setdefault(record["op"], record["time"])
        if record["event"] == "outcome":
            spans.append((first[record["op"]], record["time"]))
    return sorted(spans)


def test_canary_password_never_leaks(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """A failing fence shows the password in no output, log or journal."""
    canary = "fk-canary-5c1e"
    sims = {"node-b": ipmi_sim_factory("node-b")}
    inventory = write_inventory(tmp_path / "inventory.toml", sims)
    sims["node-b"].password_file().write_text(canary + "\n")

    fence = fencekit("-vv", "fence", "node-b", "--config", str(inventory))
    check = fencekit("-vv", "check", "--config", str(inventory), "--json")
    history = fencekit("history", "--config", str(inventory), "--json")

    assert fence.returncode == 1
    assert check.returncode == 1
    for done in (fence, check, history):
        assert canary not in done.stdout
        assert canary not in done.stderr
    assert canary not in (tmp_path / "journal.jsonl").read_text()


def test_example_inventory_commands(
    ipmi_sim_factory: Factory, tmp_path: Path
) -> None:
    """contrib's example inventory drives nodes, check, fence, history."""
    example = Path(__file__).parents[2] / "contrib/inventory.example.toml"
    sims = {n: ipmi_sim_factory(n, user="fence") for n in ("node-a", "node-b")}
    text = example.read_text()
    for name, old in (("node-a", "10.0.0.11"), ("node-b", "10.0.0.12")):
        sim = sims[name]
        text = text.replace(
            f'host = "{old}"', f'host = "{sim.host}"\nport = {sim.port}'
        )
    text = text.replace(
        "/etc/fencekit/bmc-a.pass", str(sims["node-a"].password_file())
    )
    text = text.replace("/run/fencekit", str(tmp_path / "run"))
    text = text.replace("/var/lib/fencekit", str(tmp_path))
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(text)
    env = dict(os.environ, FENCEKIT_BMC_B_PASSWORD=sims["node-b"].password)
    config = ("--config", str(inventory))

    nodes = fencekit("nodes", *config, env=env)
    check = fencekit("check", *config, env=env)
    fence = fencekit("fence", "node-b", *config, env=env)
    history = fencekit("history", "node-b", *config, env=env)

    assert nodes.returncode == 0, nodes.stderr
    assert "node-a (id 1, 10.0.1.1): levels bmc-a, delay 5 s" in nodes.stdout
    assert check.returncode == 0, check.stderr
    assert check.stdout.count(": ok, power on") == 2
    assert fence.returncode == 0, fence.stderr
    assert sims["node-b"].ipmitool_status() == "off"
    assert sims["node-a"].ipmitool_status() == "on"
    assert "outcome success through bmc-b" in history.stdout
