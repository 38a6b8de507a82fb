"""``fencekit storage``: SCSI-3 persistent reservations on shared disks."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fencekit.cli import _common

_ACTIONS = ("keys", "reservation", "unfence", "fence", "status", "self-check")


def register(sub: Any) -> None:
    """Add ``storage`` to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "storage",
        help="read, register and preempt SCSI reservation keys",
        description=(
            "Persistent reservations on shared disks. 'fence' succeeds only"
            " once the victim's key was read back gone and a reservation"
            " is held, so the victim's writes are refused. DEVICE is a"
            " local disk or multipath map, or"
            " iscsi://HOST[:PORT]/TARGET-IQN/LUN."
        ),
    )
    parser.add_argument("action", choices=_ACTIONS)
    parser.add_argument("devices", nargs="+", metavar="DEVICE")
    parser.add_argument(
        "--key", help="this node's key (0x-hexadecimal or decimal)"
    )
    parser.add_argument(
        "--cluster", help="derive --key from the cluster name and --node-id"
    )
    parser.add_argument(
        "--node-id", type=_common.positive_int, help="this node's id"
    )
    parser.add_argument("--victim-key", help="for fence: the node to cut off")
    parser.add_argument(
        "--absent-ok",
        action="store_true",
        help=(
            "for fence: a victim key registered nowhere counts as fenced"
            " already (by default it is an error: a mistyped key or"
            " cluster looks the same)"
        ),
    )
    parser.add_argument(
        "--initiator", metavar="IQN", help="iSCSI initiator name to log in as"
    )
    parser.add_argument(
        "--type",
        default="wero",
        help=(
            "reservation type taken when none is held: wero (write"
            " exclusive, registrants only; default), earo, wear, eaar,"
            " we, ea"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=_common.positive_float,
        default=10.0,
        metavar="SECONDS",
        help="deadline for each SCSI command (10)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the action; exit 0 only when every device succeeded."""
    from fencekit.storage.operations import open_units
    from fencekit.storage.spc import ReservationType

    key = _own_key(args)
    victim = _victim(args)
    try:
        rtype = ReservationType.parse(args.type)
    except ValueError as exc:
        raise _config(str(exc), "--type") from None
    units = open_units(
        args.devices, initiator=args.initiator, timeout=args.timeout
    )
    outcome = asyncio.run(
        _run(args.action, units, key, victim, rtype, args.absent_ok)
    )
    return _report(args.action, outcome, args.json)


def _config(message: str, where: str) -> Exception:
    from fencekit.errors import ConfigError

    return ConfigError(message, where=where)


def _own_key(args: argparse.Namespace) -> int | None:
    from fencekit.storage.keys import key_for_node, parse_key

    if args.key and (args.cluster or args.node_id):
        raise _config("give --key or --cluster/--node-id, not both", "--key")
    if args.key:
        return parse_key(args.key, where="--key")
    if args.cluster and args.node_id:
        return key_for_node(args.cluster, args.node_id)
    if args.cluster or args.node_id:
        raise _config("--cluster and --node-id go together", "--node-id")
    if args.action in ("keys", "reservation"):
        return None
    raise _config(f"{args.action} needs this node's key", "--key")


def _victim(args: argparse.Namespace) -> int | None:
    from fencekit.storage.keys import parse_key

    if args.action == "fence":
        if not args.victim_key:
            raise _config("fence needs the victim's key", "--victim-key")
        return parse_key(args.victim_key, where="--victim-key")
    if args.victim_key:
        raise _config("only fence takes a victim key", "--victim-key")
    return None


async def _run(
    action: str,
    units: Any,
    key: int | None,
    victim: int | None,
    rtype: Any,
    absent_ok: bool = False,
) -> Any:
    from fencekit.storage import operations

    try:
        if action in ("keys", "reservation"):
            return await operations.keys(units)
        assert key is not None
        if action == "unfence":
            return await operations.unfence(units, key, rtype=rtype)
        if action == "fence":
            assert victim is not None
            return await operations.fence(
                units, key, victim, rtype=rtype, absent_ok=absent_ok
            )
        if action == "status":
            return await operations.status(units, key)
        return await operations.self_check(units, key)
    finally:
        await operations.close_units(units)


def _report(action: str, outcome: Any, as_json: bool) -> int:
    lines = [_describe(action, unit) for unit in outcome.units if unit.ok]
    if as_json or lines:
        _common.emit(outcome.to_dict(), "\n".join(lines), as_json)
    for unit in outcome.units:
        if not unit.ok:
            _common.error(f"{unit.unit}: {action}: {unit.reason}")
    return _common.EXIT_OK if outcome.success else _common.EXIT_FAILED


def _describe(action: str, unit: Any) -> str:
    from fencekit.storage.keys import format_key

    reservation = "no reservation"
    held = unit.reservation
    if held is not None and held.held:
        reservation = (
            f"reserved by {format_key(held.key or 0)}"
            f" ({held.type.name.lower()})"
        )
    if action == "reservation":
        return f"{unit.unit}: {reservation}"
    if action == "keys":
        keys = ", ".join(format_key(k) for k in unit.keys) or "none"
        return f"{unit.unit}: keys: {keys}; {reservation}"
    paths = f"{unit.registered}/{unit.paths} path(s)"
    if action == "self-check":
        note = f"; {unit.reason}" if unit.reason else ""
        return f"{unit.unit}: key registered on {paths}{note}"
    if action == "fence":
        note = f"; {unit.reason}" if unit.reason else ""
        return (
            f"{unit.unit}: fence verified: victim key gone, {reservation}"
            f" ({unit.commands} commands){note}"
        )
    return f"{unit.unit}: key registered on {paths}; {reservation}"
