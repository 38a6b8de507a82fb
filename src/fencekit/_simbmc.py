"""fencekit's simulated IPMI BMC, run as its own process.

    python -m fencekit._simbmc --port P --user U --password-file F \
        --state-file S

Built on pyghmi's BMC server class. The power state lives in the state
file (``1`` on, ``0`` off) and every power command is appended to
``S.log``, so a test or the demo can see what reached the BMC. It speaks
IPMI 2.0 with cipher suite 3 only: clients must pin suite 3. The password
is read from a file, never from the command line.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def _bmc_class() -> type:
    import pyghmi.ipmi.bmc as bmc

    class SimulatedBmc(bmc.Bmc):  # type: ignore[misc]
        """A BMC whose chassis is a file."""

        state_file: Path

        def get_power_state(self) -> str:
            text = self.state_file.read_text().strip()
            return "on" if text == "1" else "off"

        def _set(self, on: bool, what: str) -> None:
            self.state_file.write_text("1\n" if on else "0\n")
            with open(f"{self.state_file}.log", "a") as log:
                log.write(f"{time.time():.6f} set {what}\n")

        def power_off(self) -> None:
            self._set(False, "power=0")

        def power_on(self) -> None:
            self._set(True, "power=1")

        def power_shutdown(self) -> None:
            self._set(False, "shutdown=0")

        def power_reset(self) -> None:
            self._set(True, "reset=1")

        def power_cycle(self) -> None:
            self._set(True, "cycle=1")

        def pulse_diag(self) -> None:
            with open(f"{self.state_file}.log", "a") as log:
                log.write(f"{time.time():.6f} set diag=1\n")

    return SimulatedBmc


def main(argv: list[str] | None = None) -> None:
    """Serve one simulated BMC until killed."""
    parser = argparse.ArgumentParser(prog="python -m fencekit._simbmc")
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", type=Path, required=True)
    parser.add_argument("--state-file", type=Path, required=True)
    args = parser.parse_args(argv)

    password = args.password_file.read_text().splitlines()[0]
    if not args.state_file.exists():
        args.state_file.write_text("1\n")
    cls: Any = _bmc_class()
    cls.state_file = args.state_file
    server = cls({args.user: password}, port=args.port, address=args.address)
    server.listen()


if __name__ == "__main__":
    main()
