"""A canary password never shows in logs, errors, outcomes or URLs."""

from __future__ import annotations

import logging
import subprocess
import sys
from typing import Any

import pytest
from structlog.testing import capture_logs

from fencekit.outcome import Action, FenceOutcome
from fencekit.power.operate import Verification, attempt
from fencekit.power.redfish import RedfishDriver
from fencekit.secrets import Secret
from tests.support.redfish import (
    SYSTEM_IDS,
    FaultyRedfish,
    Pki,
    SushyEmulator,
    pki,
    sushy,
)

__all__ = ["pki", "sushy"]

CANARY = "Canary-7f3a9c1e-pw"
FAST = Verification(timeout=5.0, settle=2, interval=0.02)


def everything_said(
    outcome: FenceOutcome, logs: list[Any], caplog: pytest.LogCaptureFixture
) -> str:
    """All text a failing fence produced: logs, outcome, error chain."""
    parts = [repr(logs), repr(outcome), repr(outcome.to_dict()), caplog.text]
    error: BaseException | None = outcome.error
    while error is not None:
        parts += [str(error), repr(error), repr(error.args)]
        error = error.__cause__ or error.__context__
    return "\n".join(parts)


async def fence(driver: RedfishDriver) -> tuple[FenceOutcome, list[Any]]:
    """A verified off that is expected to fail, with its log events."""
    with capture_logs() as logs:
        async with driver:
            outcome = await attempt(driver, Action.OFF, verification=FAST)
    return outcome, logs


async def test_canary_refused_by_emulator(
    sushy: SushyEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Basic auth with a wrong (canary) password: the canary stays hidden."""
    caplog.set_level(logging.DEBUG)
    driver = RedfishDriver(
        sushy.host,
        port=sushy.port,
        username=sushy.user,
        password=Secret(CANARY),
        system=SYSTEM_IDS[0],
        ca_file=sushy.ca_file,
    )

    outcome, logs = await fence(driver)

    assert not outcome.success
    assert CANARY not in everything_said(outcome, logs, caplog)
    assert CANARY not in repr(driver)


async def test_canary_session_with_refused_reset(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """Session works, reset refused: no canary or token anywhere."""
    caplog.set_level(logging.DEBUG)
    service = FaultyRedfish(pki, password=CANARY).start()
    service.behaviour.refuse = (400, {"error": {"message": "refused"}})
    driver = RedfishDriver(
        service.host,
        port=service.port,
        username=service.user,
        password=Secret(CANARY),
        system=service.system_id,
        ca_file=pki.ca_file,
    )

    try:
        outcome, logs = await fence(driver)
    finally:
        service.stop()

    said = everything_said(outcome, logs, caplog)
    assert not outcome.success
    assert CANARY not in said
    tokens = list(service.deleted) + list(service.tokens)
    assert tokens and not any(token in said for token in tokens)
    assert not any(CANARY in seen.path for seen in service.seen)


async def test_canary_login_refused(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused session login keeps the canary out of everything."""
    caplog.set_level(logging.DEBUG)
    service = FaultyRedfish(pki).start()
    driver = RedfishDriver(
        service.host,
        port=service.port,
        username=service.user,
        password=Secret(CANARY),
        system=service.system_id,
        ca_file=pki.ca_file,
    )

    try:
        outcome, logs = await fence(driver)
    finally:
        service.stop()

    assert not outcome.success
    assert CANARY not in everything_said(outcome, logs, caplog)


def test_canary_through_the_cli(sushy: SushyEmulator) -> None:
    """The CLI at -vv prints nothing of the canary, and argv holds none."""
    argv = [
        sys.executable, "-m", "fencekit.cli", "-vv",
        "power", "off", "--driver", "redfish",
        "--host", sushy.host, "--port", str(sushy.port),
        "--system", SYSTEM_IDS[0], "--username", sushy.user,
        "--password-file", str(sushy.password_file(CANARY)),
        "--ca-file", str(sushy.ca_file), "--json",
    ]  # fmt: skip

    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False
    )

    assert done.returncode == 1
    assert CANARY not in done.stdout + done.stderr
    assert not any(CANARY in arg for arg in argv)
    assert "redfish" in done.stderr
