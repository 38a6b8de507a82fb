"""The fencer's logic on in-memory fence devices: levels, joins, safety.

Wire behaviour is tested against ipmi_sim in tests/peers/test_fencer.py;
here the devices are :class:`fencekit.testing.FakePowerDriver`s plugged
in through the fence-method registry, which these tests also cover.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit import fencing
from fencekit.blocking import BlockingFencer
from fencekit.config import Inventory, parse
from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    FenceFailedError,
    FencekitError,
    UnreachableError,
)
from fencekit.fencing import Fencer, MethodContext, PowerMethod
from fencekit.journal import read
from fencekit.outcome import Action, PowerState
from fencekit.testing import FakeClock, FakePowerDriver

DEVICES: dict[str, FakePowerDriver] = {}


class FakeMethod(PowerMethod):
    """A power method whose driver is the fake named by the device host."""

    async def _open(self) -> Any:
        return DEVICES[self._context.device.host]


def build_fake(context: MethodContext) -> fencing.FenceMethod:
    """Builder for driver "fake" (also reached through LAZY_METHODS)."""
    return FakeMethod(context)


@pytest.fixture(autouse=True)
def fake_driver(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(fencing._BUILDERS, "fake", build_fake)
    DEVICES.clear()
    yield
    DEVICES.clear()


def inventory(
    tmp_path: Path,
    levels: dict[str, list[list[str]]],
    *,
    fencer: dict[str, Any] | None = None,
    delay: dict[str, float] | None = None,
) -> Inventory:
    names = {d for lv in levels.values() for level in lv for d in level}
    for name in names:
        DEVICES.setdefault(name, FakePowerDriver(device=name))
    data = {
        "cluster": "unit",
        "fencer": {
            "run_dir": str(tmp_path / "run"),
            "journal": str(tmp_path / "journal.jsonl"),
            "fence_timeout": 10,
            "interval": 0.01,
            **(fencer or {}),
        },
        "devices": {
            name: {"driver": "fake", "host": name, "timeout": 2}
            for name in sorted(names)
        },
        "nodes": [
            {
                "name": node,
                "id": number,
                "levels": node_levels,
                "delay": (delay or {}).get(node, 0),
            }
            for number, (node, node_levels) in enumerate(levels.items(), 1)
        ],
    }
    return parse(data)


def events(tmp_path: Path) -> list[str]:
    return [r["event"] for r in read(tmp_path / "journal.jsonl").records]


async def test_first_level_success(tmp_path: Path) -> None:
    """Level 1 powers the node off and the journal has three records."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"], ["pdu-b"]]})

    outcome = await Fencer(inv).fence("node-b")

    assert outcome.success
    assert outcome.device == "bmc-b"
    assert outcome.state is PowerState.OFF
    assert DEVICES["bmc-b"].state is PowerState.OFF
    assert DEVICES["pdu-b"].commands == []
    assert events(tmp_path) == ["requested", "attempt", "outcome"]


async def test_second_level_after_first_fails(tmp_path: Path) -> None:
    """When level 1 fails, level 2 fences; both attempts are journalled."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"], ["pdu-b"]]})
    DEVICES["bmc-b"] = FakePowerDriver(
        device="bmc-b",
        read_errors=[AuthenticationError("refused")],
    )

    outcome = await Fencer(inv).fence("node-b")

    assert outcome.success
    assert outcome.device == "pdu-b"
    assert outcome.attempts == 2
    records = read(tmp_path / "journal.jsonl").records
    attempts = [r for r in records if r["event"] == "attempt"]
    assert [(r["level"], r["verified"]) for r in attempts] == [
        (1, False),
        (2, True),
    ]
    assert "refused" in attempts[0]["reason"]


async def test_all_levels_fail_keep_every_cause(tmp_path: Path) -> None:
    """Every level failing gives a failure holding each level's cause."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"], ["pdu-b"]]})
    DEVICES["bmc-b"] = FakePowerDriver(
        device="bmc-b", read_errors=[AuthenticationError("bad user")]
    )
    DEVICES["pdu-b"] = FakePowerDriver(
        device="pdu-b", read_errors=[UnreachableError("no answer")]
    )

    outcome = await Fencer(inv).fence("node-b")

    assert not outcome.success
    assert isinstance(outcome.error, FenceFailedError)
    assert [str(c) for c in outcome.error.causes] == ["bad user", "no answer"]
    assert "level 1" in str(outcome.reason)
    assert "level 2" in str(outcome.reason)
    last = read(tmp_path / "journal.jsonl").records[-1]
    assert last["event"] == "outcome"
    assert last["success"] is False
    assert last["causes"] == ["bad user", "no answer"]


async def test_level_devices_must_all_succeed(tmp_path: Path) -> None:
    """A level of two devices fails when one of them fails."""
    inv = inventory(tmp_path, {"node-b": [["pdu-1", "pdu-2"], ["bmc-b"]]})
    DEVICES["pdu-2"] = FakePowerDriver(
        device="pdu-2", read_errors=[AuthenticationError("refused")]
    )

    outcome = await Fencer(inv).fence("node-b")

    assert outcome.success
    assert outcome.device == "bmc-b"
    assert DEVICES["pdu-1"].state is PowerState.OFF


