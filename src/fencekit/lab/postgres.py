"""A throw-away PostgreSQL server on loopback, for the demo's node-b.

It uses Debian's server binaries (``/usr/lib/postgresql/N/bin``), a data
folder inside the lab, trust authentication on 127.0.0.1 only, and no
fsync. Run as root, the server runs as the ``postgres`` account, which
must own its data folder. It is stopped by the postmaster's PID.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
from pathlib import Path

from fencekit.lab.process import free_tcp_port

__all__ = ["LabPostgres"]


def _bindir() -> Path | None:
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: (
            int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0
        ),
    )
    return versions[-1].parent if versions else None


class LabPostgres:
    """One PostgreSQL server in ``workdir``, on a free port.

    Args:
        workdir: a folder for its data, socket and log.
    """

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.host = "127.0.0.1"
        self.port = 0
        self.pid: int | None = None
        self._bin = _bindir()

    @classmethod
    def available(cls) -> bool:
        """Whether PostgreSQL's server binaries are installed, and can be
        run here (as root, through the ``postgres`` account)."""
        if _bindir() is None:
            return False
        if os.geteuid() != 0:
            return True
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
        return True

    def start(self, timeout: float = 30.0) -> LabPostgres:
        """Create the cluster and start the server.

        Raises:
            RuntimeError: PostgreSQL is missing or did not start.
        """
        if self._bin is None:
            raise RuntimeError("PostgreSQL's server is not installed")
        data, sock = self.workdir / "data", self.workdir / "sock"
        sock.mkdir(parents=True, exist_ok=True)
        self._own(self.workdir, sock)
        self.port = free_tcp_port()

        self._run(
            "initdb",
            "-D",
            str(data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            timeout=timeout,
        )
        options = (
            f"-c listen_addresses={self.host} -p {self.port}"
            f" -k {sock} -c fsync=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(self.workdir / "pg.log"),
            "-w",
            "-t",
            str(int(timeout)),
            "-o",
            options,
            "start",
            timeout=timeout + 5,
        )
        pidfile = data / "postmaster.pid"
        self.pid = int(pidfile.read_text().splitlines()[0])
        return self

    def stop(self) -> None:
        """Stop the server by the postmaster's PID (fast shutdown)."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def _own(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        account = pwd.getpwnam("postgres")
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid)
        # The lab folder above is private to root; postgres must reach
        # its own folder through it.
        for parent in (self.workdir.parent, self.workdir.parent.parent):
            parent.chmod(parent.stat().st_mode | 0o011)

    def _run(self, tool: str, *args: str, timeout: float) -> None:
        assert self._bin is not None
        argv = [str(self._bin / tool), *args]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise RuntimeError(f"{tool} failed: {' '.join(last)}")
