"""multipath probe: per map, how many paths are active and failed.

Three of multipathd's documented outputs are read:

- ``multipathd show maps json`` (the JSON of libmultipath's print.c:
  maps, their path groups and paths with ``dm_st`` and ``chk_st``);
- ``multipathd show paths format "%m %d %t %T %o"``: a header row of
  column names, then one row per path in fixed-width columns;
- ``multipath -ll``: one block per map, a tree of path groups and paths.

A path is *active* when the kernel uses it (``dm_st`` active) and its
checker says ready or ghost; *failed* when the kernel failed it or the
checker says faulty, shaky, down or timed out. A path the checker sees
ready again while the kernel still has it failed is *returning*: not yet
active, no longer counted as failed. A map is *degraded* when any path is
not active, and *queueing with no paths* when none is active and it
queues I/O (``queue_if_no_path``): writers hang instead of failing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fencekit.probes._options import Options
from fencekit.probes.base import Detail, ProbeOutcome, outcome

__all__ = [
    "MapHealth",
    "MultipathParseError",
    "MultipathProbe",
    "PathInfo",
    "from_options",
    "parse_ll",
    "parse_maps_json",
    "parse_paths",
    "summarise",
]

_ACTIVE_CHECKER = frozenset({"ready", "ghost"})
_FAILED_CHECKER = frozenset(
    {"faulty", "shaky", "down", "i/o timeout", "timeout"}
)
PATHS_FORMAT = "%m %d %t %T %o"
_COMMANDS = {
    "json": ("multipathd", "show", "maps", "json"),
    "paths": ("multipathd", "show", "paths", "format", PATHS_FORMAT),
    "ll": ("multipath", "-ll"),
}


class MultipathParseError(ValueError):
    """multipath output that cannot be read."""


@dataclasses.dataclass(frozen=True)
class PathInfo:
    """One path of a map as multipath reports it."""

    map: str
    dev: str
    dm_state: str
    checker_state: str

    @property
    def active(self) -> bool:
        """The kernel uses the path and its checker finds it usable."""
        return (
            self.dm_state == "active" and self.checker_state in _ACTIVE_CHECKER
        )

    @property
    def failed(self) -> bool:
        """The kernel failed the path, and its checker agrees or is silent."""
        if self.checker_state in _FAILED_CHECKER:
            return True
        return (
            self.dm_state == "failed"
            and self.checker_state not in _ACTIVE_CHECKER
        )


@dataclasses.dataclass(frozen=True)
class MapHealth:
    """Path counts of one multipath map."""

    name: str
    active: int
    failed: int
    total: int
    queueing: bool

    @property
    def degraded(self) -> bool:
        """Some path of the map is not active."""
        return self.active < self.total

    @property
    def queueing_no_paths(self) -> bool:
        """No path is active and the map queues I/O: writers hang."""
        return self.active == 0 and self.queueing

    def details(self) -> dict[str, Detail]:
        """The counts and flags as outcome details."""
        return {
            "active": self.active,
            "failed": self.failed,
            "total": self.total,
            "degraded": self.degraded,
            "queueing_no_paths": self.queueing_no_paths,
        }


def summarise(
    paths: Iterable[PathInfo], queueing: Mapping[str, bool] | None = None
) -> dict[str, MapHealth]:
    """Count each map's paths; ``queueing`` says which maps queue I/O."""
    groups: dict[str, list[PathInfo]] = {}
    for path in paths:
        groups.setdefault(path.map, []).append(path)
    for name in queueing or {}:
        groups.setdefault(name, [])
    return {
        name: MapHealth(
            name=name,
            active=sum(p.active for p in members),
            failed=sum(p.failed for p in members),
            total=len(members),
            queueing=(queueing or {}).get(name, False),
        )
        for name, members in sorted(groups.items())
    }


def _queues(features: str, queueing: str = "") -> bool:
    # "queueing" in show maps is "off", "on", "N chk" (no_path_retry
    # counting down) or "-"; features carry queue_if_no_path while the
    # kernel queues.
    if queueing.strip() in ("on",) or queueing.strip().endswith("chk"):
        return True
    return "queue_if_no_path" in features


