"""multipath output parsers and the probe's judgement, on fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from fencekit.probes import build
from fencekit.probes.multipath import (
    MapHealth,
    MultipathParseError,
    parse_ll,
    parse_maps_json,
    parse_paths,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multipath"


def read(name: str) -> str:
    """The text of a fixture file."""
    return (FIXTURES / name).read_text()


def counts(health: dict[str, MapHealth]) -> dict[str, tuple[int, ...]]:
    """Per map: active, failed, total, degraded, queueing with no paths."""
    return {
        name: (
            h.active,
            h.failed,
            h.total,
            int(h.degraded),
            int(h.queueing_no_paths),
        )
        for name, h in health.items()
    }


EXPECTED = {
    "mpatha": (4, 0, 4, 0, 0),
    "mpathb": (0, 2, 2, 1, 1),
    "mpathc": (1, 0, 2, 1, 0),
}


def test_maps_json() -> None:
    """show maps json: counts, all-failed queueing map, returning path."""
    assert counts(parse_maps_json(read("maps.json"))) == EXPECTED


def test_paths_format() -> None:
    """show paths format: the same counts; it cannot show queueing."""
    health = counts(parse_paths(read("paths.txt")))

    assert health == {**EXPECTED, "mpathb": (0, 2, 2, 1, 0)}


def test_paths_with_unexpected_columns() -> None:
    """Extra and reordered columns (one with a space) are ignored."""
    health = counts(parse_paths(read("paths_extra_columns.txt")))

    assert health["mpatha"] == (4, 0, 4, 0, 0)
    assert health["mpathb"][:3] == (0, 2, 2)
    assert health["mpathc"] == (1, 0, 2, 1, 0)
    assert "[orphan]" not in health


def test_multipath_ll() -> None:
    """multipath -ll: aliases, a bare WWID name, features queueing."""
    health = counts(parse_ll(read("multipath_ll.txt")))

    assert health == {
        "36001405c1b2c3d4e5f60718293a4b5c6": EXPECTED["mpathc"],
        "mpatha": EXPECTED["mpatha"],
        "mpathb": EXPECTED["mpathb"],
    }


def test_ll_two_word_checker_state() -> None:
    """'i/o pending' is one checker state: not active, kernel-failed."""
    text = (
        "mpathz (3600a) dm-4 V,P\n"
        "size=1G features='0' hwhandler='0' wp=rw\n"
        "`-+- policy='round-robin 0' prio=1 status=active\n"
        "  `- 1:0:0:9 sdz 65:144 failed i/o pending running\n"
    )

    path_health = parse_ll(text)["mpathz"]

    assert (path_health.active, path_health.failed) == (0, 1)


def test_paths_header_without_needed_column() -> None:
    """A header lacking chk_st is an error, not a silent zero."""
    with pytest.raises(MultipathParseError, match="chk_st"):
        parse_paths("multipath dev dm_st\nmpatha sda active\n")


def test_json_errors() -> None:
    """Broken JSON and JSON without maps are parse errors."""
    with pytest.raises(MultipathParseError):
        parse_maps_json("{")
    with pytest.raises(MultipathParseError):
        parse_maps_json('{"major_version": 0}')


def test_empty_outputs() -> None:
    """No maps at all parse to nothing."""
    assert parse_paths("") == {}
    assert parse_ll("") == {}
    assert parse_maps_json('{"maps": []}') == {}


async def test_probe_reports_each_map() -> None:
    """The probe fails on the queueing map and lists per-map details."""
    probe = build(
        "multipath",
        {"source": "json", "input_file": str(FIXTURES / "maps.json")},
    )

    outcome = await probe.run()

    assert not outcome.healthy
    assert outcome.reason == "mpathb queueing with no active path"
    assert outcome.items["mpathc"]["degraded"] is True
    assert outcome.items["mpatha"]["active"] == 4


async def test_probe_selected_maps_and_degraded() -> None:
    """Only the named maps count; fail_on_degraded fails mpathc."""
    path = str(FIXTURES / "paths.txt")
    lenient = build(
        "multipath",
        {"source": "paths", "input_file": path, "maps": ["mpathc"]},
    )
    strict = build(
        "multipath",
        {
            "source": "paths",
            "input_file": path,
            "maps": ["mpathc", "mpathq"],
            "fail_on_degraded": True,
        },
    )

    assert (await lenient.run()).healthy
    outcome = await strict.run()
    assert outcome.reason == "map mpathq not found; mpathc degraded 1/2"


async def test_probe_missing_command_or_file(tmp_path: Path) -> None:
    """An unreadable input is an unhealthy outcome, not an exception."""
    probe = build("multipath", {"input_file": str(tmp_path / "none")})

    outcome = await probe.run()

    assert not outcome.healthy
    assert "No such file" in outcome.reason


async def test_probe_without_multipathd_never_raises(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing multipath command is an unhealthy outcome with a reason."""
    monkeypatch.setenv("PATH", str(tmp_path))
    probe = build("multipath", {"source": "ll", "timeout": 20})

    outcome = await probe.run()

    assert not outcome.healthy
    assert outcome.reason.startswith("multipath -ll: ")
    assert "No such file" in outcome.reason
