"""Pacemaker for tests: fencekit's agents installed where Pacemaker looks,
and a live single-node corosync + pacemaker cluster on loopback.

Pacemaker keeps its state under /var/lib/pacemaker and /var/lib/corosync
(paths fixed when it is built), so only one cluster may run on the
machine: :class:`Cluster` takes a machine-wide lock, refuses to start
beside a corosync it did not start, and removes that state when it
stops. Every daemon is stopped by the PID it was started with.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import peers

ROOT = Path(__file__).resolve().parents[2]
FENCEKIT = str(Path(sys.executable).with_name("fencekit"))
PACEMAKER_LOCK = Path("/run/lock/fencekit-test-pacemaker.lock")
_STATE_GLOBS = (
    ("/var/lib/pacemaker/cib", "cib*"),
    ("/var/lib/pacemaker/pengine", "pe-*"),
    ("/var/lib/pacemaker/blackbox", "*"),
    ("/var/lib/corosync", "ringid_*"),
)

_COROSYNC_CONF = """\
totem {{
    version: 2
    cluster_name: fencekit-test
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: 3000
}}
nodelist {{
    node {{
        ring0_addr: 127.0.0.1
        name: node-a
        nodeid: 1
    }}
}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_logfile: yes
    logfile: {log}
    to_stderr: no
    to_syslog: no
    timestamp: on
}}
"""


def run(
    *argv: str, timeout: float = 60, check: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run a Pacemaker tool and capture its output."""
    return subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
        stdin=subprocess.DEVNULL,
    )


def require_root() -> None:
    """Installing agents and running a cluster need root."""
    if os.geteuid() == 0:
        return
    message = "Pacemaker tests need root (agents go to /usr/sbin)"
    if peers.in_ci():
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def installed_agents() -> Iterator[None]:
    """fencekit's agents in /usr/sbin and /usr/lib/ocf, for the test's
    duration; removed afterwards (only the files fencekit wrote)."""
    require_root()
    done = run(FENCEKIT, "install-agents", "--python", sys.executable)
    assert done.returncode == 0, done.stderr
    try:
        yield
    finally:
        run(FENCEKIT, "install-agents", "--uninstall")


class Cluster:
    """A single-node corosync + pacemaker cluster (node ``node-a``)."""

    def __init__(self) -> None:
        self.corosync = peers.require("corosync")
        self.pacemakerd = peers.require("pacemakerd")
        self.crm_mon = peers.require("crm_mon")
        self.cibadmin = peers.require("cibadmin")
        self.stonith_admin = peers.require("stonith_admin")
        self.dir = Path(tempfile.mkdtemp(prefix="fencekit-pcmk-"))
        # Pacemaker's daemons that run as hacluster write the log too.
        self.dir.chmod(0o755)
        (self.dir / "logs").mkdir(mode=0o777)
        (self.dir / "logs").chmod(0o777)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._lock: int | None = None
        self._final_logs: str | None = None

    def start(self, timeout: float = 120) -> Cluster:
        """Start corosync, then pacemaker; wait until node-a is online."""
        self._take_lock()
        if shutil.which("pgrep") and run("pgrep", "-x", "corosync").stdout:
            self._release_lock()
            pytest.fail("a corosync this test did not start is running")
        _clean_state()
        conf = self.dir / "corosync.conf"
        conf.write_text(
            _COROSYNC_CONF.format(log=self.dir / "logs" / "corosync.log")
        )
        self._spawn([self.corosync, "-f", "-c", str(conf)], "corosync")
        quorumtool = peers.require("corosync-quorumtool")
        peers.wait_until(
            lambda: run(quorumtool, "-s", timeout=10).returncode == 0,
            30,
            "corosync quorum",
        )
        env = dict(os.environ, PCMK_logfile=str(self.dir / "logs" / "pcmk"))
        self._spawn([self.pacemakerd], "pacemakerd", env=env)
        self.wait(self.online, timeout, "pacemaker node-a online")
        return self

    def online(self) -> bool:
        """Whether crm_mon shows node-a online."""
        done = run(self.crm_mon, "-1", timeout=20)
        return done.returncode == 0 and "Online:" in done.stdout

    def wait(self, check: object, timeout: float, what: str) -> None:
        """Poll ``check`` every half second (the tools are slow)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():  # type: ignore[operator]
                return
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout} s waiting for {what}")

    def cib_create(self, section: str, xml: str) -> None:
        """Add ``xml`` to a CIB section."""
        done = run(self.cibadmin, "--create", "-o", section, "-X", xml)
        assert done.returncode == 0, done.stderr

    def stop(self) -> None:
        """Stop pacemaker, then corosync, by PID; remove their state."""
        for proc in reversed(self.procs):
            _stop(proc, timeout=90)
        self.procs.clear()
        _clean_state()
        self._release_lock()
        self._final_logs = self.logs()
        shutil.rmtree(self.dir, ignore_errors=True)

    def logs(self) -> str:
        """Pacemaker's and corosync's logs, for failure messages."""
        if self._final_logs is not None:
            return self._final_logs
        parts = []
        for file in sorted((self.dir / "logs").iterdir()):
            text = file.read_text(errors="replace")
            parts.append(f"==> {file.name}\n{text[-6000:]}")
        return "\n".join(parts)

    def _spawn(
        self, argv: list[str], name: str, env: dict[str, str] | None = None
    ) -> None:
        out = open(self.dir / "logs" / f"{name}.stdout", "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=env,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)

    def _take_lock(self) -> None:
        PACEMAKER_LOCK.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(PACEMAKER_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._lock = fd

    def _release_lock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)


def _stop(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM, then SIGKILL to the process group if it will not go."""
    if proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        # pacemakerd started its daemons in its own session group.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _clean_state() -> None:
    for folder, pattern in _STATE_GLOBS:
        for path in Path(folder).glob(pattern):
            if path.is_file() or path.is_symlink():
                path.unlink(missing_ok=True)
