"""SG_IO transport on recorded command/response pairs.

This machine has no kernel SCSI disk, so the ioctl is replaced by a
replay of what tgtd answered to the same commands
(``tests/fixtures/scsi/tgtd-fence.json``, recorded by
``record_tgtd.py``). The replay reads the CDB and data-out through the
packed ``sg_io_hdr``'s pointers and writes data, sense and status back
the way the kernel does, so the packing is exercised for real.
"""

from __future__ import annotations

import ctypes
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from fencekit.errors import (
    DeviceTimeoutError,
    ProtocolError,
    UnreachableError,
)
from fencekit.storage import operations, spc
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.sgio import HEADER, SG_IO, SgioTransport

FIXTURE = Path(__file__).parents[1] / "fixtures" / "scsi" / "tgtd-fence.json"
RECORDED = json.loads(FIXTURE.read_text())
KEY_A = RECORDED["keys"]["node-a"]
KEY_B = RECORDED["keys"]["node-b"]


class Replay:
    """An SG_IO ioctl that answers from recorded pairs, in order."""

    def __init__(self, pairs: list[dict[str, Any]], **reply: int) -> None:
        self.pairs = list(pairs)
        self.reply = reply
        self.seen: list[dict[str, int]] = []

    def __call__(self, fd: int, request: int, header: bytearray) -> int:
        assert request == SG_IO
        fields = list(HEADER.unpack(bytes(header)))
        iface, direction, cmd_len, mx_sb, _, length = fields[:6]
        data_ptr, cdb_ptr, sense_ptr, timeout = fields[6:10]
        assert iface == ord("S") and timeout > 0
        self.seen.append({"direction": direction, "length": length})
        pair = self.pairs.pop(0)
        assert ctypes.string_at(cdb_ptr, cmd_len).hex() == pair["cdb"]
        if pair["data_out"]:
            sent = ctypes.string_at(data_ptr, length)
            assert sent.hex() == pair["data_out"]

        data = bytes.fromhex(pair["data"])
        sense = bytes.fromhex(pair["sense"])[:mx_sb]
        if data:
            ctypes.memmove(data_ptr, data, min(len(data), length))
        if sense:
            ctypes.memmove(sense_ptr, sense, len(sense))
        status = pair["status"]
        fields[13:22] = [
            status, status >> 1, 0, len(sense),
            self.reply.get("host_status", 0),
            self.reply.get("driver_status", 0x08 if sense else 0),
            length - len(data) if data else 0, 1, 0,
        ]  # fmt: skip
        header[:] = HEADER.pack(*fields)
        return 0


def _unit(pairs: list[dict[str, Any]], **reply: int) -> LogicalUnit:
    transport = SgioTransport(
        "/dev/sdz", ioctl=Replay(pairs, **reply), opener=lambda _: 99
    )
    return LogicalUnit("/dev/sdz", (PersistentReservations(transport),))


async def test_fence_over_sgio_replays_the_tgtd_fence() -> None:
    """The whole fence runs over SG_IO: fallback, preempt, read-back."""
    unit = _unit(RECORDED["fence"]["node-a"])

    outcome = await operations.fence([unit], KEY_A, KEY_B)

    assert outcome.success, outcome.reason
    assert outcome.units[0].aborted is False
    assert outcome.units[0].keys == (KEY_A,)
    assert outcome.commands == 5


async def test_data_direction_and_length_are_packed() -> None:
    """PR OUT sends 24 bytes to the device; PR IN reads from it."""
    replay = Replay(RECORDED["fence"]["node-a"])
    transport = SgioTransport("/dev/sdz", ioctl=replay, opener=lambda _: 9)
    path = PersistentReservations(transport)

    await path.register(KEY_A)

    assert replay.seen == [{"direction": -2, "length": 24}]


async def test_victim_sees_unit_attention_then_conflict() -> None:
    """The victim's READ KEYS passes the unit attention; WRITE conflicts."""
    unit = _unit(RECORDED["fence"]["node-b"])

    status = await operations.status([unit], KEY_B)

    assert not status.success and status.units[0].error is None
    with pytest.raises(spc.ReservationConflictError):
        await unit.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * 512
        )


async def test_setup_replay_unfences_both_nodes() -> None:
    """Unfence over SG_IO: register, reserve, read back."""
    for node, key in (("node-a", KEY_A), ("node-b", KEY_B)):
        unit = _unit(RECORDED["setup"][node])

        outcome = await operations.unfence([unit], key)

        assert outcome.success, outcome.reason


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        ({"host_status": 0x01}, UnreachableError),
        ({"host_status": 0x03}, DeviceTimeoutError),
        ({"driver_status": 0x06}, DeviceTimeoutError),
        ({"driver_status": 0x04}, ProtocolError),
    ],
)
async def test_host_and_driver_status_are_transport_errors(
    reply: dict[str, int], error: type[Exception]
) -> None:
    """A failed path or a timeout is a transport error, not a result."""
    unit = _unit(RECORDED["fence"]["node-a"], **reply)

    with pytest.raises(error):
        await unit.paths[0].register(KEY_A)


async def test_not_a_scsi_device_is_refused_by_the_kernel() -> None:
    """The real ioctl on /dev/null fails: a protocol error names it."""
    transport = SgioTransport("/dev/null")
    try:
        with pytest.raises(ProtocolError, match="not a SCSI device"):
            await transport.execute(b"\x00" * 6, timeout=1)
    finally:
        await transport.close()


async def test_missing_device_is_unreachable() -> None:
    """A device node that does not exist cannot be opened."""
    transport = SgioTransport("/nonexistent/sdq")

    with pytest.raises(UnreachableError, match="cannot open"):
        await transport.execute(b"\x00" * 6, timeout=1)


async def test_ioctl_timeout_errno_is_a_timeout() -> None:
    """ETIMEDOUT from the ioctl is a device timeout."""

    def ioctl(fd: int, request: int, header: bytearray) -> int:
        raise OSError(errno.ETIMEDOUT, "timed out")

    transport = SgioTransport("/dev/sdz", ioctl=ioctl, opener=lambda _: 9)

    with pytest.raises(DeviceTimeoutError):
        await transport.execute(b"\x00" * 6, timeout=1)
