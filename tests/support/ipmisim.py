"""OpenIPMI's ``ipmi_sim`` as a BMC on a free loopback port, for tests.

The BMC itself is :class:`fencekit.lab.bmc.IpmiSimBmc`; this adds what
only tests need: a missing ``ipmi_sim`` fails (CI) or skips the test, and
``ipmitool`` reads the state independently of fencekit.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from fencekit.lab.bmc import IpmiSimBmc
from tests.support import peers


class IpmiSim(IpmiSimBmc):
    """An ``ipmi_sim`` BMC; start with :meth:`start`, stop by PID."""

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "admin",
        password: str = "fk-secret",
        power_on: bool = True,
    ) -> None:
        self.binary = peers.require("ipmi_sim")
        super().__init__(
            workdir, user=user, password=password, power_on=power_on
        )

    def start(self, port: int | None = None, timeout: float = 10.0) -> IpmiSim:
        """Start the BMC and wait until its UDP port is bound."""
        super().start(port, timeout)
        return self

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
