"""The agent's scheduler, thresholds, events and configuration."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fencekit.errors import ConfigError
from fencekit.monitor import (
    CheckSpec,
    CheckStatus,
    Event,
    Monitor,
    State,
    load_config,
)
from fencekit.probes import ProbeOutcome

ROOT = Path(__file__).resolve().parents[2]


class ScriptedProbe:
    """A probe whose answers a test decides; counts overlapping runs."""

    kind = "fake"

    def __init__(
        self, healthy: Callable[[], bool] = lambda: True, delay: float = 0
    ) -> None:
        self.target = "fake"
        self.timeout = 1.0
        self.healthy = healthy
        self.delay = delay
        self.runs = 0
        self.running = 0
        self.most_at_once = 0

    async def run(self) -> ProbeOutcome:
        """Answer after ``delay`` seconds."""
        self.runs += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        ok = self.healthy()
        return ProbeOutcome("fake", "fake", ok, self.delay, "" if ok else "no")


def spec(name: str, probe: ScriptedProbe, **kwargs: object) -> CheckSpec:
    """A check around ``probe`` with fast defaults."""
    options: dict[str, object] = {
        "interval": 0.02,
        "timeout": 1.0,
        "down_after": 2,
        "up_after": 2,
        **kwargs,
    }
    return CheckSpec(name=name, kind="fake", probe=probe, **options)  # type: ignore[arg-type]


def outcome(healthy: bool) -> ProbeOutcome:
    """A bare outcome."""
    return ProbeOutcome("fake", "fake", healthy, 0.0)


def test_thresholds() -> None:
    """Down after N failures in a row, up after M successes in a row."""
    status = CheckStatus(spec("c", ScriptedProbe(), down_after=3, up_after=2))

    seen = [status.record(outcome(ok)) for ok in (False, False, True)]
    assert seen == [None, None, None]
    assert status.state is State.UNKNOWN

    assert status.record(outcome(True)) is State.UNKNOWN
    assert status.state is State.UP
    for _ in range(2):
        assert status.record(outcome(False)) is None
    assert status.record(outcome(False)) is State.UP
    assert status.state is State.DOWN
    assert (status.runs, status.failed_runs, status.changes) == (7, 5, 2)


async def test_events_reach_every_subscriber() -> None:
    """Each state change reaches all subscribers; one failing is kept apart."""
    answers = iter([False, False, True, True] + [True] * 1000)
    monitor = Monitor([spec("c", ScriptedProbe(lambda: next(answers)))])
    events: list[Event] = []
    done = asyncio.Event()

    async def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    async def record(event: Event) -> None:
        events.append(event)
        if event.state is State.UP:
            done.set()

    monitor.subscribe(broken)
    monitor.subscribe(record)
    monitor.start()
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        await monitor.close()

    assert [(e.previous, e.state) for e in events] == [
        (State.UNKNOWN, State.DOWN),
        (State.DOWN, State.UP),
    ]
    env = events[0].environment()
    assert env["FENCEKIT_EVENT_STATE"] == "down"
    assert env["FENCEKIT_EVENT_REASON"] == "no"


async def test_hung_check_delays_no_other() -> None:
    """A probe that never returns leaves the other check on schedule."""
    hung = ScriptedProbe(delay=3600)
    quick = ScriptedProbe()
    monitor = Monitor(
        [
            spec("hung", hung, timeout=0.2, interval=0.05),
            spec("quick", quick, interval=0.05),
        ]
    )

    monitor.start()
    started = time.monotonic()
    await asyncio.sleep(1.5)
    await monitor.close()
    elapsed = time.monotonic() - started

    assert quick.runs >= min(5, elapsed / 0.05 / 3)
    assert hung.most_at_once == 1
    status = monitor.status("hung")
    assert status.state is State.DOWN
    assert status.last is not None
    assert status.last.reason == "the previous run is still going"


async def test_slow_subscriber_delays_no_check() -> None:
    """A subscriber that takes long does not hold the check loop."""
    flips = iter([False, False] + [True] * 10000)
    probe = ScriptedProbe(lambda: next(flips))
    monitor = Monitor([spec("c", probe, interval=0.02)])
    release = asyncio.Event()

    async def slow(event: Event) -> None:
        await release.wait()

    monitor.subscribe(slow)
    monitor.start()
    await asyncio.sleep(1.0)
    runs = probe.runs
    release.set()
    await monitor.close()

    assert runs > 5
    assert monitor.status("c").state is State.UP


async def test_replace_keeps_unchanged_checks() -> None:
    """Reload: same settings keep state; changed restart; removed stop."""
    keep, change, drop = ScriptedProbe(), ScriptedProbe(), ScriptedProbe()
    monitor = Monitor(
        [spec("keep", keep), spec("change", change), spec("drop", drop)]
    )
    monitor.start()
    await asyncio.sleep(0.5)
    kept_runs = monitor.status("keep").runs

    await monitor.replace(
        [spec("keep", ScriptedProbe()), spec("change", change, up_after=5)]
    )
    await asyncio.sleep(0.3)
    await monitor.close()

    names = [s.spec.name for s in monitor.statuses()]
    assert names == ["keep", "change"]
    assert monitor.status("keep").runs > kept_runs
    assert monitor.status("keep").spec.probe is keep
    assert monitor.status("change").spec.up_after == 5
    drop_runs = drop.runs
    await asyncio.sleep(0.1)
    assert drop.runs == drop_runs


def write(tmp_path: Path, text: str) -> Path:
    """Write an agent configuration file."""
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[checks.w]\nurl='http://x/'\n", r"checks\.w\.kind: is required"),
        (
            "[checks.w]\nkind='http'\nurl='http://x/'\ninterval='5'\n",
            r"checks\.w\.interval: must be a number",
        ),
        (
            "[checks.w]\nkind='http'\nurl='http://x/'\ndown_after=0\n",
            r"checks\.w\.down_after: must be a whole number",
        ),
        (
            "[checks.w]\nkind='http'\nurl='http://x/'\nactions=['x']\n",
            r"checks\.w\.actions: no action named 'x'",
        ),
        ("[checks.w]\nkind='nope'\n", r"checks\.w\.kind: unknown probe kind"),
        (
            "[checks.w]\nkind='tcp'\nhost='h'\nport=1\ncolour=2\n",
            r"checks\.w\.colour: unknown option",
        ),
        ("[agent]\nlisten='nowhere'\n", r"agent\.listen: expected host:port"),
        ("[agent]\nport=1\n", r"agent\.port: unknown key"),
        (
            "[actions.f]\ntype='fence'\n",
            r"actions\.f: a fence action needs agent\.inventory",
        ),
        (
            "[actions.c]\ntype='command'\ncommand='x'\n",
            r"actions\.c\.command: must be a non-empty list",
        ),
        (
            "[checks.p]\nkind='postgres'\nhost='h'\npassword='s3cret'\n",
            r"checks\.p\.password: give password_file",
        ),
        ("[checks\n", r"not valid TOML"),
    ],
)
def test_config_errors_name_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    """Every configuration mistake is one line naming file and key."""
    path = write(tmp_path, text)

    with pytest.raises(ConfigError, match=f"^{path}: .*{message}") as info:
        load_config(path)

    assert "\n" not in str(info.value)
    assert "s3cret" not in str(info.value)


def test_defaults_apply_to_checks(tmp_path: Path) -> None:
    """[defaults] sets interval, timeout and thresholds of every check."""
    path = write(
        tmp_path,
        "[defaults]\ninterval=7\ntimeout=2\ndown_after=4\n"
        "[checks.t]\nkind='tcp'\nhost='127.0.0.1'\nport=1\ntimeout=3\n",
    )

    check = load_config(path).checks[0]

    assert (check.interval, check.timeout, check.down_after) == (7, 3, 4)
    assert check.probe.timeout == 3


def test_example_configuration_is_valid() -> None:
    """contrib/agent.example.toml loads."""
    config = load_config(ROOT / "contrib" / "agent.example.toml")

    assert config.checks
    assert "http_2xx" in config.modules
