"""Redfish power off: fencekit against fence_redfish on sushy-emulator.

Run from the repository root, in the project's virtual environment:

    .venv/bin/python -m bench.bench_redfish [--runs 30] [--cycles 100]

Everything runs against one sushy-tools emulator (fake driver, power
changes applied at once) over HTTPS with a throw-away CA, pinned for both
tools: fencekit through ``--ca-file``, Debian's ``fence_redfish`` through
``REQUESTS_CA_BUNDLE`` (it calls requests without a session, so the
variable is its trust store). The system is set back on before every
run, outside the timing.

1. whole commands, alternating: ``fencekit power off --driver redfish``
   and ``fence_redfish -o off`` (options on stdin, as Pacemaker gives
   them, so no password on its argv);
2. the same two commands under hyperfine, as a cross-check (there the
   throw-away password is on fence_redfish's argv: hyperfine 1.15 has no
   way to feed stdin);
3. the library's verified off, in process, on a warm driver (service
   discovered, authentication decided). The emulator closes every
   connection (werkzeug), so each request still pays a TLS handshake;
   the same loop against fencekit's in-test service, which keeps the
   connection alive, shows what keep-alive saves.

Medians, p90 and max are printed, with the ratio fencekit/incumbent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.redfish import (
    SYSTEM_IDS,
    FaultyRedfish,
    Pki,
    SushyEmulator,
)

from fencekit.outcome import Action, PowerState
from fencekit.power.operate import Verification, operate
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))
FENCE_REDFISH = shutil.which("fence_redfish") or "/usr/sbin/fence_redfish"
SYSTEM = SYSTEM_IDS[0]


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and max of ``samples`` in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return {
        "runs": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def fencekit_argv(emu: SushyEmulator, password_file: Path) -> list[str]:
    """``fencekit power off`` for the emulated system."""
    return [
        FENCEKIT, "power", "off", "--driver", "redfish",
        "--host", emu.host, "--port", str(emu.port), "--system", SYSTEM,
        "--username", emu.user, "--password-file", str(password_file),
        "--ca-file", str(emu.ca_file),
    ]  # fmt: skip


def fence_redfish_stdin(emu: SushyEmulator) -> str:
    """fence_redfish's options as Pacemaker passes them, on stdin."""
    return "\n".join(
        [
            "action=off",
            f"ip={emu.host}",
            f"ipport={emu.port}",
            f"username={emu.user}",
            f"password={emu.password}",
            "ssl_secure=1",
            f"systems_uri=/redfish/v1/Systems/{SYSTEM}",
            "",
        ]
    )


# The same verified off as a plain script using the library, without the
# CLI: separates the CLI's start-up cost from the driver's.
_LIBRARY_ONCE = """\
import asyncio, sys
from fencekit.outcome import Action
from fencekit.power.operate import operate
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import from_file
port, system, user, pw_file, ca = sys.argv[1:6]
async def main():
    async with RedfishDriver("127.0.0.1", port=int(port), system=system,
            username=user, password=from_file(pw_file), ca_file=ca) as d:
        await operate(d, Action.OFF)
asyncio.run(main())
"""


def library_once_argv(emu: SushyEmulator, password_file: Path) -> list[str]:
    """A one-off Python process doing the verified off with the library."""
    return [
        sys.executable, "-c", _LIBRARY_ONCE, str(emu.port), SYSTEM,
        emu.user, str(password_file), str(emu.ca_file),
    ]  # fmt: skip


def pinned_env(emu: SushyEmulator) -> dict[str, str]:
    """The environment with the bench CA as requests' trust store."""
    return dict(os.environ, REQUESTS_CA_BUNDLE=str(emu.ca_file))


def alternate(
    emu: SushyEmulator, password_file: Path, runs: int
) -> dict[str, list[float]]:
    """Run both commands in turn, ``runs`` times each."""
    env = pinned_env(emu)
    stdin = fence_redfish_stdin(emu)
    runners: dict[str, Any] = {
        "fencekit power off": lambda: subprocess.run(
            fencekit_argv(emu, password_file),
            capture_output=True,
            env=env,
            check=False,
        ),
        "fence_redfish -o off": lambda: subprocess.run(
            [FENCE_REDFISH],
            input=stdin.encode(),
            capture_output=True,
            env=env,
            check=False,
        ),
        "library script (no CLI)": lambda: subprocess.run(
            library_once_argv(emu, password_file),
            capture_output=True,
            env=env,
            check=False,
        ),
    }
    timings: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            emu.set_power("On", SYSTEM)
            cpu_before = children_cpu()
            started = time.perf_counter()
            done = run()
            elapsed = time.perf_counter() - started
            CPU.setdefault(name, []).append(children_cpu() - cpu_before)
            if done.returncode != 0 or emu.power_state(SYSTEM) != "Off":
                raise SystemExit(f"{name} failed: {done.stderr!r}")
            timings[name].append(elapsed)
    return timings


