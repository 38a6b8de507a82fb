"""Reservation keys: derivation, text forms, collisions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fencekit.errors import ConfigError
from fencekit.storage.keys import (
    check_unique,
    format_key,
    key_for_node,
    key_from_name,
    parse_key,
)


def test_derived_keys_never_shift() -> None:
    """The derivation is fixed: these values must never change."""
    assert key_for_node("shop", 2) == 0x8D9001D300000002
    assert key_from_name("shop", "node-b") == 0x8D9001D393EF37C6


def test_key_depends_on_node_not_on_other_nodes() -> None:
    """A node's key is the same whatever else is in the cluster."""
    before = {n: key_for_node("shop", n) for n in (1, 2)}
    after = {n: key_for_node("shop", n) for n in (1, 2, 3, 7)}

    assert all(after[n] == key for n, key in before.items())
    assert key_for_node("other", 2) != key_for_node("shop", 2)


@pytest.mark.parametrize("node_id", [0, -1, 2**32])
def test_node_id_out_of_range(node_id: int) -> None:
    """Node ids are 1 to 2**32 - 1."""
    with pytest.raises(ConfigError, match="node id"):
        key_for_node("shop", node_id)


def test_empty_cluster_name_is_refused() -> None:
    """Without a cluster name two clusters would share keys."""
    with pytest.raises(ConfigError, match="cluster"):
        key_for_node("", 1)


@given(st.integers(1, 2**64 - 1))
def test_format_and_parse_round_trip(key: int) -> None:
    """``0x`` text and decimal text both parse back to the key."""
    assert parse_key(format_key(key)) == key
    assert parse_key(str(key)) == key


@pytest.mark.parametrize("text", ["0", "0x0", "-5", "0x1" + "0" * 16, "xyz"])
def test_parse_key_rejects(text: str) -> None:
    """Zero, negative, wider than 64 bits, or not a number."""
    with pytest.raises(ConfigError, match="--key"):
        parse_key(text, where="--key")


def test_collision_names_both_nodes() -> None:
    """Two nodes with one key are refused, both named."""
    keys = {"node-a": 0xA, "node-b": 0xB, "node-c": 0xA}

    with pytest.raises(ConfigError, match="'node-a' and 'node-c'"):
        check_unique(keys, where="nodes")


def test_distinct_keys_pass() -> None:
    """Distinct keys are accepted."""
    check_unique({"node-a": 1, "node-b": 2})
