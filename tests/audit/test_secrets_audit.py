"""The secrets audit: canary credentials on every fence path and check.

Every credential below is a distinct *canary* (all share the prefix
:data:`PREFIX`). Each test runs a path at its most verbose (``-vv``,
fence agents with ``verbose=1`` and a ``debug_file``), with the right
credential and with a wrong one (so that errors and their chains are
produced too), and then searches for any canary, its base64 in Basic
form (``user:password``) and its hex:

- the standard output and error of every fencekit process;
- log files (the fence agents' ``debug_file``), the journal;
- ``/metrics`` of the agent, scraped while it runs its checks;
- the notifications snmptrapd received (SNMPv3, canary keys);
- exception texts, their ``repr`` and every cause in the chain;
- the argv of every process on the machine, sampled every few
  milliseconds while a test runs (fencekit's children included).
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import peers
from tests.support import snmp as snmp_peer
from tests.support.db import Postgres
from tests.support.ipmisim import IpmiSim
from tests.support.redfish import SYSTEM_IDS, SushyEmulator
from tests.support.snmp import SnmpSim

PREFIX = "fkCANARY"
IPMI_PW = PREFIX + "-ipmi-3e1d"
IPMI_WRONG = PREFIX + "-ipmi-wrong-77"
REDFISH_PW = PREFIX + "-redfish-a9"
REDFISH_WRONG = PREFIX + "-redfish-wrong-5"
COMMUNITY = PREFIX + "snmpc0mm"
TRAP_AUTH = PREFIX + "-trapauth-1"
TRAP_PRIV = PREFIX + "-trappriv-2"
PG_PW = PREFIX + "-pg-4411"
ALL = (
    IPMI_PW,
    IPMI_WRONG,
    REDFISH_PW,
    REDFISH_WRONG,
    COMMUNITY,
    TRAP_AUTH,
    TRAP_PRIV,
    PG_PW,
)
FENCEKIT = [sys.executable, "-m", "fencekit.cli"]


def forms(
    secret: str, users: tuple[str, ...] = ("admin", "audit")
) -> list[str]:
    """The canary as it could leak: plain, Basic base64, hex."""
    found = [secret, secret.encode().hex()]
    for user in users:
        found.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


NEEDLES = [PREFIX, PREFIX.lower()] + [f for s in ALL for f in forms(s)]


def leaks(text: str) -> list[str]:
    """Every needle found in ``text``."""
    return [n for n in NEEDLES if n in text]


def error_text(exc: BaseException | None) -> str:
    """An exception, its repr and args, and every cause in its chain."""
    parts = []
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


class ArgvWatch:
    """Samples every process's argv (``/proc/*/cmdline``) in a thread."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        argv = (
                            f.read()
                            .replace(b"\0", b" ")
                            .decode(errors="replace")
                        )
                except OSError:
                    continue
                if leaks(argv):
                    self.found.append(argv)
            self.samples += 1
            time.sleep(0.003)


@pytest.fixture
def argv_watch() -> Iterator[ArgvWatch]:
    """No process's argv holds a canary while the test runs."""
    with ArgvWatch() as watch:
        yield watch
    print(f"audit: argv of every process sampled {watch.samples} times")
    assert watch.samples > 0
    assert not watch.found, watch.found