async def test_level_of_two_devices(tmp_path: Path) -> None:
    """Both devices of a level are switched off and verified."""
    inv = inventory(tmp_path, {"node-b": [["pdu-1", "pdu-2"]]})

    outcome = await Fencer(inv).fence("node-b")

    assert outcome.success
    assert outcome.device == "pdu-1+pdu-2"
    assert DEVICES["pdu-1"].state is PowerState.OFF
    assert DEVICES["pdu-2"].state is PowerState.OFF


async def test_reboot_is_off_then_on(tmp_path: Path) -> None:
    """reboot powers off, verifies, then powers on."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]]})

    outcome = await Fencer(inv).fence("node-b", "reboot")

    assert outcome.success
    assert not outcome.power_on_failed
    assert DEVICES["bmc-b"].commands == [Action.OFF, Action.ON]
    assert outcome.state is PowerState.ON


async def test_reboot_power_on_failure_still_fenced(tmp_path: Path) -> None:
    """A reboot whose power-on fails is a fence with power_on_failed."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]]})
    DEVICES["bmc-b"] = FakePowerDriver(
        device="bmc-b",
        send_errors=[None, AuthenticationError("on refused")],
    )

    outcome = await Fencer(inv).fence("node-b", Action.REBOOT)

    assert outcome.success
    assert outcome.power_on_failed
    assert "power-on failed" in str(outcome.reason)
    assert DEVICES["bmc-b"].state is PowerState.OFF


async def test_local_node_refused_unless_allowed(tmp_path: Path) -> None:
    """The local node is not fenced off unless allowed; on is fine."""
    inv = inventory(
        tmp_path,
        {"node-a": [["bmc-a"]], "node-b": [["bmc-b"]]},
        fencer={"local_node": "node-a"},
    )

    with pytest.raises(ConfigError, match="refusing to fence the local"):
        await Fencer(inv).fence("node-a")
    assert (await Fencer(inv).fence("node-a", "on")).success
    assert DEVICES["bmc-a"].commands == []

    outcome = await Fencer(inv, allow_local=True).fence("node-a")
    assert outcome.success


async def test_delay_before_power_off(tmp_path: Path) -> None:
    """The node's delay is waited before powering off, not before on."""
    inv = inventory(tmp_path, {"node-a": [["bmc-a"]]}, delay={"node-a": 7.5})
    clock = FakeClock()

    await Fencer(inv, clock=clock).fence("node-a", "on")
    assert 7.5 not in clock.slept
    outcome = await Fencer(inv, clock=clock).fence("node-a", "off")

    assert outcome.success
    assert 7.5 in clock.slept
    assert "delay" in events(tmp_path)


async def test_concurrent_requests_join(tmp_path: Path) -> None:
    """Concurrent requests for one node share one fence and its outcome."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]]})
    fencer = Fencer(inv)

    outcomes = await asyncio.gather(
        *(fencer.fence("node-b") for _ in range(20))
    )

    assert len({id(o) for o in outcomes}) == 1
    assert DEVICES["bmc-b"].commands == [Action.OFF]
    assert events(tmp_path).count("requested") == 1


async def test_cancelled_caller_does_not_cancel_fence(tmp_path: Path) -> None:
    """A caller giving up leaves the fence running for the others."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]]})
    DEVICES["bmc-b"] = FakePowerDriver(device="bmc-b", lag=3)
    fencer = Fencer(inv)

    first = asyncio.ensure_future(fencer.fence("node-b"))
    second = asyncio.ensure_future(fencer.fence("node-b"))
    await asyncio.sleep(0)
    first.cancel()

    assert (await second).success
    await fencer.close()