# CPU seconds (user + system) of each whole-command run: steadier than
# wall time on a machine shared with other work.
CPU: dict[str, list[float]] = {}


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hyperfine(
    emu: SushyEmulator, password_file: Path, runs: int, out: Path
) -> dict[str, float]:
    """Median milliseconds per command under hyperfine."""
    prepare = subprocess.list2cmdline(
        [sys.executable, "-m", "bench.bench_redfish", "--power-on",
         str(emu.port), str(emu.ca_file), emu.user, emu.password]
    )  # fmt: skip
    incumbent = [
        FENCE_REDFISH, "-o", "off", "-a", emu.host, "-u", str(emu.port),
        "-l", emu.user, "-p", emu.password, "--ssl-secure",
        f"--systems-uri=/redfish/v1/Systems/{SYSTEM}",
    ]  # fmt: skip
    argvs = {
        "fencekit power off": fencekit_argv(emu, password_file),
        "fence_redfish -o off": incumbent,
    }
    subprocess.run(
        ["hyperfine", "-N", "--runs", str(runs), "--prepare", prepare,
         "--export-json", str(out),
         *(subprocess.list2cmdline(a) for a in argvs.values())],
        check=True, capture_output=True, env=pinned_env(emu),
    )  # fmt: skip
    results = json.loads(out.read_text())["results"]
    return {
        name: round(r["median"] * 1000, 1)
        for name, r in zip(argvs, results, strict=True)
    }


async def library_on_emulator(emu: SushyEmulator, cycles: int) -> list[float]:
    """Verified off on one warm driver, ``cycles`` times."""
    verify = Verification(timeout=10, settle=2, interval=0.01)
    samples = []
    async with RedfishDriver(
        emu.host,
        port=emu.port,
        username=emu.user,
        password=Secret(emu.password),
        system=SYSTEM,
        ca_file=emu.ca_file,
        auth="basic",
    ) as driver:
        await operate(driver, Action.STATUS)
        for _ in range(cycles):
            emu.set_power("On", SYSTEM)
            started = time.perf_counter()
            state = await operate(driver, Action.OFF, verification=verify)
            samples.append(time.perf_counter() - started)
            assert state is PowerState.OFF
    return samples


async def library_keep_alive(pki: Pki, cycles: int) -> list[float]:
    """The same loop on the in-test service, with keep-alive."""
    service = FaultyRedfish(pki).start()
    verify = Verification(timeout=10, settle=2, interval=0.01)
    samples = []
    try:
        async with RedfishDriver(
            service.host,
            port=service.port,
            username=service.user,
            password=Secret(service.password),
            system=service.system_id,
            ca_file=pki.ca_file,
        ) as driver:
            await operate(driver, Action.STATUS)
            for _ in range(cycles):
                service.behaviour.power = "On"
                started = time.perf_counter()
                state = await operate(driver, Action.OFF, verification=verify)
                samples.append(time.perf_counter() - started)
                assert state is PowerState.OFF
    finally:
        service.stop()
    return samples


def power_on(port: str, ca_file: str, user: str, password: str) -> None:
    """Set the emulated system on (hyperfine's --prepare step)."""
    import requests

    with requests.Session() as http:
        http.trust_env = False
        http.post(
            f"https://127.0.0.1:{port}/redfish/v1/Systems/{SYSTEM}"
            "/Actions/ComputerSystem.Reset",
            json={"ResetType": "On"},
            auth=(user, password),
            verify=ca_file,
            timeout=10,
        ).raise_for_status()


def main() -> None:
    """Run the benchmark and print the figures as JSON."""
    if sys.argv[1:2] == ["--power-on"]:
        power_on(*sys.argv[2:6])
        return
    from fencekit.logging import configure

    configure(verbosity=0)
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--cycles", type=int, default=100)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        emu = SushyEmulator(Path(tmp) / "sushy", user="u", password="p")
        emu.workdir.mkdir(parents=True, exist_ok=True)
        emu.start()
        try:
            password_file = emu.password_file()
            whole = alternate(emu, password_file, args.runs)
            hf = hyperfine(emu, password_file, args.runs, Path(tmp) / "hf")
            lib = asyncio.run(library_on_emulator(emu, args.cycles))
        finally:
            emu.stop()
        kept = asyncio.run(
            library_keep_alive(Pki(Path(tmp) / "pki"), args.cycles)
        )

    fk, incumbent, script = (summary(s) for s in whole.values())
    report = {
        "whole_command_alternating": dict(
            zip(whole, (fk, incumbent, script), strict=True)
        ),
        "ratio_median": round(fk["median_ms"] / incumbent["median_ms"], 2),
        "ratio_p90": round(fk["p90_ms"] / incumbent["p90_ms"], 2),
        "ratio_library_script_median": round(
            script["median_ms"] / incumbent["median_ms"], 2
        ),
        "whole_command_cpu_median_ms": {
            name: round(statistics.median(v) * 1000, 1)
            for name, v in CPU.items()
        },
        "hyperfine_median_ms": hf,
        "library_warm_verified_off_emulator": summary(lib),
        "library_warm_verified_off_keep_alive": summary(kept),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