def run(
    *args: str, stdin: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """A fencekit command; its output is searched by the caller."""
    return subprocess.run(
        [*FENCEKIT, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def agent(
    name: str, stdin: str, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """A fence agent from ``agents/``, options on standard input."""
    script = Path(__file__).resolve().parents[2] / "agents" / name
    return subprocess.run(
        [sys.executable, str(script)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def secret_file(folder: Path, name: str, value: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


class Said:
    """Everything produced by one test, searched at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []

    def add(self, where: str, text: str) -> None:
        self.parts.append((where, text))

    def process(
        self, where: str, done: subprocess.CompletedProcess[str]
    ) -> None:
        self.add(f"{where} stdout", done.stdout)
        self.add(f"{where} stderr", done.stderr)

    def files(self, *paths: Path) -> None:
        for path in paths:
            if path.exists():
                self.add(str(path), path.read_text(errors="replace"))

    def assert_clean(self) -> None:
        found = [(w, leaks(t)) for w, t in self.parts if leaks(t)]
        size = sum(len(t) for _, t in self.parts)
        print(f"audit: {len(self.parts)} texts, {size} characters searched")
        assert not found, found
        assert size > 0


# -- IPMI: CLI, fencer, fence agent, library errors --------------------------


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[IpmiSim]:
    """ipmi_sim whose admin password is a canary."""
    sim = IpmiSim(tmp_path / "bmc", password=IPMI_PW).start()
    try:
        yield sim
    finally:
        sim.stop()


def test_ipmi_paths_never_show_the_password(
    bmc: IpmiSim, tmp_path: Path, argv_watch: ArgvWatch
) -> None:
    """IPMI: power CLI, fencer, fence agent, right and wrong passwords."""
    said = Said()
    good = secret_file(tmp_path, "good", IPMI_PW)
    wrong = secret_file(tmp_path, "wrong", IPMI_WRONG)
    target = ["--driver", "ipmi", "--host", bmc.host, "--port", str(bmc.port)]
    target += ["--username", bmc.user, "--timeout", "6"]

    for action, password in (("off", good), ("status", wrong)):
        done = run(
            "-vv", "power", action, *target, "--password-file", str(password)
        )
        said.process(f"power {action}", done)
        assert (done.returncode == 0) == (password == good), done.stderr
    env_done = subprocess.run(
        [*FENCEKIT, "-vv", "power", "on", *target, "--password-env", "FK_PW"],
        env={**os.environ, "FK_PW": IPMI_PW},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said.process("power on (env)", env_done)
    assert env_done.returncode == 0, env_done.stderr
    command_done = run(
        "-vv", "power", "status", *target,
        "--password-command", f"cat {good}",
    )  # fmt: skip
    said.process("power status (command)", command_done)
    assert command_done.returncode == 0, command_done.stderr

    journal = tmp_path / "journal.jsonl"
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(
        f"""cluster = "audit"
[fencer]
run_dir = "{tmp_path / "run"}"
journal = "{journal}"
fence_timeout = 30
settle = 2
interval = 0.05

[devices.bmc-b]
driver = "ipmi"
host = "{bmc.host}"
port = {bmc.port}
username = "{bmc.user}"
password_file = "{good}"
timeout = 8

[devices.bmc-wrong]
driver = "ipmi"
host = "{bmc.host}"
port = {bmc.port}
username = "{bmc.user}"
password_file = "{wrong}"
timeout = 5

[[nodes]]
name = "node-b"
id = 2
levels = [["bmc-wrong"], ["bmc-b"]]
"""
    )
    bmc.set_power(True)
    for args in (
        ("fence", "node-b"),
        ("fence", "node-b", "--json"),
        ("check",),
        ("check", "--json"),
        ("history",),
        ("history", "--json"),
        ("nodes",),
    ):
        done = run("-vv", *args, "--config", str(inventory))
        said.process(" ".join(args), done)
        if args[0] == "fence":
            # Level 1 is refused the login, level 2 fences.
            assert done.returncode == 0, done.stderr

    debug = tmp_path / "agent-debug.log"
    agent_journal = tmp_path / "agent-journal.jsonl"
    for action, password in (("off", IPMI_PW), ("status", IPMI_WRONG)):
        bmc.set_power(True)
        stdin = (
            f"action={action}\nip={bmc.host}\nipport={bmc.port}\n"
            f"username={bmc.user}\npassword={password}\nverbose=1\n"
            f"debug_file={debug}\njournal={agent_journal}\n"
            "power_timeout=6\n"
        )
        done = agent("fence_fencekit_ipmi", stdin)
        said.process(f"fence_fencekit_ipmi {action}", done)
        assert (done.returncode == 0) == (password == IPMI_PW), done.stderr

    said.add("library", asyncio.run(_ipmi_library_errors(bmc)))
    said.files(journal, debug, agent_journal)
    said.assert_clean()


async def _ipmi_library_errors(bmc: IpmiSim) -> str:
    from structlog.testing import capture_logs

    from fencekit.outcome import Action
    from fencekit.power.ipmi import IpmiDriver
    from fencekit.power.operate import Verification, attempt
    from fencekit.secrets import Secret

    texts = []
    with capture_logs() as logs:
        for password in (IPMI_WRONG, IPMI_PW):
            driver = IpmiDriver(
                bmc.host,
                port=bmc.port,
                username=bmc.user,
                password=Secret(password),
            )
            outcome = await attempt(
                driver, Action.STATUS, verification=Verification(timeout=5)
            )
            texts += [repr(driver), repr(outcome), str(outcome.to_dict())]
            texts.append(error_text(outcome.error))
            await driver.close()
    texts.append(repr(logs))
    return "\n".join(texts)


# -- Redfish: CLI, fence agent, library errors -------------------------------


@pytest.fixture
def redfish(tmp_path: Path) -> Iterator[SushyEmulator]:
    """sushy-tools' emulator whose account's password is a canary."""
    emulator = SushyEmulator(tmp_path / "sushy", password=REDFISH_PW).start()
    try:
        yield emulator
    finally:
        emulator.stop()


def test_redfish_paths_never_show_the_password(
    redfish: SushyEmulator, tmp_path: Path, argv_watch: ArgvWatch
) -> None:
    """Redfish: power CLI and fence agent, right and wrong passwords."""
    said = Said()
    target = ["--driver", "redfish", "--host", redfish.host]
    target += ["--port", str(redfish.port), "--username", redfish.user]
    target += ["--system", SYSTEM_IDS[0], "--ca-file", str(redfish.ca_file)]
    target += ["--timeout", "8"]
    for action, password in (("off", REDFISH_PW), ("status", REDFISH_WRONG)):
        file = secret_file(tmp_path, f"pw-{action}", password)
        done = run(
            "-vv", "power", action, *target, "--password-file", str(file)
        )
        said.process(f"redfish {action}", done)
        assert (done.returncode == 0) == (password == REDFISH_PW), done.stderr

    debug = tmp_path / "redfish-debug.log"
    for action, password in (("on", REDFISH_PW), ("status", REDFISH_WRONG)):
        stdin = (
            f"action={action}\nip={redfish.host}\nipport={redfish.port}\n"
            f"username={redfish.user}\npassword={password}\n"
            f"systems_uri={SYSTEM_IDS[0]}\nssl_ca_file={redfish.ca_file}\n"
            f"verbose=1\ndebug_file={debug}\npower_timeout=8\n"
        )
        done = agent("fence_fencekit_redfish", stdin)
        said.process(f"fence_fencekit_redfish {action}", done)
        assert (done.returncode == 0) == (password == REDFISH_PW), done.stderr

    said.add("library", asyncio.run(_redfish_library_errors(redfish)))
    said.files(debug)
    said.assert_clean()


async def _redfish_library_errors(emu: SushyEmulator) -> str:
    from structlog.testing import capture_logs

    from fencekit.outcome import Action
    from fencekit.power.operate import Verification, attempt
    from fencekit.power.redfish import RedfishDriver
    from fencekit.secrets import Secret

    texts = []
    with capture_logs() as logs:
        for password in (REDFISH_WRONG, REDFISH_PW):
            driver = RedfishDriver(
                emu.host,
                port=emu.port,
                username=emu.user,
                password=Secret(password),
                system=SYSTEM_IDS[0],
                ca_file=emu.ca_file,
            )
            outcome = await attempt(
                driver, Action.STATUS, verification=Verification(timeout=5)
            )
            texts += [repr(driver), repr(outcome), str(outcome.to_dict())]
            texts.append(error_text(outcome.error))
            await driver.close()
    texts.append(repr(logs))
    return "\n".join(texts)


# -- SNMP devices, the agent's checks, /metrics, notifications --------------


class CanarySnmpSim(SnmpSim):
    """snmpsim answering the canary community (its data file's name)."""

    def start(self) -> CanarySnmpSim:
        data = self.workdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        shutil.copy(
            snmp_peer.HERE / "fencelab.snmprec", data / f"{COMMUNITY}.snmprec"
        )
        super().start()
        return self


@pytest.fixture
def snmpsim(tmp_path: Path) -> Iterator[CanarySnmpSim]:
    """snmpsim's switch-and-PDU, community: a canary."""
    yield from snmp_peer.serve(CanarySnmpSim(tmp_path / "snmpsim"))


@pytest.fixture
def trapd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[snmp_peer.SnmpTrapd]:
    """snmptrapd taking SNMPv3 traps whose keys are canaries."""
    monkeypatch.setattr(snmp_peer, "TRAP_AUTH", TRAP_AUTH)
    monkeypatch.setattr(snmp_peer, "TRAP_PRIV", TRAP_PRIV)
    yield from snmp_peer.serve(snmp_peer.SnmpTrapd(tmp_path / "trapd"))


@pytest.fixture
def pg() -> Iterator[Postgres]:
    """PostgreSQL with a login role whose password is a canary."""
    server = Postgres().start()
    try:
        server.sql(f"CREATE ROLE audit LOGIN PASSWORD '{PG_PW}'")
        yield server
    finally:
        server.remove()


def test_snmp_devices_never_show_the_community(
    snmpsim: CanarySnmpSim, tmp_path: Path, argv_watch: ArgvWatch
) -> None:
    """SNMP PDU: power CLI and fence agent, right and wrong community."""
    said = Said()
    target = ["--driver", "snmp-pdu", "--host", snmpsim.host]
    target += ["--port", str(snmpsim.port), "--plug", "1", "--timeout", "5"]
    for action, community in (("off", COMMUNITY), ("status", IPMI_WRONG)):
        file = secret_file(tmp_path, f"c-{action}", community)
        done = run(
            "-vv", "power", action, *target, "--community-file", str(file)
        )
        said.process(f"snmp-pdu {action}", done)
        assert (done.returncode == 0) == (community == COMMUNITY), done.stderr

    debug = tmp_path / "snmp-debug.log"
    for action, community in (("on", COMMUNITY), ("status", IPMI_WRONG)):
        stdin = (
            f"action={action}\nip={snmpsim.host}\nipport={snmpsim.port}\n"
            f"community={community}\nplug=2\nverbose=1\n"
            f"debug_file={debug}\npower_timeout=5\n"
        )
        done = agent("fence_fencekit_snmp_pdu", stdin)
        said.process(f"fence_fencekit_snmp_pdu {action}", done)
        assert (done.returncode == 0) == (community == COMMUNITY), done.stderr
    said.files(debug)
    said.assert_clean()


def test_agent_checks_metrics_and_notifications_never_show_secrets(
    snmpsim: CanarySnmpSim,
    trapd: snmp_peer.SnmpTrapd,
    pg: Postgres,
    tmp_path: Path,
    argv_watch: ArgvWatch,
) -> None:
    """The agent at -vv: checks, /metrics, /probe, SNMPv3 notifications."""
    said = Said()
    files = {
        name: secret_file(tmp_path / "secrets", name, value)
        for name, value in (
            ("community", COMMUNITY),
            ("community-wrong", IPMI_WRONG),
            ("pg", PG_PW),
            ("pg-wrong", REDFISH_WRONG),
            ("trap-auth", TRAP_AUTH),
            ("trap-priv", TRAP_PRIV),
        )
    }
    port = peers.free_port()
    config = tmp_path / "agent.toml"
    sysname = "1.3.6.1.2.1.1.5.0"
    config.write_text(
        f"""[agent]
listen = "127.0.0.1:{port}"

[defaults]
interval = 0.3
timeout = 1
jitter = 0
down_after = 1
up_after = 1

[checks.snmp-good]
kind = "snmp"
host = "127.0.0.1"
port = {snmpsim.port}
community_file = "{files["community"]}"
expect = [{{ oid = "{sysname}", matches = "." }}]

[checks.snmp-wrong]
kind = "snmp"
host = "127.0.0.1"
port = {snmpsim.port}
community_file = "{files["community-wrong"]}"
expect = [{{ oid = "{sysname}", matches = "." }}]

[checks.pg-good]
kind = "postgres"
host = "127.0.0.1"
port = {pg.port}
user = "audit"
password_file = "{files["pg"]}"

[checks.pg-wrong]
kind = "postgres"
host = "127.0.0.1"
port = {pg.port}
user = "audit"
password_file = "{files["pg-wrong"]}"

[modules.pg]
kind = "postgres"
user = "audit"
password_file = "{files["pg-wrong"]}"

[notifications.destinations.noc]
host = "127.0.0.1"
port = {trapd.port}
version = "3"
user = "{snmp_peer.TRAP_USER}"
engine_id = "{snmp_peer.TRAP_ENGINE_ID}"
auth_key_file = "{files["trap-auth"]}"
priv_key_file = "{files["trap-priv"]}"
"""
    )
    checked = run("-vv", "agent", "--config", str(config), "--check-config")
    said.process("agent --check-config", checked)
    assert checked.returncode == 0, checked.stderr

    log = tmp_path / "agent.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*FENCEKIT, "-vv", "agent", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        peers.wait_until(
            lambda: "fencekit_check_up" in _get(base + "/metrics", proc),
            30,
            "the agent to serve /metrics",
        )
        trapd.wait_for("snmp-wrong", 30)
        trapd.wait_for("pg-wrong", 30)
        for _ in range(5):
            said.add("/metrics", _get(base + "/metrics", proc))
            said.add(
                "/probe",
                _get(
                    f"{base}/probe?module=pg&target=127.0.0.1:{pg.port}", proc
                ),
            )
            time.sleep(0.3)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    metrics = said.parts[-2][1]
    assert 'check="pg-good"' in metrics and 'check="snmp-good"' in metrics
    said.add("snmptrapd", trapd.log_text())
    said.files(log)
    said.assert_clean()


def _get(url: str, proc: subprocess.Popen[bytes]) -> str:
    if proc.poll() is not None:
        raise AssertionError(f"the agent exited with {proc.returncode}")
    try:
        with urllib.request.urlopen(url, timeout=30) as answer:
            return str(answer.read().decode())
    except urllib.error.HTTPError as exc:
        return exc.read().decode(errors="replace")
    except OSError:
        return ""
