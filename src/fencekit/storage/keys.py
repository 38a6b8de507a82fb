"""Reservation keys: 64-bit values derived from a stable node identity.

A node's key must not change when nodes join or leave the cluster, or a
fence would preempt the wrong registration. fencekit derives it from
what does not move:

- the cluster name and the node id: the upper 32 bits are the first
  four bytes of SHA-256 over the cluster name, the lower 32 bits the
  node id (Corosync node ids are 32-bit);
- or, for a node without an id, the cluster name and the node's name:
  the upper 32 bits as above, the lower 32 bits from SHA-256 over the
  node name. Two names can collide there, which :func:`check_unique`
  detects when the inventory loads.

Keys are integers everywhere; text is only for people (``0x...``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from fencekit.errors import ConfigError

__all__ = [
    "check_unique",
    "format_key",
    "key_for_node",
    "key_from_name",
    "parse_key",
]

_MAX = 0xFFFF_FFFF_FFFF_FFFF


def _prefix(cluster: str) -> int:
    digest = hashlib.sha256(cluster.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")


def key_for_node(cluster: str, node_id: int) -> int:
    """The key of node ``node_id`` in ``cluster``.

    Raises:
        ConfigError: the id is not 1 to 2**32 - 1, or the cluster name
            is empty.
    """
    if not cluster:
        raise ConfigError("a cluster name is needed to derive keys")
    if not 0 < node_id <= 0xFFFF_FFFF:
        raise ConfigError(f"node id out of 32-bit range: {node_id}")
    return _prefix(cluster) << 32 | node_id


def key_from_name(cluster: str, node: str) -> int:
    """The key of the node named ``node`` in ``cluster`` (no node id).

    Raises:
        ConfigError: the cluster or node name is empty.
    """
    if not cluster or not node:
        raise ConfigError("a cluster and a node name are needed")
    digest = hashlib.sha256(node.encode("utf-8")).digest()
    low = int.from_bytes(digest[:4], "big") or 1
    return _prefix(cluster) << 32 | low


def parse_key(text: str, *, where: str = "key") -> int:
    """A key from ``0x``-prefixed hexadecimal or decimal text.

    Zero is refused: SPC-4 uses key 0 for "not registered".

    Raises:
        ConfigError: not a number, zero, or wider than 64 bits.
    """
    word = text.strip().lower()
    try:
        value = int(word, 16) if word.startswith("0x") else int(word, 10)
    except ValueError:
        raise ConfigError(
            f"not a key: {text!r} (0x-hexadecimal or decimal)", where=where
        ) from None
    if not 0 < value <= _MAX:
        raise ConfigError(f"key must be 1 to 2**64-1: {text!r}", where=where)
    return value


def format_key(key: int) -> str:
    """``0x`` and 16 hexadecimal digits, the way people compare keys."""
    return f"0x{key:016x}"


def check_unique(keys: Mapping[str, int], *, where: str = "keys") -> None:
    """Refuse two nodes with one key.

    Args:
        keys: each node's key, by node name.
        where: the inventory location, for the message.

    Raises:
        ConfigError: names both nodes of the first collision found.
    """
    owners: dict[int, str] = {}
    for node, key in keys.items():
        other = owners.setdefault(key, node)
        if other != node:
            raise ConfigError(
                f"nodes {other!r} and {node!r} have the same reservation"
                f" key {format_key(key)}",
                where=where,
            )
