"""Hostile inventory and agent TOML: half-written files and odd values.

Three sources of input, for the inventory and the agent configuration
alike: the shipped examples cut off at any byte (a half-written file),
the examples with bytes changed, and tables built from the keys the
examples use with values of any TOML type. Each ends in the loaded
configuration or a :class:`~fencekit.errors.ConfigError` (or
:class:`~fencekit.errors.SecretError`) whose message names the file: no
other exception, nothing written.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fencekit import config, monitor
from fencekit.errors import ConfigError, SecretError
from tests.fuzz.budget import FUZZ

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
INVENTORY = (CONTRIB / "inventory.example.toml").read_bytes()
AGENT = (CONTRIB / "agent.example.toml").read_bytes()
FUZZ_FILES = settings(FUZZ, suppress_health_check=[HealthCheck.too_slow])


def _keys(value: Any, into: set[str]) -> set[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            into.add(key)
            _keys(item, into)
    elif isinstance(value, list):
        for item in value:
            _keys(item, into)
    return into


# Keys naming a command are left out: a fuzzed value must never run.
VOCABULARY = sorted(
    k
    for k in _keys(tomllib.loads(INVENTORY.decode()), set())
    | _keys(tomllib.loads(AGENT.decode()), set())
    | {"probe", "module", "target", "password_env", "password_file"}
    if not k.endswith("command") and k not in {"argv", "run"}
)

SCALARS = st.one_of(
    st.text(max_size=30),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(
        min_value=datetime.datetime(1, 1, 1),
        max_value=datetime.datetime(9999, 12, 31),
    ),
    st.dates(),
    st.times(),
    st.sampled_from(
        ["ipmi", "redfish", "snmp-pdu", "http", "tcp", "node-a", "127.0.0.1"]
    ),
)
KEY = st.one_of(st.sampled_from(VOCABULARY), st.text(max_size=10))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(KEY, inner, max_size=6),
    ),
    max_leaves=30,
)
TABLES = st.dictionaries(KEY, VALUES, max_size=8)


def _load_inventory(path: Path) -> None:
    try:
        config.load(path, known_drivers={"ipmi", "redfish", "snmp-pdu"})
    except ConfigError as exc:
        assert str(path) in str(exc), exc


def _load_agent(path: Path) -> None:
    try:
        monitor.load_config(path)
    except (ConfigError, SecretError) as exc:
        assert isinstance(exc, SecretError) or str(path) in str(exc), exc


def _unchanged(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def _scratch(tmp_path_factory: Any, name: str) -> Path:
    """One folder per test for all its examples (mktemp per example is
    slow): each example rewrites the file and checks nothing was added.
    """
    folder = _FOLDERS.get(name)
    if folder is None:
        folder = _FOLDERS[name] = tmp_path_factory.mktemp(name)
    return Path(folder)


_FOLDERS: dict[str, Path] = {}


@FUZZ_FILES
@given(cut=st.integers(min_value=0, max_value=len(INVENTORY)))
def test_half_written_inventory(tmp_path_factory: Any, cut: int) -> None:
    """An inventory cut off at any byte: loaded or one ConfigError."""
    folder = _scratch(tmp_path_factory, "inv")
    path = folder / "inventory.toml"
    path.write_bytes(INVENTORY[:cut])
    _load_inventory(path)
    assert _unchanged(folder) == ["inventory.toml"]


@FUZZ_FILES
@given(cut=st.integers(min_value=0, max_value=len(AGENT)))
def test_half_written_agent_config(tmp_path_factory: Any, cut: int) -> None:
    """An agent configuration cut off at any byte: loaded or an error."""
    folder = _scratch(tmp_path_factory, "agent")
    path = folder / "agent.toml"
    path.write_bytes(AGENT[:cut])
    _load_agent(path)
    assert _unchanged(folder) == ["agent.toml"]


@FUZZ_FILES
@given(
    which=st.sampled_from(["inventory", "agent"]),
    edits=st.lists(
        st.tuples(st.integers(min_value=0), st.binary(max_size=4)),
        min_size=1,
        max_size=6,
    ),
)
def test_corrupted_files(
    tmp_path_factory: Any, which: str, edits: list[tuple[int, bytes]]
) -> None:
    """Bytes of the examples replaced: loaded or a fencekit error."""
    data = bytearray(INVENTORY if which == "inventory" else AGENT)
    for offset, new in edits:
        at = offset % (len(data) + 1)
        data[at : at + len(new)] = new
    folder = _scratch(tmp_path_factory, f"corrupt-{which}")
    path = folder / f"{which}.toml"
    path.write_bytes(bytes(data))
    if which == "inventory":
        _load_inventory(path)
    else:
        _load_agent(path)


@FUZZ
@given(data=TABLES)
def test_inventory_tables_of_any_shape(data: dict[str, Any]) -> None:
    """Inventory tables of any shape and type: an Inventory or ConfigError."""
    with contextlib.suppress(ConfigError):
        config.parse(
            data,
            source="/nonexistent/inventory.toml",
            known_drivers={"ipmi", "redfish", "snmp-pdu"},
        )


@FUZZ
@given(data=TABLES)
def test_agent_tables_of_any_shape(data: dict[str, Any]) -> None:
    """Agent tables of any shape and type: a config or a fencekit error."""
    with contextlib.suppress(ConfigError, SecretError):
        monitor.parse_config(data, Path("/nonexistent/agent.toml"))


@FUZZ
@given(
    inventory=st.fixed_dictionaries(
        {},
        optional={
            "cluster": VALUES,
            "fencer": st.dictionaries(KEY, VALUES, max_size=6),
            "devices": st.dictionaries(
                st.text(max_size=6),
                st.dictionaries(KEY, VALUES, max_size=8),
                max_size=3,
            ),
            "nodes": st.lists(
                st.dictionaries(KEY, VALUES, max_size=8), max_size=3
            ),
        },
    )
)
def test_inventory_with_the_right_sections(inventory: dict[str, Any]) -> None:
    """Right sections, hostile contents: an Inventory or a ConfigError."""
    with contextlib.suppress(ConfigError):
        config.parse(
            inventory,
            source="/nonexistent/inventory.toml",
            known_drivers={"ipmi", "redfish", "snmp-pdu"},
        )


@FUZZ
@given(
    checks=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.dictionaries(KEY, VALUES, max_size=8),
        max_size=3,
    ),
    actions=st.dictionaries(
        st.text(min_size=1, max_size=8),
        st.dictionaries(KEY, VALUES, max_size=5),
        max_size=2,
    ),
)
def test_agent_checks_and_actions(
    checks: dict[str, Any], actions: dict[str, Any]
) -> None:
    """Hostile checks and actions: an AgentConfig or a fencekit error."""
    with contextlib.suppress(ConfigError, SecretError):
        monitor.parse_config(
            {"checks": checks, "actions": actions},
            Path("/nonexistent/agent.toml"),
        )
