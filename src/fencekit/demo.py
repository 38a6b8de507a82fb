"""``fencekit demo``: a takeover on an embedded lab, on loopback.

Two nodes, each with a BMC (OpenIPMI's ``ipmi_sim`` when installed,
fencekit's simulated BMC otherwise) and a web service. The monitoring
agent checks both services, serves ``/metrics``, and is configured to
fence node-b when its service stays down. The scenario stops node-b's
service; the agent reports it down after its threshold; the fencer
fences node-b and verifies the power off; the journal, the metrics and
the timeline show it.

Everything the demo starts it stops, and everything it writes is in one
temporary directory, removed at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from fencekit.lab.bmc import IpmiSimBmc, LabBmc, SimulatedBmc
from fencekit.lab.postgres import LabPostgres
from fencekit.lab.process import free_tcp_port
from fencekit.lab.snmptrapd import LabTrapReceiver

__all__ = ["DemoResult", "run_demo"]

_CHECK_INTERVAL = 0.5
_CHECK_TIMEOUT = 1.0
_DOWN_AFTER = 3


@dataclasses.dataclass
class DemoResult:
    """What the demo saw.

    Attributes:
        fenced: node-b was fenced and its power verified off.
        bmc_kind: which BMC implementation the lab used.
        detection: seconds from stopping the service to "down".
        fencing: seconds from "down" to the verified outcome.
        outcome: the fence outcome as a dict, when there was one.
    """

    fenced: bool = False
    bmc_kind: str = ""
    detection: float | None = None
    fencing: float | None = None
    outcome: dict[str, Any] | None = None


class _Timeline:
    """Prints timestamped lines relative to the demo's start."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.start = time.monotonic()

    def say(self, text: str) -> float:
        now = time.monotonic()
        print(f"[{now - self.start:7.3f} s] {text}", file=self.out, flush=True)
        return now


