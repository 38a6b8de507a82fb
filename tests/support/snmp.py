"""SNMP peers on free loopback ports: snmptrapd, snmpd and snmpsim.

Each daemon runs in the foreground from a configuration written into the
test's own folder and is stopped by the PID it was started with. net-snmp
runs with ``-m ''``: Debian ships no IETF MIB texts, so every OID a test
reads in their logs is numeric.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from fencekit.lab.process import stop_process
from tests.support import peers

HERE = Path(__file__).parent / "snmp"
_D = TypeVar("_D", bound="_Daemon")

#: The SNMPv3 engine ID the notifier uses for traps in the tests; the
#: trap user is created under it in snmptrapd (the sender of a trap is
#: the authoritative engine, RFC 3414 section 1.5.1).
TRAP_ENGINE_ID = "8000000001020304"

#: The credentials snmptrapd, snmpd and snmpsim are set up with.
COMMUNITY = "fk-community-7"
TRAP_USER = "fktrap"
TRAP_AUTH = "fktrapauth123"
TRAP_PRIV = "fktrappriv123"
INFORM_USER = "fkinform"
INFORM_AUTH = "fkinformauth1"
INFORM_PRIV = "fkinformpriv1"
AGENT_USER = "fkuser"
AGENT_AUTH = "fkauthpass123"
AGENT_PRIV = "fkprivpass123"
#: snmpsim names each data file's community after the file.
SIM_COMMUNITY = "fencelab"


class _Daemon:
    """A foreground daemon started by :meth:`_spawn`, stopped by PID."""

    name = "daemon"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"{self.name}.log"
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    def _spawn(
        self, argv: Sequence[str], env: dict[str, str] | None = None
    ) -> None:
        out = open(self.workdir / f"{self.name}.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        out.close()

    def _alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            out = self.workdir / f"{self.name}.out"
            text = out.read_text(errors="replace") if out.exists() else ""
            raise RuntimeError(f"{self.name} exited: {text[-2000:]}")
        return True

    def _wait_bound(self, timeout: float = 30.0) -> None:
        peers.wait_until(
            lambda: self._alive() and peers.udp_port_bound(self.port),
            timeout,
            f"{self.name} on UDP port {self.port}",
        )

    def stop(self) -> None:
        """Stop the daemon by the PID it was started with."""
        proc, self.proc = self.proc, None
        stop_process(proc, grace=5.0)

    def log_text(self) -> str:
        """What the daemon logged so far."""
        return (
            self.log.read_text(errors="replace") if self.log.exists() else ""
        )


_TRAPD_CONF = """\
snmpTrapdAddr udp:127.0.0.1:{port}
authCommunity log {community}
createUser {inform_user} SHA "{inform_auth}" AES "{inform_priv}"
authUser log {inform_user} priv
createUser {inform256} SHA-256 "{inform_auth}" AES "{inform_priv}"
authUser log {inform256} priv
createUser {inform512} SHA-512 "{inform_auth}" AES-256 "{inform_priv}"
authUser log {inform512} priv
createUser -e 0x{engine} {trap_user} SHA "{trap_auth}" AES "{trap_priv}"
authUser log {trap_user} priv
doNotRetainNotificationLogs yes
"""


class SnmpTrapd(_Daemon):
    """net-snmp's notification receiver, logging to a file.

    It accepts v2c traps with :data:`COMMUNITY`, v3 traps from
    :data:`TRAP_USER` under :data:`TRAP_ENGINE_ID`, and v3 informs from
    :data:`INFORM_USER` (SHA/AES), ``INFORM_USER + "256"`` (SHA-256/AES)
    and ``INFORM_USER + "512"`` (SHA-512/AES-256), all at authPriv.
    """

    name = "snmptrapd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = peers.require("snmptrapd")

    def start(self) -> SnmpTrapd:
        """Start it on a free port and wait until the port is bound."""
        self.port = peers.free_port(socket.SOCK_DGRAM)
        conf = self.workdir / "snmptrapd.conf"
        conf.write_text(
            _TRAPD_CONF.format(
                port=self.port,
                community=COMMUNITY,
                inform_user=INFORM_USER,
                inform256=INFORM_USER + "256",
                inform512=INFORM_USER + "512",
                inform_auth=INFORM_AUTH,
                inform_priv=INFORM_PRIV,
                engine=TRAP_ENGINE_ID,
                trap_user=TRAP_USER,
                trap_auth=TRAP_AUTH,
                trap_priv=TRAP_PRIV,
            )
        )
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        self._spawn(
            [
                self.binary,
                "-f",
                "-C",
                "-c",
                str(conf),
                "-m",
                "",
                # One line per notification, numeric OIDs (-On).
                "-On",
                "-Lf",
                str(self.log),
            ],
            env={"SNMP_PERSISTENT_DIR": str(persist)},
        )
        self._wait_bound()
        return self

    def wait_for(self, pattern: str, timeout: float = 20.0) -> str:
        """Wait until the log matches ``pattern``; return the log."""
        regex = re.compile(pattern)
        peers.wait_until(
            lambda: regex.search(self.log_text()) is not None,
            timeout,
            f"snmptrapd to log {pattern!r}",
        )
        return self.log_text()


_SNMPD_CONF = """\
agentAddress udp:127.0.0.1:{port}
rocommunity {community} 127.0.0.1
createUser {user} SHA "{auth}" AES "{priv}"
rouser {user} priv
createUser {user}256 SHA-256 "{auth}" AES "{priv}"
rouser {user}256 priv
createUser {user}512 SHA-512 "{auth}" AES-256 "{priv}"
rouser {user}512 priv
sysLocation fencekit-lab
sysName fk-snmpd
sysContact ops@example.net
master no
"""


class Snmpd(_Daemon):
    """net-snmp's agent, read-only: v2c :data:`COMMUNITY`, v3 users
    :data:`AGENT_USER` (SHA/AES), ``AGENT_USER + "256"`` (SHA-256/AES)
    and ``AGENT_USER + "512"`` (SHA-512/AES-256)."""

    name = "snmpd"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = peers.require("snmpd")

    def start(self) -> Snmpd:
        """Start it on a free port and wait until it answers."""
        self.port = peers.free_port(socket.SOCK_DGRAM)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(
            _SNMPD_CONF.format(
                port=self.port,
                community=COMMUNITY,
                user=AGENT_USER,
                auth=AGENT_AUTH,
                priv=AGENT_PRIV,
            )
        )
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        self._spawn(
            [
                self.binary,
                "-f",
                "-C",
                "-c",
                str(conf),
                "-m",
                "",
                "-Lf",
                str(self.log),
            ],
            env={"SNMP_PERSISTENT_DIR": str(persist)},
        )
        self._wait_bound()
        return self


class SnmpSim(_Daemon):
    """snmpsim serving ``fencelab.snmprec`` (a switch and a PDU in one).

    The community is :data:`SIM_COMMUNITY`. Writable cells keep what was
    SET for the life of the process: every test gets a fresh one.
    """

    name = "snmpsim"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.binary = _snmpsim_binary()

    def start(self) -> SnmpSim:
        """Start it on a free port and wait until it answers a GET."""
        self.port = peers.free_port(socket.SOCK_DGRAM)
        data = self.workdir / "data"
        data.mkdir(exist_ok=True)
        shutil.copy(HERE / "fencelab.snmprec", data / "fencelab.snmprec")
        cache = self.workdir / "cache"
        cache.mkdir(exist_ok=True)
        self._spawn(
            [
                self.binary,
                f"--data-dir={data}",
                f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint={peers.LOOPBACK}:{self.port}",
                f"--logging-method=file:{self.log}",
            ],
            env={"SNMPSIM_ALLOW_ROOT": "true"},
        )
        self._wait_bound(60.0)
        peers.wait_until(self._answers, 60.0, "snmpsim to answer a GET")
        return self

    def _answers(self) -> bool:
        self._alive()
        return self.get("1.3.6.1.2.1.1.5.0") is not None

    def get(self, oid: str) -> str | None:
        """Read one OID with net-snmp's ``snmpget`` (independent of
        fencekit); None when there is no answer."""
        return snmpget(self.port, oid, self.workdir / "client")


def _snmpsim_binary() -> str:
    """snmpsim lives in the virtualenv, beside this Python."""
    local = Path(sys.executable).parent / "snmpsim-command-responder"
    if local.exists():
        return str(local)
    return peers.require("snmpsim-command-responder")


def snmpget(
    port: int, oid: str, confdir: Path, community: str = SIM_COMMUNITY
) -> str | None:
    """Read one OID with net-snmp's ``snmpget``; None when no answer.

    The community goes to snmpget in a private ``snmp.conf`` under
    ``confdir``, not on its command line.
    """
    binary = peers.require("snmpget")
    confdir.mkdir(parents=True, exist_ok=True)
    conf = confdir / "snmp.conf"
    conf.write_text(f"defVersion 2c\ndefCommunity {community}\n")
    conf.chmod(0o600)
    argv = [binary, "-m", "", "-Oqv", "-r", "0", "-t", "1"]
    argv += [f"127.0.0.1:{port}", oid]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
        env={**os.environ, "SNMPCONFPATH": str(confdir)},
    )
    if done.returncode != 0:
        return None
    return done.stdout.strip()


def secret_file(folder: Path, name: str, value: str) -> Path:
    """A 0600 file holding ``value``, for ``*_file`` options."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


def serve(daemon: _D) -> Iterator[_D]:
    """Start ``daemon`` for a fixture, and stop it by PID afterwards."""
    try:
        yield daemon.start()  # type: ignore[attr-defined]
    finally:
        daemon.stop()
