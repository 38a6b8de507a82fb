"""Fixtures shared by every test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ipmisim import IpmiSim
from tests.support.tgtd import Tgtd


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Undo any logging set-up a test made through configure()."""
    yield
    import structlog

    from fencekit import _log

    _log.set_threshold(0, None)
    structlog.reset_defaults()


@pytest.fixture
def ipmi_sim(tmp_path: Path) -> Iterator[IpmiSim]:
    """A running ``ipmi_sim`` BMC with power on."""
    sim = IpmiSim(tmp_path / "bmc").start()
    try:
        yield sim
    finally:
        sim.stop()


@pytest.fixture
def ipmi_sim_factory(tmp_path: Path) -> Iterator[object]:
    """Start several BMCs: ``ipmi_sim_factory("node-b")``."""
    sims: list[IpmiSim] = []

    def start(name: str, **kwargs: object) -> IpmiSim:
        sim = IpmiSim(tmp_path / name, **kwargs).start()  # type: ignore[arg-type]
        sims.append(sim)
        return sim

    try:
        yield start
    finally:
        for sim in sims:
            sim.stop()


@pytest.fixture
def tgtd(tmp_path: Path) -> Iterator[Tgtd]:
    """A tgtd with one file-backed LUN on a free loopback port."""
    target = Tgtd(tmp_path / "tgtd").start()
    try:
        yield target
    finally:
        target.stop()
