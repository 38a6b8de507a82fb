"""Command probe: run an executable and judge its exit code."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Mapping
from typing import Any

from fencekit.probes._options import Options
from fencekit.probes.base import ProbeOutcome, outcome

__all__ = ["CommandProbe", "from_options"]

# What a failing command printed last is the best reason to show.
_TAIL = 200


class CommandProbe:
    """Run ``argv`` (no shell); healthy when it exits with an OK code.

    The command runs in its own process group, so that a timeout kills
    whatever it started too.

    Args:
        argv: the program and its arguments.
        timeout: deadline in seconds.
        ok_codes: exit codes that mean healthy.
        env: extra environment variables.
    """

    kind = "command"

    def __init__(
        self,
        argv: list[str],
        *,
        timeout: float = 10.0,
        ok_codes: tuple[int, ...] = (0,),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.target = shlex.join(self.argv)
        self.timeout = timeout
        self.ok_codes = ok_codes
        self.env = dict(env or {})

    async def run(self) -> ProbeOutcome:
        """Run the command once; never raises."""
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        except OSError as exc:
            reason = f"cannot run {self.argv[0]}: {exc.strerror or exc}"
            return outcome(self, started, False, reason)

        try:
            async with asyncio.timeout(self.timeout):
                output, _ = await process.communicate()
        except TimeoutError:
            await _kill(process)
            reason = f"no exit within {self.timeout:g} s"
            return outcome(self, started, False, reason)

        code = process.returncode
        assert code is not None
        details = {"exit_code": code}
        if code in self.ok_codes:
            return outcome(self, started, True, "", details)
        tail = output.decode("utf-8", "replace").strip()[-_TAIL:]
        reason = f"exit code {code}" + (f": {tail}" if tail else "")
        return outcome(self, started, False, reason, details)


async def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()
    await process.wait()


def from_options(table: Mapping[str, Any], where: str = "") -> CommandProbe:
    """Build a :class:`CommandProbe` from an option table.

    ``command`` is a list of strings, or one string split like a shell
    would (without running one).

    Raises:
        ConfigError: an option is missing, unknown or invalid.
    """
    opts = Options(table, where)
    raw = opts.value("command")
    if isinstance(raw, str):
        try:
            argv = shlex.split(raw)
        except ValueError as exc:
            raise opts.fail("command", f"cannot parse: {exc}") from exc
    elif isinstance(raw, list) and all(isinstance(a, str) for a in raw):
        argv = list(raw)
    else:
        raise opts.fail("command", "must be a string or list of strings")
    if not argv:
        raise opts.fail("command", "is empty")
    codes = opts.value("ok_codes", [0])
    if not isinstance(codes, list) or not all(
        isinstance(c, int) and not isinstance(c, bool) for c in codes
    ):
        raise opts.fail("ok_codes", "must be a list of exit codes")
    env = opts.value("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(v, str) for v in env.values()
    ):
        raise opts.fail("env", "must be a table of strings")
    probe = CommandProbe(
        argv,
        timeout=opts.number("timeout", 10.0, minimum=0.001),
        ok_codes=tuple(codes),
        env=env,
    )
    opts.finish()
    return probe
