"""The Linux SCSI target daemon ``tgtd`` as an iSCSI target on loopback.

Each instance has its own control port (``-C N``, a socket under
``/var/run/tgtd``) and its own iSCSI port, so several can run at once and
none touches another program's target. tgtd ignores SIGTERM while it has
targets, so :meth:`Tgtd.stop` shuts it down through its control socket
and falls back to SIGKILL by PID.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

from tests.support import peers

TARGET_IQN = "iqn.2024-01.io.fencekit:target1"
LUN = 1
BLOCK_SIZE = 512

_SOCKET_DIR = Path("/var/run/tgtd")


class Tgtd:
    """One tgtd with one target and a file-backed LUN 1.

    Attributes:
        port: the iSCSI port on 127.0.0.1.
        control: the control port number given to ``-C``.
    """

    def __init__(self, workdir: Path, *, size_mb: int = 16) -> None:
        self.binary = peers.require("tgtd")
        self.tgtadm = peers.require("tgtadm")
        self.workdir = workdir
        self.size = size_mb * 1024 * 1024
        self.port = 0
        self.control = 0
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.backing = workdir / "lun1.img"

    def url(self, lun: int = LUN) -> str:
        """The ``iscsi://`` URL of the LUN."""
        return f"iscsi://{peers.LOOPBACK}:{self.port}/{TARGET_IQN}/{lun}"

    def start(self) -> Tgtd:
        """Start the daemon, create the target and wait until it serves."""
        with open(self.backing, "wb") as image:
            image.truncate(self.size)
        self.port = peers.free_port()
        self.control = _free_control_port()
        log = open(self.workdir / "tgtd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                "-f",
                "-C",
                str(self.control),
                "--iscsi",
                f"portal={peers.LOOPBACK}:{self.port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        peers.wait_until(self._answers, 15.0, "tgtd's control socket")
        self._configure()
        peers.wait_until(self._listens, 15.0, "tgtd's iSCSI port")
        return self

    def _answers(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            text = (self.workdir / "tgtd.log").read_text(errors="replace")
            raise RuntimeError(f"tgtd exited: {text[-2000:]}")
        return self._admin("--op", "show", "--mode", "sys", check=False) == 0

    def _listens(self) -> bool:
        import socket

        with socket.socket() as sock:
            sock.settimeout(1.0)
            return sock.connect_ex((peers.LOOPBACK, self.port)) == 0

    def _configure(self) -> None:
        self._admin(
            "--lld", "iscsi", "--op", "new", "--mode", "target",
            "--tid", "1", "-T", TARGET_IQN,
        )  # fmt: skip
        self._admin(
            "--lld", "iscsi", "--op", "new", "--mode", "logicalunit",
            "--tid", "1", "--lun", str(LUN), "-b", str(self.backing),
        )  # fmt: skip
        self._admin(
            "--lld", "iscsi", "--op", "bind", "--mode", "target",
            "--tid", "1", "-I", peers.LOOPBACK,
        )  # fmt: skip

    def _admin(self, *args: str, check: bool = True) -> int:
        result = subprocess.run(
            [self.tgtadm, "-C", str(self.control), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"tgtadm {' '.join(args)}: {result.stderr.decode()}"
            )
        return result.returncode

    def kill(self) -> None:
        """Kill the daemon at once (SIGKILL by PID): a target that dies."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def pause(self) -> None:
        """Stop the daemon answering (SIGSTOP): a hung target."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused daemon run again (SIGCONT)."""
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Shut down through the control socket; SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            for args in (
                ("--op", "update", "--mode", "sys", "--name", "State",
                 "-v", "offline"),
                ("--lld", "iscsi", "--op", "delete", "--mode", "target",
                 "--tid", "1", "--force"),
                ("--op", "delete", "--mode", "system"),
            ):  # fmt: skip
                try:
                    self._admin(*args, check=False)
                except subprocess.TimeoutExpired:
                    break
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        socket_path = _SOCKET_DIR / f"socket.{self.control}"
        for path in (socket_path, Path(f"{socket_path}.lock")):
            path.unlink(missing_ok=True)

    def read_block(self, lba: int) -> bytes:
        """One block of the backing file, as the target stored it."""
        with open(self.backing, "rb") as image:
            image.seek(lba * BLOCK_SIZE)
            return image.read(BLOCK_SIZE)


def _free_control_port() -> int:
    """A control port number whose socket no tgtd holds (tgtd: <= 32767)."""
    for _ in range(100):
        number = random.randint(1000, 32767)
        if not (_SOCKET_DIR / f"socket.{number}").exists():
            return number
    raise RuntimeError("no free tgtd control port number")