class _Service:
    """A tiny web service on loopback, standing for a node's application."""

    def __init__(self, name: str) -> None:
        body = f"{name} ok\n".encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), Handler
        )
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self._thread = threading.Thread(
            target=self.server.serve_forever, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop answering: the port is closed."""
        if self._thread.is_alive():
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)


def _bmc_class(force_simulated: bool) -> type[LabBmc]:
    if not force_simulated and IpmiSimBmc.available():
        return IpmiSimBmc
    return SimulatedBmc


def _inventory(lab: Path, bmcs: dict[str, LabBmc]) -> str:
    devices = []
    for node, bmc in bmcs.items():
        options = (
            f"options = {{ cipher = {bmc.cipher} }}\n" if bmc.cipher else ""
        )
        devices.append(
            f'[devices.bmc-{node[-1]}]\ndriver = "ipmi"\n'
            f'host = "{bmc.host}"\nport = {bmc.port}\n'
            f'username = "{bmc.user}"\n'
            f'password_file = "{bmc.password_file()}"\ntimeout = 10\n'
            + options
        )
    nodes = []
    for index, node in enumerate(bmcs, start=1):
        nodes.append(
            f'[[nodes]]\nname = "{node}"\nid = {index}\n'
            f'levels = ["bmc-{node[-1]}"]\n'
        )
    return (
        'cluster = "demo"\n\n[fencer]\n'
        f'run_dir = "{lab / "run"}"\n'
        f'journal = "{lab / "journal.jsonl"}"\n'
        'local_node = "node-a"\nfence_timeout = 30\nsettle = 2\n'
        "interval = 0.1\n\n" + "\n".join(devices) + "\n" + "\n".join(nodes)
    )


def _agent_config(
    services: dict[str, _Service],
    inventory: Path,
    listen: str,
    postgres: LabPostgres | None,
    traps: LabTrapReceiver | None,
) -> str:
    checks = []
    notifications = ""
    if traps is not None:
        notifications = (
            "\n[notifications.destinations.lab]\n"
            f'host = "127.0.0.1"\nport = {traps.port}\n'
            f'community_file = "{traps.community_file()}"\n'
        )
    if postgres is not None:
        checks.append(
            f'[checks.db-b]\nkind = "postgres"\nhost = "{postgres.host}"\n'
            f'port = {postgres.port}\nuser = "postgres"\nnode = "node-b"\n'
        )
    for node, service in services.items():
        actions = '\nactions = ["fence-node-b"]' if node == "node-b" else ""
        checks.append(
            f'[checks.web-{node[-1]}]\nkind = "http"\nurl = "{service.url}"\n'
            f'node = "{node}"{actions}\n'
        )
    return (
        f'[agent]\nlisten = "{listen}"\ninventory = "{inventory}"\n\n'
        f"[defaults]\ninterval = {_CHECK_INTERVAL}\n"
        f"timeout = {_CHECK_TIMEOUT}\ndown_after = {_DOWN_AFTER}\n"
        "up_after = 1\n\n"
        '[actions.fence-node-b]\ntype = "fence"\nnode = "node-b"\n'
        'on = ["down"]\n\n' + "\n".join(checks) + notifications
    )


@contextlib.contextmanager
def _lab_dir(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fencekit-demo-"))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)


def run_demo(
    *,
    out: TextIO = sys.stdout,
    keep_running: bool = False,
    simulated_bmc: bool = False,
) -> DemoResult:
    """Run the takeover scenario on an embedded lab.

    Args:
        out: where the timeline goes.
        keep_running: leave the lab up after the scenario, printing how
            to explore it, until Ctrl-C.
        simulated_bmc: use fencekit's simulated BMC even when
            ``ipmi_sim`` is installed.

    Returns:
        What happened, with the detection and fencing times.
    """
    timeline = _Timeline(out)
    result = DemoResult()
    started: list[Callable[[], None]] = []
    with _lab_dir(keep=False) as lab:
        try:
            return _scenario(
                lab, timeline, result, started, simulated_bmc, keep_running
            )
        except KeyboardInterrupt:
            if keep_running and result.outcome is not None:
                return result
            raise
        finally:
            for stop in reversed(started):
                with contextlib.suppress(Exception):
                    stop()
            timeline.say("lab stopped, temporary files removed")


def _scenario(
    lab: Path,
    timeline: _Timeline,
    result: DemoResult,
    started: list[Callable[[], None]],
    simulated_bmc: bool,
    keep_running: bool,
) -> DemoResult:
    from fencekit.monitor import load_config

    kind = _bmc_class(simulated_bmc)
    result.bmc_kind = kind.kind
    bmcs: dict[str, LabBmc] = {}
    for node in ("node-a", "node-b"):
        bmc = kind(lab / node, user="admin", password="demo-pass")
        bmc.start()
        started.append(bmc.stop)
        bmcs[node] = bmc
    timeline.say(f"lab in {lab}")
    timeline.say(
        f"two nodes, each with a BMC ({kind.kind}"
        + (", cipher suite 3" if kind.cipher else "")
        + ") and a web service"
    )
    services = {node: _Service(node) for node in bmcs}
    for service in services.values():
        started.append(service.stop)
    postgres = _start_postgres(lab / "node-b" / "pg", timeline, started)
    traps = _start_traps(lab / "snmptrapd", timeline, started)

    inventory = lab / "inventory.toml"
    inventory.write_text(_inventory(lab, bmcs))
    listen = f"127.0.0.1:{free_tcp_port()}"
    agent_toml = lab / "agent.toml"
    agent_toml.write_text(
        _agent_config(services, inventory, listen, postgres, traps)
    )

    config = load_config(agent_toml)
    parts = _Lab(lab, bmcs, services, postgres, traps, listen)
    return asyncio.run(
        _run_agent(config, parts, timeline, result, keep_running)
    )


def _start_postgres(
    workdir: Path, timeline: _Timeline, started: list[Callable[[], None]]
) -> LabPostgres | None:
    """node-b's PostgreSQL, when the server is installed."""
    if not LabPostgres.available():
        timeline.say("PostgreSQL is not installed: no database check")
        return None
    postgres = LabPostgres(workdir)
    started.append(postgres.stop)
    try:
        postgres.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        timeline.say(f"PostgreSQL did not start ({exc}): no database check")
        return None
    timeline.say(f"node-b also runs PostgreSQL on port {postgres.port}")
    return postgres


def _start_traps(
    workdir: Path, timeline: _Timeline, started: list[Callable[[], None]]
) -> LabTrapReceiver | None:
    """A local SNMP notification receiver, when snmptrapd is installed."""
    if not LabTrapReceiver.available():
        timeline.say("snmptrapd is not installed: no SNMP notifications")
        return None
    traps = LabTrapReceiver(workdir)
    started.append(traps.stop)
    try:
        traps.start()
    except (OSError, RuntimeError) as exc:
        timeline.say(f"snmptrapd did not start ({exc}): no notifications")
        return None
    timeline.say("snmptrapd receives the agent's SNMP notifications")
    return traps


@dataclasses.dataclass
class _Lab:
    path: Path
    bmcs: dict[str, LabBmc]
    services: dict[str, _Service]
    postgres: LabPostgres | None
    traps: LabTrapReceiver | None
    listen: str


async def _run_agent(
    config: Any,
    lab: _Lab,
    timeline: _Timeline,
    result: DemoResult,
    keep_running: bool,
) -> DemoResult:
    from fencekit.monitor import Agent, Event, State

    bmcs, listen = lab.bmcs, lab.listen
    checks = [f"web-{n[-1]}" for n in bmcs]
    if lab.postgres is not None:
        checks.append("db-b")

    agent = Agent(config)
    seen: dict[tuple[str, str], float] = {}

    async def watch(event: Event) -> None:
        key = (event.check, event.state.value)
        seen.setdefault(key, time.monotonic())
        timeline.say(
            f"agent: check {event.check} is {event.state.value}"
            + (
                f" after {event.streak} failures ({event.outcome.reason})"
                if event.state is State.DOWN
                else ""
            )
        )

    agent.monitor.subscribe(watch)
    task = asyncio.create_task(agent.run())
    try:
        await _until(lambda: all((c, "up") in seen for c in checks), 30)
        timeline.say(f"agent serves /metrics on http://{listen}/metrics")

        stopped = timeline.say("scenario: node-b's web service stops")
        lab.services["node-b"].stop()
        await _until(lambda: ("web-b", "down") in seen, 30)
        down = seen[("web-b", "down")]
        result.detection = down - stopped

        record = await _until_outcome(lab.path / "journal.jsonl", 60)
        result.outcome = record
        result.fencing = time.monotonic() - down
        result.fenced = (
            bool(record.get("verified")) and not bmcs["node-b"].power_is_on()
        )
        _say_outcome(record, timeline)
        if lab.postgres is not None and result.fenced:
            timeline.say("node-b is off: its PostgreSQL stops with it")
            lab.postgres.stop()
            await _until(lambda: ("db-b", "down") in seen, 30)
        if lab.traps is not None:
            await _until_traps(lab.traps, timeline)
        _report(record, bmcs, listen, lab.path, timeline, result)

        if keep_running:
            _explore(bmcs, listen, lab.path, timeline)
            await asyncio.Event().wait()
        return result
    finally:
        agent.stop()
        await asyncio.wait_for(task, 30)


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the lab did not reach the expected state")
        await asyncio.sleep(0.02)


async def _until_traps(
    traps: LabTrapReceiver, timeline: _Timeline, timeout: float = 10.0
) -> None:
    """Wait for the check-down and node-fenced notifications."""
    wanted = {"fencekitCheckDown", "fencekitNodeFenced"}
    deadline = time.monotonic() + timeout
    while not wanted <= set(traps.received()):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    received = ", ".join(traps.received()) or "none"
    timeline.say(f"snmptrapd received: {received}")


async def _until_outcome(journal: Path, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if journal.exists():
            for line in journal.read_text().splitlines():
                with contextlib.suppress(ValueError):
                    record = json.loads(line)
                    if record.get("event") == "outcome":
                        return dict(record)
        await asyncio.sleep(0.05)
    raise TimeoutError("no fence outcome in the journal")


def _say_outcome(record: dict[str, Any], timeline: _Timeline) -> None:
    verdict = "verified OFF" if record.get("verified") else "NOT verified"
    timeline.say(
        f"fencer: node-b fenced through {record.get('device', '?')}"
        f" ({record.get('method', '?')}): {verdict}"
        + (f" - {record['reason']}" if record.get("reason") else "")
    )


def _report(
    record: dict[str, Any],
    bmcs: dict[str, LabBmc],
    listen: str,
    lab: Path,
    timeline: _Timeline,
    result: DemoResult,
) -> None:
    import requests

    power = "on" if bmcs["node-b"].power_is_on() else "off"
    timeline.say(
        f"node-b's BMC reads power {power};"
        f" commands it received: {', '.join(bmcs['node-b'].commands())}"
    )
    timeline.say(
        f"node-a's BMC reads power "
        f"{'on' if bmcs['node-a'].power_is_on() else 'off'} (untouched)"
    )
    events = [
        json.loads(line).get("event")
        for line in (lab / "journal.jsonl").read_text().splitlines()
        if line.strip()
    ]
    timeline.say(f"journal records: {', '.join(str(e) for e in events)}")

    body = requests.get(f"http://{listen}/metrics", timeout=5).text
    for line in body.splitlines():
        wanted = ("fencekit_check_up{", "fencekit_fence_operations_total")
        if line.startswith(wanted):
            timeline.say(f"/metrics: {line}")

    timeline.say(
        f"summary: detection {result.detection:.2f} s"
        f" (interval {_CHECK_INTERVAL} s x {_DOWN_AFTER} failures),"
        f" fencing {result.fencing:.2f} s, verified:"
        f" {'yes' if result.fenced else 'NO'}"
    )


def _explore(
    bmcs: dict[str, LabBmc], listen: str, lab: Path, timeline: _Timeline
) -> None:
    bmc = bmcs["node-b"]
    cipher = f" --cipher {bmc.cipher}" if bmc.cipher else ""
    timeline.say("the lab stays up until Ctrl-C; try:")
    print(
        f"  fencekit power status --driver ipmi --host {bmc.host}"
        f" --port {bmc.port} --username {bmc.user}"
        f" --password-file {bmc.password_file()}{cipher}\n"
        f"  curl http://{listen}/metrics\n"
        f"  fencekit history --config {lab / 'inventory.toml'}\n"
        f"  fencekit nodes --config {lab / 'inventory.toml'}",
        file=timeline.out,
        flush=True,
    )
