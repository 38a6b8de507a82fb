"""The ``scsi`` device in an inventory: options and keys checked at load."""

from __future__ import annotations

from typing import Any

import pytest

from fencekit.config import parse
from fencekit.errors import ConfigError
from fencekit.storage.keys import key_for_node, key_from_name
from fencekit.storage.method import node_key


def data(
    options: dict[str, Any] | None = None, **node_options: Any
) -> dict[str, Any]:
    """An inventory with one scsi device and three nodes."""
    nodes = []
    for number, name in enumerate(("node-a", "node-b", "node-c"), 1):
        node: dict[str, Any] = {
            "name": name, "id": number, "levels": [["disks"]],
        }  # fmt: skip
        if name in node_options:
            node["options"] = {"disks": node_options[name]}
        nodes.append(node)
    return {
        "cluster": "shop",
        "devices": {
            "disks": {
                "driver": "scsi",
                "host": "localhost",
                "options": options or {"devices": ["/dev/mapper/data"]},
            }
        },
        "nodes": nodes,
    }


def test_valid_inventory_loads() -> None:
    """Derived keys differ; the inventory loads."""
    inventory = parse(data())

    assert inventory.devices["disks"].driver == "scsi"


def test_explicit_key_collision_is_refused_at_load() -> None:
    """Two nodes given one key: the load fails naming both."""
    with pytest.raises(ConfigError, match="'node-a' and 'node-c'") as caught:
        parse(
            data(None, **{"node-a": {"key": "0x10"}, "node-c": {"key": "16"}}),
            source="/etc/fencekit/inventory.toml",
        )

    assert "inventory.toml" in str(caught.value)
    assert "devices.disks" in str(caught.value)


def test_explicit_key_equal_to_a_derived_key_is_refused() -> None:
    """An explicit key that equals another node's derived key."""
    derived = hex(key_for_node("shop", 2))

    with pytest.raises(ConfigError, match="same reservation key"):
        parse(data(None, **{"node-a": {"key": derived}}))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "devices must list"),
        ({"devices": []}, "devices must list"),
        ({"devices": ["/dev/sdb"], "colour": "red"}, "unknown option"),
        ({"devices": ["/dev/sdb"], "type": "zz"}, "reservation type"),
    ],
)
def test_bad_options_are_refused_at_load(
    options: dict[str, Any], message: str
) -> None:
    """Options are checked when the inventory loads, naming the key."""
    inventory = data()
    inventory["devices"]["disks"]["options"] = options

    with pytest.raises(ConfigError, match=message):
        parse(inventory)


def test_bad_explicit_key_is_refused_at_load() -> None:
    """A node's key option that is not a key names the node."""
    with pytest.raises(ConfigError, match=r"nodes\.node-b"):
        parse(data(None, **{"node-b": {"key": "zero"}}))


def test_node_id_zero_uses_the_name() -> None:
    """A node without an id (0) gets a key from its name."""
    assert node_key("shop", "node-z", 0, {}) == key_from_name("shop", "node-z")
    assert node_key("shop", "node-b", 2, {}) == key_for_node("shop", 2)
