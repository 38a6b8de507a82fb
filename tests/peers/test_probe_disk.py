"""Disk probe: O_DIRECT reads and heartbeats on a loop device and a file."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.errors import ConfigError
from fencekit.probes import build
from tests.support.peers import require

SIZE = 4 * 1024 * 1024


@pytest.fixture
def backing(tmp_path: Path) -> Path:
    """A 4 MiB file on a file system that supports O_DIRECT."""
    path = tmp_path / "disk.img"
    with path.open("wb") as stream:
        stream.truncate(SIZE)
    return path


@pytest.fixture
def loop_device(backing: Path) -> Iterator[str]:
    """A loop device over ``backing`` with direct I/O; detached after."""
    losetup = require("losetup")
    done = subprocess.run(
        [losetup, "--find", "--show", "--direct-io=on", str(backing)],
        capture_output=True,
        text=True,
        check=True,
    )
    device = done.stdout.strip()
    try:
        yield device
    finally:
        # Loop devices are machine-wide: detach exactly this one.
        subprocess.run([losetup, "-d", device], check=False)


async def test_read_from_loop_device(loop_device: str) -> None:
    """An O_DIRECT read of a block of a loop device is healthy."""
    probe = build("disk", {"path": loop_device, "offset": 8192})

    outcome = await probe.run()

    assert outcome.healthy, outcome.reason
    assert outcome.target == loop_device


async def test_heartbeat_on_loop_device(
    loop_device: str, backing: Path
) -> None:
    """The heartbeat block is written through to the backing file."""
    probe = build(
        "disk", {"path": loop_device, "heartbeat_offset": SIZE - 4096}
    )

    outcome = await probe.run()

    assert outcome.healthy, outcome.reason
    with backing.open("rb") as stream:
        stream.seek(SIZE - 4096)
        assert stream.read(4) == b"FKHB"


async def test_read_and_heartbeat_on_file(backing: Path) -> None:
    """A plain file works too, read and heartbeat."""
    probe = build("disk", {"path": str(backing), "heartbeat_offset": 4096 * 3})

    outcome = await probe.run()

    assert outcome.healthy, outcome.reason


async def test_read_past_the_end_is_unhealthy(backing: Path) -> None:
    """A read beyond the end is a short read, not a success."""
    probe = build("disk", {"path": str(backing), "offset": SIZE})

    outcome = await probe.run()

    assert not outcome.healthy
    assert outcome.reason.startswith("short read")


async def test_missing_device_is_unhealthy(tmp_path: Path) -> None:
    """A missing path is unhealthy with the system's reason."""
    outcome = await build("disk", {"path": str(tmp_path / "nope")}).run()

    assert not outcome.healthy
    assert "No such file" in outcome.reason


def test_unaligned_offset_is_a_config_error() -> None:
    """Offsets that O_DIRECT would refuse are refused at load time."""
    with pytest.raises(ConfigError, match=r"x.offset: must be a multiple"):
        build("disk", {"path": "/dev/null", "offset": 100}, "x")


async def test_hung_open_fails_at_the_deadline(tmp_path: Path) -> None:
    """A read that never returns (a FIFO with no writer) fails in time."""
    fifo = tmp_path / "hung"
    os.mkfifo(fifo)
    probe = build("disk", {"path": str(fifo), "timeout": 0.3})

    try:
        outcome = await probe.run()
    finally:
        # Release the probe thread still blocked in open().
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    assert not outcome.healthy
    assert outcome.reason == "I/O hung: no answer within 0.3 s"
    assert outcome.duration < 3
