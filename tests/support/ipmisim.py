"""OpenIPMI's ``ipmi_sim`` as a BMC on a free loopback port.

The chassis-control hook keeps the power state in a file and logs every
power command, so a test can tell what reached the BMC; ``ipmitool``
reads the state independently of fencekit.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support import peers

_HERE = Path(__file__).parent / "ipmi"

_LAN_CONF = """\
name "fencekit-test"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{hook} {state}"
  user 2 true "{user}" "{password}" admin 10 none md2 md5 straight
"""


class IpmiSim:
    """One ``ipmi_sim`` BMC; start with :meth:`start`, stop by PID."""

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "admin",
        password: str = "fk-secret",
        power_on: bool = True,
    ) -> None:
        self.binary = peers.require("ipmi_sim")
        self.workdir = workdir
        self.user = user
        self.password = password
        self.port = 0
        self.state = workdir / "power"
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.state.write_text("1\n" if power_on else "0\n")

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    def password_file(self) -> Path:
        """A 0600 file holding the password."""
        path = self.workdir / "password"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def start(self, port: int | None = None) -> IpmiSim:
        """Start the BMC and wait until its UDP port is bound."""
        import socket

        self.port = port or self.port or peers.free_port(socket.SOCK_DGRAM)
        hook = self.workdir / "chassis_control.sh"
        shutil.copy(_HERE / "chassis_control.sh", hook)
        conf = self.workdir / "lan.conf"
        conf.write_text(
            _LAN_CONF.format(
                port=self.port,
                hook=hook,
                state=self.state,
                user=self.user,
                password=self.password,
            )
        )
        statedir = self.workdir / "simstate"
        statedir.mkdir(exist_ok=True)
        log = open(self.workdir / "ipmi_sim.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                self.binary,
                "-n",
                "-c",
                str(conf),
                "-f",
                str(_HERE / "bmc.emu"),
                "-s",
                str(statedir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        peers.wait_until(
            lambda: peers.udp_port_bound(self.port), 5.0, "ipmi_sim's port"
        )
        return self

    def stop(self) -> None:
        """Stop the BMC by the PID it was started with."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=3)

    def power_is_on(self) -> bool:
        """The power state as the hook stores it."""
        return self.state.read_text().strip() == "1"

    def set_power(self, on: bool) -> None:
        self.state.write_text("1\n" if on else "0\n")

    def commands(self) -> list[str]:
        """Every power command that reached the BMC, e.g. ``power=0``."""
        log = Path(f"{self.state}.log")
        if not log.exists():
            return []
        return [line.split()[-1] for line in log.read_text().splitlines()]

    def kill_on_power_off(self, pid: int) -> None:
        """Make powering off this BMC kill process ``pid``."""
        Path(f"{self.state}.kill").write_text(f"{pid}\n")

    def fail_next_calls(self, count: int) -> None:
        """Make the next ``count`` chassis calls fail with code 0xff."""
        Path(f"{self.state}.fail").write_text(f"{count}\n")

    def ipmitool_status(self) -> str:
        """``on`` or ``off``, read by ipmitool, independently of us."""
        ipmitool = peers.require("ipmitool")
        env = dict(os.environ, IPMI_PASSWORD=self.password)
        done = subprocess.run(
            [
                ipmitool,
                "-I",
                "lanplus",
                "-C",
                "3",
                "-H",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-E",
                "chassis",
                "power",
                "status",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            env=env,
            check=True,
        )
        return done.stdout.strip().rsplit(" ", 1)[-1]