def parse_maps_json(text: str) -> dict[str, MapHealth]:
    """Read ``multipathd show maps json``.

    Raises:
        MultipathParseError: not JSON, or maps without names.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MultipathParseError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("maps"), list):
        raise MultipathParseError("no 'maps' list in the JSON")
    paths: list[PathInfo] = []
    queueing: dict[str, bool] = {}
    for entry in data["maps"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise MultipathParseError("a map has no name")
        queueing[name] = _queues(
            str(entry.get("features", "")), str(entry.get("queueing", ""))
        )
        for group in _items(entry, "path_groups", name):
            for path in _items(group, "paths", name):
                paths.append(
                    PathInfo(
                        map=name,
                        dev=str(path.get("dev", "?")),
                        dm_state=str(path.get("dm_st", "undef")),
                        checker_state=str(path.get("chk_st", "undef")),
                    )
                )
    return summarise(paths, queueing)


def _items(parent: dict[str, Any], key: str, name: str) -> list[Any]:
    """The tables listed under ``key``; none when it is missing.

    Raises:
        MultipathParseError: ``key`` is not a list of tables.
    """
    items = parent.get(key) or []
    if not isinstance(items, list) or not all(
        isinstance(item, dict) for item in items
    ):
        raise MultipathParseError(f"map {name}: {key!r} is not a list")
    return items


_MAP_COLUMNS = ("multipath", "name", "map")


def parse_paths(text: str) -> dict[str, MapHealth]:
    """Read ``multipathd show paths format ...`` with a header row.

    Columns are found by their header names (``multipath``, ``dev``,
    ``dm_st``, ``chk_st``); other columns, in any order, are ignored.
    Values are cut at the header's column positions, since multipathd
    pads every column to its widest value.

    TODO: path rows do not say whether a map queues I/O, so a map read
    this way never shows as queueing with no paths; the ``json`` source
    does.

    Raises:
        MultipathParseError: the header lacks a needed column.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return {}
    header = lines[0]
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    index = {name: i for i, name in enumerate(names)}
    map_column = next((c for c in _MAP_COLUMNS if c in index), None)
    for needed in ("dev", "dm_st", "chk_st"):
        if needed not in index:
            raise MultipathParseError(f"no {needed!r} column in the header")
    if map_column is None:
        raise MultipathParseError("no map ('multipath') column in the header")

    paths = []
    for line in lines[1:]:
        cells = _cut(line, starts)
        paths.append(
            PathInfo(
                map=cells[index[map_column]],
                dev=cells[index["dev"]],
                dm_state=cells[index["dm_st"]],
                checker_state=cells[index["chk_st"]],
            )
        )
    return summarise(p for p in paths if p.map not in ("", "[orphan]"))


def _cut(line: str, starts: list[int]) -> list[str]:
    ends = [*starts[1:], len(line)]
    return [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]


_LL_MAP = re.compile(
    r"^(?:(?P<alias>\S+) \((?P<wwid>[^)]+)\)|(?P<bare>\S+)) dm-\d+"
)
_LL_FEATURES = re.compile(r"features='(?P<features>[^']*)'")
_LL_PATH = re.compile(
    r"^[\s|`-]*[|`]- (?P<hcil>\S+) (?P<dev>\S+)\s+(?P<devt>\d+:\d+)\s+"
    r"(?P<dm>\S+)\s+(?P<rest>.+?)\s*$"
)


def parse_ll(text: str) -> dict[str, MapHealth]:
    """Read ``multipath -ll`` output.

    Raises:
        MultipathParseError: a path line appears before any map line.
    """
    paths: list[PathInfo] = []
    queueing: dict[str, bool] = {}
    current: str | None = None
    for line in text.splitlines():
        if match := _LL_MAP.match(line):
            current = match["alias"] or match["bare"]
            queueing[current] = False
        elif match := _LL_FEATURES.search(line):
            if current is not None and line.startswith("size="):
                queueing[current] = _queues(match["features"])
        elif (match := _LL_PATH.match(line)) and "policy=" not in line:
            if current is None:
                raise MultipathParseError("a path line before any map")
            paths.append(_ll_path(current, match))
    return summarise(paths, queueing)