async def test_lock_held_elsewhere_until_deadline(tmp_path: Path) -> None:
    """A node locked by another process until the deadline fails."""
    inv = inventory(
        tmp_path, {"node-b": [["bmc-b"]]}, fencer={"fence_timeout": 0.3}
    )
    (tmp_path / "run").mkdir()
    fd = os.open(tmp_path / "run" / "node-node-b.lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        outcome = await Fencer(inv).fence("node-b")
    finally:
        os.close(fd)

    assert not outcome.success
    assert "held the lock" in str(outcome.reason)
    assert DEVICES["bmc-b"].commands == []


async def test_unconfirmed_is_failure(tmp_path: Path) -> None:
    """A command accepted but never read back as off is a failure."""
    inv = inventory(
        tmp_path, {"node-b": [["bmc-b"]]}, fencer={"fence_timeout": 0.5}
    )
    DEVICES["bmc-b"] = FakePowerDriver(device="bmc-b", lag=10**6)

    outcome = await Fencer(inv).fence("node-b")

    assert not outcome.success
    assert outcome.commands_sent == 1
    last = read(tmp_path / "journal.jsonl").records[-1]
    assert last["success"] is False


async def test_bad_node_and_action(tmp_path: Path) -> None:
    """An unknown node or a non-fence action is refused."""
    fencer = Fencer(inventory(tmp_path, {"node-b": [["bmc-b"]]}))

    with pytest.raises(ConfigError, match="no such node"):
        await fencer.fence("node-x")
    with pytest.raises(ConfigError, match="not status"):
        await fencer.fence("node-b", "status")


async def test_journal_unwritable_raises(tmp_path: Path) -> None:
    """No fence runs when its request cannot be journalled."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]]})
    (tmp_path / "journal.jsonl").mkdir()

    with pytest.raises(FencekitError, match="cannot write the journal"):
        await Fencer(inv).fence("node-b")
    assert DEVICES["bmc-b"].commands == []


async def test_outcome_not_journalled_says_what_happened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fenced, then the journal fails: the error says the fence worked."""
    from fencekit.journal import Journal

    real = Journal.record

    async def failing(self: Journal, event: str, **fields: Any) -> Any:
        if event == "outcome":
            raise FencekitError("cannot write the journal: disk full")
        return await real(self, event, **fields)

    monkeypatch.setattr(Journal, "record", failing)

    with pytest.raises(FencekitError) as caught:
        await Fencer(inventory(tmp_path, {"node-b": [["bmc-b"]]})).fence(
            "node-b"
        )

    assert "the off was verified (power off)" in str(caught.value)
    assert "could not be journalled: cannot write" in str(caught.value)
    assert DEVICES["bmc-b"].state is PowerState.OFF


def test_lazy_method_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A "module:function" entry makes a driver known and buildable."""
    monkeypatch.delitem(fencing._BUILDERS, "fake")
    monkeypatch.setitem(
        fencing.LAZY_METHODS, "lazyfake", f"{__name__}:build_fake"
    )
    data = {
        "cluster": "unit",
        "devices": {"dev": {"driver": "lazyfake", "host": "dev"}},
        "nodes": [{"name": "n", "id": 1, "levels": ["dev"]}],
    }

    inv = parse(data)
    method = fencing.build_method(
        MethodContext(inv.devices["dev"], inv.nodes["n"], {})
    )

    assert "lazyfake" in fencing.known_drivers()
    assert isinstance(method, FakeMethod)


async def test_check_reports_each_device(tmp_path: Path) -> None:
    """check() reports each device with its state or its reason."""
    inv = inventory(tmp_path, {"node-a": [["bmc-a"]], "node-b": [["bmc-b"]]})
    DEVICES["bmc-b"] = FakePowerDriver(
        device="bmc-b", read_errors=[AuthenticationError("refused")]
    )
    seen: list[str] = []

    results = await Fencer(inv).check(
        on_result=lambda r: seen.append(r.device)
    )

    assert [(r.device, r.ok) for r in results] == [
        ("bmc-a", True),
        ("bmc-b", False),
    ]
    assert results[0].detail == "power on"
    assert results[1].reason == "refused"
    assert sorted(seen) == ["bmc-a", "bmc-b"]


def test_blocking_wrapper(tmp_path: Path) -> None:
    """BlockingFencer fences without an event loop of the caller's."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"]], "node-c": [["bmc-c"]]})

    fencer = BlockingFencer(inv)
    outcome = fencer.fence("node-b")
    both = fencer.fence_many(["node-b", "node-c"])

    assert outcome.success
    assert [o.node for o in both] == ["node-b", "node-c"]
    assert all(o.success for o in both)
    assert all(r.ok for r in fencer.check())


async def test_builder_failure_is_a_failed_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device whose method cannot be built fails its level, journalled."""
    inv = inventory(tmp_path, {"node-b": [["bmc-b"], ["pdu-b"]]})

    def broken(context: MethodContext) -> fencing.FenceMethod:
        if context.device.name == "bmc-b":
            raise ConfigError("bad option", where="cipher")
        return FakeMethod(context)

    monkeypatch.setitem(fencing._BUILDERS, "fake", broken)

    outcome = await Fencer(inv).fence("node-b")

    assert outcome.success
    assert outcome.device == "pdu-b"
    records = read(tmp_path / "journal.jsonl").records
    assert records[1]["event"] == "attempt"
    assert records[1]["reason"] == "cipher: bad option"


async def test_parallel_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No more than fencer.max_parallel nodes are fenced at once."""
    nodes = {f"node-{i}": [[f"bmc-{i}"]] for i in range(6)}
    inv = inventory(tmp_path, nodes, fencer={"max_parallel": 2})
    active: list[int] = [0]
    peak: list[int] = [0]

    class Slow(FakeMethod):
        async def run(self, action: Action, timeout: float) -> Any:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            await asyncio.sleep(0.02)
            try:
                return await super().run(action, timeout)
            finally:
                active[0] -= 1

    monkeypatch.setitem(fencing._BUILDERS, "fake", Slow)

    outcomes = await Fencer(inv).fence_many(list(nodes))

    assert all(o.success for o in outcomes)
    assert peak[0] == 2
