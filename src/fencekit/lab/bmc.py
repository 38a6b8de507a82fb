"""BMCs on loopback whose chassis power is a file.

Two kinds, with one interface:

- :class:`IpmiSimBmc` runs OpenIPMI's ``ipmi_sim`` (Debian package
  ``openipmi``) with a chassis-control hook;
- :class:`SimulatedBmc` runs fencekit's own BMC (pyghmi's BMC server
  class) in a child process; it speaks cipher suite 3 only.

The power state is ``1`` or ``0`` in the file ``power`` of the BMC's
folder; every power command that reaches the BMC is appended to
``power.log``, so a test or
the demo can tell what the BMC was asked to do. Each BMC is a child
process stopped by its PID.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from fencekit.lab.process import (
    LOOPBACK,
    free_udp_port,
    stop_process,
    udp_bound,
)

__all__ = ["IpmiSimBmc", "LabBmc", "SimulatedBmc"]

_HERE = Path(__file__).parent / "ipmi_sim"

_LAN_CONF = """\
name "fencekit-lab"
set_working_mc 0x20
  startlan 1
    addr {address} {port}
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


class LabBmc:
    """What both kinds of lab BMC share.

    Args:
        workdir: a folder for its state, log and password files.
        user: the BMC account.
        password: the account's password (written to a 0600 file).
        power_on: the power state at start.
    """

    kind = "bmc"
    cipher: int | None = None

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "admin",
        password: str = "fk-secret",
        power_on: bool = True,
    ) -> None:
        self.host = LOOPBACK
        self.user = user
        self.password = password
        self.port = 0
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.state = self.workdir / "power"
        self.proc: subprocess.Popen[bytes] | None = None
        self.set_power(power_on)

    def password_file(self) -> Path:
        """A 0600 file holding the password."""
        path = self.workdir / "password"
        path.write_text(self.password + "\n")
        path.chmod(0o600)
        return path

    def start(self, port: int | None = None, timeout: float = 10.0) -> LabBmc:
        """Start the BMC and wait until its UDP port is bound.

        Raises:
            RuntimeError: it did not come up within ``timeout``.
        """
        self.port = port or self.port or free_udp_port(self.host)
        log = open(self.workdir / f"{self.kind}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self._argv(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not udp_bound(self.port, self.host):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"{self.kind} did not start; see {log.name}"
                )
            time.sleep(0.01)
        return self

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the BMC by the PID it was started with."""
        proc, self.proc = self.proc, None
        stop_process(proc)

    def __enter__(self) -> LabBmc:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def power_is_on(self) -> bool:
        """The chassis power as the BMC holds it."""
        return self.state.read_text().strip() == "1"

    def set_power(self, on: bool) -> None:
        """Set the chassis power behind the BMC's back."""
        self.state.write_text("1\n" if on else "0\n")

    def commands(self) -> list[str]:
        """Every power command that reached the BMC, e.g. ``power=0``."""
        log = Path(f"{self.state}.log")
        if not log.exists():
            return []
        return [line.split()[-1] for line in log.read_text().splitlines()]


class IpmiSimBmc(LabBmc):
    """OpenIPMI's ``ipmi_sim`` with a chassis-control hook.

    It refuses cipher suite 17, so clients fall back to suite 3. The hook
    can also kill a process when the power goes off
    (:meth:`kill_on_power_off`) and fail the next calls with completion
    code 0xff (:meth:`fail_next_calls`).
    """

    kind = "ipmi_sim"

    @staticmethod
    def available() -> bool:
        """Whether ``ipmi_sim`` is installed."""
        return _ipmi_sim() is not None

    def _argv(self) -> list[str]:
        binary = _ipmi_sim()
        if binary is None:
            raise RuntimeError("ipmi_sim is not installed (package openipmi)")
        hook = self.workdir / "chassis_control.sh"
        shutil.copy(_HERE / "chassis_control.sh", hook)
        hook.chmod(0o755)
        conf = self.workdir / "lan.conf"
        conf.write_text(
            _LAN_CONF.format(
                address=self.host,
                port=self.port,
                hook=hook,
                state=self.state,
                user=self.user,
                password=self.password,
            )
        )
        conf.chmod(0o600)
        statedir = self.workdir / "simstate"
        statedir.mkdir(exist_ok=True)
        return [
            binary,
            "-n",
            "-c",
            str(conf),
            "-f",
            str(_HERE / "bmc.emu"),
            "-s",
            str(statedir),
        ]

    def kill_on_power_off(self, pid: int) -> None:
        """Make powering off this BMC kill process ``pid``."""
        Path(f"{self.state}.kill").write_text(f"{pid}\n")

    def fail_next_calls(self, count: int) -> None:
        """Make the next ``count`` chassis calls fail with code 0xff."""
        Path(f"{self.state}.fail").write_text(f"{count}\n")


def _ipmi_sim() -> str | None:
    return shutil.which("ipmi_sim")


class SimulatedBmc(LabBmc):
    """fencekit's own BMC: pyghmi's BMC server class in a child process.

    It speaks IPMI 2.0 with cipher suite 3 only: give drivers
    ``cipher=3``. The password reaches it through a file, not argv.
    """

    kind = "simulated-bmc"
    cipher = 3

    def _argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "fencekit._simbmc",
            "--address",
            self.host,
            "--port",
            str(self.port),
            "--user",
            self.user,
            "--password-file",
            str(self.password_file()),
            "--state-file",
            str(self.state),
        ]