def _ll_path(name: str, match: re.Match[str]) -> PathInfo:
    # The checker state can be two words ("i/o pending"); the device
    # state is always the last word, and newer versions may append the
    # marginal state after it.
    words = match["rest"].split()
    if words and words[-1] == "marginal":
        words = words[:-1]
    checker = " ".join(words[:-1]) if len(words) > 1 else "undef"
    return PathInfo(
        map=name, dev=match["dev"], dm_state=match["dm"], checker_state=checker
    )


_PARSERS = {"json": parse_maps_json, "paths": parse_paths, "ll": parse_ll}


class MultipathProbe:
    """Read multipath state and judge each map.

    Args:
        source: ``json``, ``paths`` or ``ll`` (which output to read).
        input_file: read the output from this file instead of running
            the command (for tests and for saved output).
        maps: maps that must exist; every map found when empty.
        min_active: fewest active paths a map may have.
        fail_on_degraded: also fail when any path of a map is not active.
        timeout: deadline in seconds for the command.
    """

    kind = "multipath"

    def __init__(
        self,
        *,
        source: str = "json",
        input_file: str | None = None,
        maps: tuple[str, ...] = (),
        min_active: int = 1,
        fail_on_degraded: bool = False,
        timeout: float = 10.0,
    ) -> None:
        self.source = source
        self.input_file = input_file
        self.maps = maps
        self.min_active = min_active
        self.fail_on_degraded = fail_on_degraded
        self.timeout = timeout
        self.target = input_file or " ".join(_COMMANDS[source])

    async def run(self) -> ProbeOutcome:
        """Read and judge the maps; never raises."""
        started = time.monotonic()
        try:
            text = await self._read()
            health = _PARSERS[self.source](text)
        except (OSError, MultipathParseError, _CommandError) as exc:
            reason = f"{self.target}: {exc}"
            return outcome(self, started, False, reason)
        except TimeoutError:
            reason = f"{self.target}: no answer within {self.timeout:g} s"
            return outcome(self, started, False, reason)

        reason = self._judge(health)
        items = {name: h.details() for name, h in health.items()}
        details: dict[str, Detail] = {"maps": len(health)}
        return outcome(self, started, not reason, reason, details, items)

    def _judge(self, health: Mapping[str, MapHealth]) -> str:
        problems = [f"map {m} not found" for m in self.maps if m not in health]
        for name, h in health.items():
            if self.maps and name not in self.maps:
                continue
            if h.queueing_no_paths:
                problems.append(f"{name} queueing with no active path")
            elif h.active < self.min_active:
                problems.append(f"{name} has {h.active}/{h.total} active")
            elif self.fail_on_degraded and h.degraded:
                problems.append(f"{name} degraded {h.active}/{h.total}")
        return "; ".join(problems)

    async def _read(self) -> str:
        if self.input_file is not None:
            return Path(self.input_file).read_text(encoding="utf-8")
        process = await asyncio.create_subprocess_exec(
            *_COMMANDS[self.source],
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(self.timeout):
                out, err = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if process.returncode != 0:
            tail = err.decode("utf-8", "replace").strip()[-200:]
            raise _CommandError(f"exit code {process.returncode}: {tail}")
        return out.decode("utf-8", "replace")


class _CommandError(Exception):
    """The multipath command failed (internal)."""


def from_options(table: Mapping[str, Any], where: str = "") -> MultipathProbe:
    """Build a :class:`MultipathProbe` from an option table.

    Raises:
        ConfigError: an option is unknown or invalid.
    """
    opts = Options(table, where)
    probe = MultipathProbe(
        source=opts.choice("source", ("json", "paths", "ll"), "json"),
        input_file=opts.text("input_file", None),
        maps=tuple(opts.texts("maps", [])),
        min_active=opts.integer("min_active", 1, minimum=0),
        fail_on_degraded=opts.flag("fail_on_degraded", False),
        timeout=opts.number("timeout", 10.0, minimum=0.001),
    )
    opts.finish()
    return probe
