"""PostgreSQL 15 and MariaDB servers on free loopback ports.

PostgreSQL runs as the ``postgres`` user, from a scratch folder it owns,
with password (SCRAM) authentication over TCP and trust over its socket.
MariaDB runs as root with ``--user=root``. Both are stopped by the PID
they were started with.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from tests.support.peers import LOOPBACK, free_port, require, wait_until

PASSWORD = "fk-probe-pass"
_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv]


class Postgres:
    """A PostgreSQL cluster (primary, or a standby of another)."""

    def __init__(self, primary: Postgres | None = None) -> None:
        require("runuser")
        if not (_PG_BIN / "postgres").exists():
            require("postgresql-15/bin/postgres")
        self.primary = primary
        # The test's tmp_path belongs to root with mode 0700: the
        # postgres user needs a folder of its own.
        self.folder = Path(tempfile.mkdtemp(prefix="fencekit-pg-"))
        owner = pwd.getpwnam("postgres")
        os.chown(self.folder, owner.pw_uid, owner.pw_gid)
        self.data = self.folder / "data"
        self.sockets = self.folder / "sock"
        self.port = free_port()
        self.pid: int | None = None

    def start(self) -> Postgres:
        """Create (first time) and start the cluster."""
        if not self.data.exists():
            self._create()
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port}"
            f" -k {self.sockets} -c fsync=off"
        )
        subprocess.run(
            _as_postgres(
                str(_PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.folder / "postgres.log"),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            ),
            check=True,
            capture_output=True,
        )
        pid_file = self.data / "postmaster.pid"
        self.pid = int(pid_file.read_text().split()[0])
        return self

    def _create(self) -> None:
        self.sockets.mkdir()
        owner = pwd.getpwnam("postgres")
        os.chown(self.sockets, owner.pw_uid, owner.pw_gid)
        if self.primary is not None:
            self._clone()
            return
        password_file = self.folder / "pw"
        password_file.write_text(PASSWORD + "\n")
        os.chown(password_file, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            _as_postgres(
                str(_PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={password_file}",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ),
            check=True,
            capture_output=True,
        )

    def _clone(self) -> None:
        assert self.primary is not None
        subprocess.run(
            _as_postgres(
                str(_PG_BIN / "pg_basebackup"),
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                "-h",
                str(self.primary.sockets),
                "-p",
                str(self.primary.port),
                "-U",
                "postgres",
            ),
            check=True,
            capture_output=True,
        )

    def sql(self, statement: str) -> str:
        """Run ``statement`` with psql over the socket; return stdout.

        The statement goes on psql's standard input, not its argv: it
        may hold a test password that the secrets audit looks for.
        """
        done = subprocess.run(
            _as_postgres(
                str(_PG_BIN / "psql"),
                "-h",
                str(self.sockets),
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
            ),
            input=statement,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        """Fast shutdown (SIGINT) by PID; wait until it has exited."""
        if self.pid is None:
            return
        pid, self.pid = self.pid, None
        try:
            os.kill(pid, signal.SIGINT)
        except ProcessLookupError:
            return
        wait_until(lambda: not _alive(pid), 60, f"postgres {pid} to stop")

    def remove(self) -> None:
        """Stop, then delete the scratch folder."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class MariaDB:
    """A MariaDB server with a ``fencekit`` account (password below)."""

    def __init__(self, folder: Path) -> None:
        self.binary = require("mariadbd")
        require("mariadb-install-db")
        self.folder = folder
        self.data = folder / "data"
        self.socket = folder / "mysqld.sock"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> MariaDB:
        """Create (first time) and start the server."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data / "mysql").exists()
        if fresh:
            subprocess.run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    "--user=root",
                    f"--datadir={self.data}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ],
                check=True,
                capture_output=True,
            )
        self.process = subprocess.Popen(
            [
                self.binary,
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                f"--bind-address={LOOPBACK}",
                "--skip-name-resolve",
                f"--log-error={self.folder / 'mariadbd.err'}",
                f"--pid-file={self.folder / 'mariadbd.pid'}",
                "--innodb-buffer-pool-size=16M",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._ready, 60, "mariadbd to accept connections")
        if fresh:
            self.sql(
                f"CREATE USER 'fencekit'@'{LOOPBACK}' IDENTIFIED BY"
                f" '{PASSWORD}'; GRANT ALL ON *.* TO"
                f" 'fencekit'@'{LOOPBACK}';"
            )
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"mariadbd exited {self.process.returncode}")
        return self.socket.exists() and self._ping()

    def _ping(self) -> bool:
        done = subprocess.run(
            [*self._client("mariadb-admin"), "ping"],
            capture_output=True,
        )
        return done.returncode == 0

    def _client(self, program: str) -> list[str]:
        return [program, "--no-defaults", f"--socket={self.socket}", "-uroot"]

    def sql(self, statement: str) -> str:
        """Run ``statement`` as root over the socket; return stdout."""
        done = subprocess.run(
            [*self._client("mariadb"), "-N"],
            input=statement,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        """SIGTERM by PID; wait until it has exited."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # pg_ctl's child is re-parented; if nothing reaps it, a zombie
    # still answers kill(0).
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status
