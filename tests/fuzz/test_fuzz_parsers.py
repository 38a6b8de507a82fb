"""Hostile multipathd output and SNMP values.

multipathd's three formats (``show maps json``, ``show paths format``
with a header, ``multipath -ll``) are fuzzed both as any text and as the
documented fixtures with lines changed; each parser returns map health
or raises its documented :class:`MultipathParseError`. SNMP values of
every type an agent can send reach the power drivers and the SNMP check:
each ends in a power state, a verdict or a fencekit error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from fencekit._snmp import SnmpCredentials, to_python
from fencekit.errors import FencekitError
from fencekit.outcome import PowerState
from fencekit.power.snmp import SnmpPduDriver, SnmpPortDriver
from fencekit.probes import multipath
from fencekit.probes.multipath import MultipathParseError
from fencekit.probes.snmp import Expectation
from fencekit.secrets import Secret
from tests.fuzz.budget import FUZZ

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "multipath"
PARSERS = {
    "maps.json": multipath.parse_maps_json,
    "paths.txt": multipath.parse_paths,
    "paths_extra_columns.txt": multipath.parse_paths,
    "multipath_ll.txt": multipath.parse_ll,
}
TEXTS = {name: (FIXTURES / name).read_text() for name in PARSERS}


def _parse(name: str, text: str) -> None:
    try:
        health = PARSERS[name](text)
    except MultipathParseError:
        return
    for name_, mapped in health.items():
        assert isinstance(name_, str)
        mapped.details()  # every map's figures can be exported


@FUZZ
@given(name=st.sampled_from(list(PARSERS)), text=st.text(max_size=400))
def test_multipath_parsers_on_any_text(name: str, text: str) -> None:
    """Any text: map health or MultipathParseError, nothing else."""
    _parse(name, text)


@FUZZ
@given(
    name=st.sampled_from(list(PARSERS)),
    edits=st.lists(
        st.tuples(
            st.integers(min_value=0),
            st.one_of(
                st.text(max_size=30),
                st.sampled_from(
                    ["", "|- ", "`- ", "dm-", "[orphan]", "failed", "{", "]"]
                ),
            ),
        ),
        min_size=1,
        max_size=5,
    ),
)
def test_multipath_fixtures_with_lines_changed(
    name: str, edits: list[tuple[int, str]]
) -> None:
    """The documented outputs with lines replaced: parsed or refused."""
    lines = TEXTS[name].splitlines()
    for at, text in edits:
        lines[at % len(lines)] = text
    _parse(name, "\n".join(lines))


JSON_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    *("maps", "name", "path_groups", "paths", "dev"),
                    *("dm_st", "chk_st", "features", "queueing"),
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)


@FUZZ
@given(doc=JSON_VALUES)
def test_multipath_json_of_any_shape(doc: Any) -> None:
    """``show maps json`` of any shape: health or MultipathParseError."""
    _parse("maps.json", json.dumps({"maps": doc}))
    _parse("maps.json", json.dumps(doc))


def _snmp_values() -> st.SearchStrategy[Any]:
    from pysnmp.proto import rfc1902, rfc1905

    return st.one_of(
        st.integers(min_value=-(2**31), max_value=2**31 - 1).map(
            rfc1902.Integer32
        ),
        st.integers(min_value=0, max_value=2**32 - 1).map(rfc1902.Gauge32),
        st.integers(min_value=0, max_value=2**64 - 1).map(rfc1902.Counter64),
        st.binary(max_size=20).map(rfc1902.OctetString),
        st.binary(min_size=4, max_size=4).map(rfc1902.IpAddress),
        st.sampled_from(["1.3.6", "1.3.6.1.2.1.1.5.0"]).map(
            rfc1902.ObjectIdentifier
        ),
        st.just(rfc1905.NoSuchObject("")),
        st.just(rfc1905.NoSuchInstance("")),
        st.just(rfc1905.EndOfMibView("")),
        st.integers(min_value=0, max_value=2**32 - 1).map(rfc1902.TimeTicks),
        st.just(rfc1902.Null("")),
    )


@FUZZ
@given(data=st.data())
def test_snmp_values_to_python(data: Any) -> None:
    """Every SNMP type an agent can send: a value, None, or ProtocolError."""
    value = data.draw(_snmp_values())
    try:
        result = to_python(value)
    except FencekitError:
        return
    assert result is None or isinstance(result, int | str)


PLAIN = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=12),
    st.integers(min_value=10**300, max_value=10**400),
)


@FUZZ
@given(
    kind=st.sampled_from(["pdu", "port"]),
    values=st.lists(PLAIN, min_size=1, max_size=3),
    names=st.dictionaries(st.text(max_size=4), PLAIN, max_size=4),
    plug=st.sampled_from(["1", "node-a", "Gi1/0/1"]),
)
def test_snmp_drivers_read_any_values(
    kind: str, values: list[Any], names: dict[str, Any], plug: str
) -> None:
    """Any decoded values: a power state or a fencekit error."""
    credentials = SnmpCredentials(version="2c", community=Secret("c"))
    cls = SnmpPduDriver if kind == "pdu" else SnmpPortDriver
    driver = cls("127.0.0.1", credentials=credentials, plug=plug)

    async def get(oids: list[str], timeout: float) -> dict[str, Any]:
        return {oid: values[i % len(values)] for i, oid in enumerate(oids)}

    async def walk(column: str, timeout: float) -> dict[str, Any]:
        return dict(names)

    async def read() -> PowerState | None:
        with (
            mock.patch.object(driver._client, "get", get),
            mock.patch.object(driver._client, "walk", walk),
        ):
            try:
                return await driver.read_state(1.0)
            except FencekitError:
                return None
            finally:
                await driver.close()

    state = asyncio.run(read())
    assert state is None or isinstance(state, PowerState)


@FUZZ
@given(
    # What to_python can give: SNMP integers are 64 bits at most.
    value=st.one_of(
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.text(max_size=12),
        st.floats().map(str),
    ),
    equals=st.one_of(
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.text(max_size=5),
    ),
    bounds=st.tuples(
        st.floats(allow_nan=False, min_value=-1e18, max_value=1e18),
        st.floats(allow_nan=False, min_value=-1e18, max_value=1e18),
    ),
)
def test_snmp_check_judges_any_value(
    value: Any, equals: int | str, bounds: tuple[float, float]
) -> None:
    """The SNMP check judges any value: a verdict, never an exception."""
    checks = [
        Expectation("1.3.6.1.2.1.1.5.0", equals=equals),
        Expectation("1.3.6.1.2.1.1.5.0", minimum=min(bounds)),
        Expectation("1.3.6.1.2.1.1.5.0", maximum=max(bounds)),
        Expectation("1.3.6.1.2.1.1.5.0", matches="up|ok"),
    ]
    for check in checks:
        assert isinstance(check.judge(value), str)
