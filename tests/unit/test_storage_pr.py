"""Command retries and read-back rules on scripted target answers.

These are faults tgtd cannot be made to produce (busy, endless unit
attentions, a key list longer than the first allocation, a target that
sends less than it announced); the real exchanges are in the tgtd tests.
"""

from __future__ import annotations

import struct

import pytest

from fencekit.errors import ConfigError, ProtocolError
from fencekit.storage import operations, spc
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.spc import CommandResult

UA = CommandResult(2, sense=bytes.fromhex("700006000000000a000000002900"))
BUSY = CommandResult(0x08)
GOOD = CommandResult(0)
HELD = struct.pack(">IIQ4xBBH", 3, 16, 0xA, 0, 5, 0)


class Script:
    """A transport that answers from a list and keeps the CDBs."""

    device = "scripted"

    def __init__(self, *answers: CommandResult) -> None:
        self.answers = list(answers)
        self.cdbs: list[bytes] = []

    async def execute(
        self,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        timeout: float,
    ) -> CommandResult:
        self.cdbs.append(cdb)
        return self.answers.pop(0)

    async def close(self) -> None:
        pass


class Clock:
    """A clock that records sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


def keys(*values: int, announced: int | None = None) -> CommandResult:
    length = 8 * len(values) if announced is None else announced
    body = struct.pack(f">II{len(values)}Q", 1, length, *values)
    return CommandResult(0, data=body)


async def test_unit_attention_is_repeated_without_pause() -> None:
    """Two unit attentions, then the answer: three round trips."""
    clock = Clock()
    path = PersistentReservations(
        Script(UA, UA, keys(0xA)),
        clock=clock,
    )

    registrations = await path.read_keys()

    assert registrations.keys == (0xA,)
    assert path.commands == 3 and clock.slept == []


async def test_busy_is_repeated_after_a_pause() -> None:
    """BUSY waits ``pause`` seconds on the injected clock."""
    clock = Clock()
    path = PersistentReservations(
        Script(BUSY, GOOD),
        clock=clock,
        pause=0.5,
    )

    await path.register(0xA)

    assert clock.slept == [0.5]


async def test_unit_attention_without_end_is_raised() -> None:
    """After ``attempts`` unit attentions the error is raised."""
    path = PersistentReservations(
        Script(UA, UA, UA),
        attempts=3,
    )

    with pytest.raises(spc.UnitAttentionError):
        await path.read_keys()


async def test_truncated_key_list_is_read_again_larger() -> None:
    """More keys than the first allocation: asked again, all returned."""
    many = tuple(range(1, 71))
    first = keys(*many[:64], announced=8 * 70)
    script = Script(first, keys(*many))
    path = PersistentReservations(script)

    registrations = await path.read_keys()

    assert registrations.keys == many
    assert struct.unpack(">H", script.cdbs[1][7:9]) == (8 + 8 * 70,)


async def test_key_list_shorter_than_announced_is_an_error() -> None:
    """A key list shorter than announced is never trusted."""
    short = keys(0xA, announced=16)
    path = PersistentReservations(Script(short, short))

    with pytest.raises(ProtocolError, match="announced"):
        await path.read_keys()


async def test_fence_without_reservation_reserves() -> None:
    """No reservation after the preempt: RESERVE is sent."""
    none = CommandResult(0, data=struct.pack(">II", 2, 0))
    held = CommandResult(0, data=HELD)
    script = Script(GOOD, GOOD, keys(0xA), none, GOOD, held)
    unit = LogicalUnit("u", (PersistentReservations(script),))

    outcome = await operations.fence([unit], 0xA, 0xB)

    assert outcome.success, outcome.reason
    assert [cdb[:2].hex() for cdb in script.cdbs] == [
        "5f06", "5f05", "5e00", "5e01", "5f01", "5e01",
    ]  # fmt: skip


async def test_fence_that_leaves_the_key_is_not_verified() -> None:
    """The preempt was accepted but the key reads back: a failure."""
    held = CommandResult(0, data=HELD)
    script = Script(GOOD, GOOD, keys(0xA, 0xB), held)
    unit = LogicalUnit("u", (PersistentReservations(script),))

    outcome = await operations.fence([unit], 0xA, 0xB)

    assert not outcome.success
    assert "still registered" in (outcome.reason or "")
    assert outcome.units[0].error is not None


async def test_fencing_our_own_key_is_refused() -> None:
    """A victim key equal to ours is a configuration error."""
    unit = LogicalUnit("u", (PersistentReservations(Script()),))

    with pytest.raises(ConfigError, match="ourselves"):
        await operations.fence([unit], 0xA, 0xA)
