"""``fencekit fence``, ``check``, ``nodes`` and ``history``: the inventory.

On a terminal, ``fence`` and ``check`` show progress on standard error as
devices answer; with ``--json`` or when standard error is not a terminal
they print only their result.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from fencekit.cli import _common

if TYPE_CHECKING:
    from fencekit.config import Inventory
    from fencekit.fencing import CheckResult
    from fencekit.outcome import FenceOutcome


def register(sub: Any) -> None:
    """Add ``fence``, ``check``, ``nodes`` and ``history``."""
    _register_fence(sub)
    _register_check(sub)
    _register_nodes(sub)
    _register_history(sub)


def _config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=(
            "the cluster inventory (TOML); default $FENCEKIT_INVENTORY or"
            " /etc/fencekit/inventory.toml"
        ),
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON, no progress"
    )


def _register_fence(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "fence",
        help="fence nodes of the inventory through their fence levels",
        description=(
            "Fence each NODE through its fence levels in order, and verify"
            " it. Exit 0 only when every node's fence was verified."
        ),
    )
    parser.add_argument("nodes", nargs="+", metavar="NODE")
    parser.add_argument(
        "--action",
        "-o",
        choices=("off", "reboot", "on"),
        default="off",
        help="off (default), reboot (off, then on) or on",
    )
    _config_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=handle_fence)


def _register_check(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "check",
        help="check that every fence device answers with its credentials",
        description=(
            "Ask every fence device of the inventory for its state. Exit 1"
            " when any device does not answer or refuses its credentials."
        ),
    )
    _config_option(parser)
    parser.add_argument(
        "--timeout",
        type=_common.positive_float,
        metavar="SECONDS",
        help="per device (default: each device's own timeout)",
    )
    _json_option(parser)
    parser.set_defaults(handler=handle_check)


def _register_nodes(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "nodes",
        help="list the inventory's nodes and their fence levels",
    )
    _config_option(parser)
    _json_option(parser)
    parser.set_defaults(handler=handle_nodes)


def _register_history(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "history",
        help="show the fence journal",
        description=(
            "Show the journal of fence operations, oldest first. Torn"
            " lines left by a crash are skipped with a warning."
        ),
    )
    parser.add_argument("node", nargs="?", metavar="NODE")
    _config_option(parser)
    parser.add_argument(
        "--journal", metavar="FILE", help="read FILE instead of --config's"
    )
    parser.add_argument(
        "--last",
        type=_common.positive_int,
        metavar="N",
        help="only the last N records",
    )
    _json_option(parser)
    parser.set_defaults(handler=handle_history)


def _load(args: argparse.Namespace) -> Inventory:
    from fencekit.config import inventory_path, load

    return load(inventory_path(args.config))


def _progress(args: argparse.Namespace) -> bool:
    return not args.json and sys.stderr.isatty()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# fence


def handle_fence(args: argparse.Namespace) -> int:
    """Fence every node named; exit 0 only when all were verified."""
    inventory = _load(args)
    hook = _show_event if _progress(args) else None
    try:
        outcomes = asyncio.run(
            _fence(inventory, args.nodes, args.action, hook)
        )
    except KeyboardInterrupt:
        _common.error(
            f"interrupted: {', '.join(args.nodes)}: the fence was stopped"
            " before it was verified; treat the node as NOT fenced and"
            " check its state (fencekit history)"
        )
        return _common.EXIT_INTERRUPTED

    failed = 0
    for outcome in outcomes:
        if args.json:
            print(json.dumps(_fence_json(outcome), sort_keys=True))
        if outcome.success:
            if not args.json:
                print(_describe(outcome))
        else:
            failed += 1
            _common.error(
                f"{outcome.node}: {outcome.action.value} failed:"
                f" {outcome.reason}"
            )
    return _common.EXIT_FAILED if failed else _common.EXIT_OK


async def _fence(
    inventory: Inventory, nodes: list[str], action: str, hook: Any
) -> list[FenceOutcome]:
    from fencekit.fencing import Fencer

    async with Fencer(inventory, on_event=hook) as fencer:
        try:
            return await fencer.fence_many(list(dict.fromkeys(nodes)), action)
        except asyncio.CancelledError:
            # Ctrl-C: stop every fence before it sends anything more,
            # and journal each as not verified.
            await fencer.abort()
            raise


def _show_event(record: dict[str, Any]) -> None:
    node = record.get("node")
    event = record.get("event")
    if event == "delay":
        _say(f"{node}: waiting {record['seconds']:g} s (fence delay)")
    elif event == "attempt":
        result = "verified" if record.get("verified") else "failed"
        text = (
            f"{node}: level {record['level']} {record['device']}"
            f" ({record['method']} {record['address']}):"
            f" {record['device_action']} {result},"
            f" power {record['state']}"
        )
        if not record.get("verified"):
            text += f": {record.get('reason')}"
        _say(text)


def _fence_json(outcome: FenceOutcome) -> dict[str, Any]:
    from fencekit.errors import FenceFailedError

    data = outcome.to_dict()
    if isinstance(outcome.error, FenceFailedError):
        data["causes"] = [str(c) for c in outcome.error.causes]
    return data


def _describe(outcome: FenceOutcome) -> str:
    sent = outcome.commands_sent
    commands = "no command needed" if sent == 0 else f"{sent} command(s)"
    text = (
        f"{outcome.node}: {outcome.action.value} verified through"
        f" {outcome.device}, power is {outcome.state.value}"
        f" ({commands}, {outcome.duration:.3f} s)"
    )
    if outcome.power_on_failed:
        text += f"; warning: {outcome.reason}"
    return text


# check


def handle_check(args: argparse.Namespace) -> int:
    """Check every device; exit 1 when any failed."""
    from fencekit.fencing import Fencer

    inventory = _load(args)
    total = len(inventory.devices)
    seen: list[CheckResult] = []

    def show(result: CheckResult) -> None:
        seen.append(result)
        status = "ok" if result.ok else "FAILED"
        _say(f"[{len(seen)}/{total}] {result.device}: {status}")

    hook = show if _progress(args) else None
    if hook is not None:
        _say(f"checking {total} fence device(s)...")

    async def run() -> list[CheckResult]:
        async with Fencer(inventory) as fencer:
            return await fencer.check(timeout=args.timeout, on_result=hook)

    results = asyncio.run(run())
    ok = all(r.ok for r in results)
    if args.json:
        data = {"ok": ok, "devices": [r.to_dict() for r in results]}
        print(json.dumps(data, sort_keys=True))
    else:
        for result in results:
            print(_check_line(result))
    return _common.EXIT_OK if ok else _common.EXIT_FAILED


def _check_line(result: CheckResult) -> str:
    head = f"{result.device}: {result.driver} {result.address}:"
    if result.ok:
        return f"{head} ok, {result.detail} ({result.duration:.3f} s)"
    return f"{head} FAILED: {result.reason}"


# nodes


def handle_nodes(args: argparse.Namespace) -> int:
    """List nodes, their ids, addresses, delay and fence levels."""
    inventory = _load(args)
    local = inventory.local_node()
    rows: list[dict[str, Any]] = [
        {
            "name": node.name,
            "id": node.id,
            "addresses": list(node.addresses),
            "delay": node.delay,
            "levels": [list(level) for level in node.levels],
            "local": node.name == local,
        }
        for node in inventory.nodes.values()
    ]
    if args.json:
        data = {"cluster": inventory.cluster, "nodes": rows}
        print(json.dumps(data, sort_keys=True))
        return _common.EXIT_OK

    print(f"cluster {inventory.cluster}")
    for row in rows:
        levels = " | ".join("+".join(level) for level in row["levels"])
        extra = f", delay {row['delay']:g} s" if row["delay"] else ""
        extra += " (this node)" if row["local"] else ""
        addresses = ", ".join(row["addresses"]) or "-"
        print(
            f"{row['name']} (id {row['id']}, {addresses}):"
            f" levels {levels}{extra}"
        )
    return _common.EXIT_OK


# history


def handle_history(args: argparse.Namespace) -> int:
    """Print the journal's records, oldest first."""
    from fencekit.journal import read

    path = args.journal or _load(args).fencer.journal

    records = list(read(path, node=args.node).records)
    if args.last:
        records = records[-args.last :]
    for record in records:
        if args.json:
            print(json.dumps(record, sort_keys=True))
        else:
            print(_history_line(record))
    return _common.EXIT_OK


def _history_line(record: dict[str, Any]) -> str:
    head = (
        f"{record.get('time', '?')} {record.get('node', '?')}"
        f" {record.get('action', '?')} {record.get('event', '?')}"
    )
    event = record.get("event")
    if event == "attempt":
        result = "verified" if record.get("verified") else "failed"
        head += (
            f" level {record.get('level')} {record.get('device')}"
            f" {record.get('device_action')} {result}"
            f" (power {record.get('state')})"
        )
    elif event == "outcome":
        result = "success" if record.get("success") else "FAILED"
        through = record.get("device") or "-"
        head += f" {result} through {through}"
    elif event == "delay":
        head += f" {record.get('seconds')} s"
    reason = record.get("reason")
    return f"{head}: {reason}" if reason and event != "requested" else head
