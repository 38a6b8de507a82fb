"""net-snmp's ``snmptrapd`` as the demo's notification receiver.

It listens on a free loopback port, accepts SNMPv2c notifications with
one community, and logs one line per notification with numeric OIDs. It
is stopped by its PID.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from fencekit.lab.process import free_udp_port, stop_process, udp_bound
from fencekit.notify import DEFAULT_MIB_ROOT, NOTIFICATIONS

__all__ = ["LabTrapReceiver"]

_CONF = """\
snmpTrapdAddr udp:127.0.0.1:{port}
authCommunity log {community}
doNotRetainNotificationLogs yes
"""
_NAMES = {number: name for name, (number, _) in NOTIFICATIONS.items()}


class LabTrapReceiver:
    """An ``snmptrapd`` logging to ``workdir/traps.log``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "traps.log"
        self.port = 0
        self.community = secrets.token_hex(8)
        self._proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        """Whether ``snmptrapd`` is installed."""
        return _binary() is not None

    def community_file(self) -> Path:
        """A 0600 file holding the community the receiver accepts."""
        path = self.workdir / "community"
        path.write_text(self.community + "\n")
        path.chmod(0o600)
        return path

    def start(self, timeout: float = 10.0) -> LabTrapReceiver:
        """Start it and wait until its port is bound.

        Raises:
            RuntimeError: it is missing or did not start.
        """
        binary = _binary()
        if binary is None:
            raise RuntimeError("snmptrapd is not installed")
        self.port = free_udp_port()
        conf = self.workdir / "snmptrapd.conf"
        conf.write_text(_CONF.format(port=self.port, community=self.community))
        conf.chmod(0o600)
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        env = dict(os.environ, SNMP_PERSISTENT_DIR=str(persist))
        self._proc = subprocess.Popen(
            [
                binary,
                "-f",
                "-C",
                "-c",
                str(conf),
                "-m",
                "",
                "-On",
                "-Lf",
                str(self.log),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not udp_bound(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("snmptrapd did not start")
            time.sleep(0.01)
        return self

    def received(self) -> list[str]:
        """The names of the fencekit notifications received so far."""
        if not self.log.exists():
            return []
        prefix = f"OID: .{DEFAULT_MIB_ROOT}.0."
        names = []
        for line in self.log.read_text(errors="replace").splitlines():
            at = line.find(prefix)
            if at < 0:
                continue
            number = line[at + len(prefix) :].split()[0].rstrip(",")
            if number.isdigit():
                names.append(_NAMES.get(int(number), number))
        return names

    def stop(self) -> None:
        """Stop the receiver by its PID."""
        proc, self._proc = self._proc, None
        stop_process(proc)


def _binary() -> str | None:
    return shutil.which("snmptrapd")
