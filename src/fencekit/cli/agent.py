"""``fencekit agent``: the monitoring agent.

SIGTERM and SIGINT stop it cleanly; SIGHUP reloads the configuration
and keeps the old one when the new one is invalid.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from fencekit.cli import _common


def register(sub: Any) -> None:
    """Add ``agent`` to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "agent",
        help="run the checks, serve /metrics and /probe",
        description=(
            "Run the configured checks on their schedules, serve"
            " Prometheus metrics, and run actions on state changes."
        ),
    )
    parser.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="the agent configuration (TOML)",
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="validate the configuration and exit",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Run the agent until a signal stops it."""
    from fencekit.logging import configure
    from fencekit.monitor import load_config

    # The agent's state changes are INFO lines: log them by default.
    configure(verbosity=max(1, args.verbose))
    config = load_config(args.config)
    if args.check_config:
        from fencekit.monitor import Agent

        Agent(config).validate()
        print(
            f"{args.config}: {len(config.checks)} check(s),"
            f" {len(config.actions)} action(s),"
            f" {len(config.modules)} module(s): valid"
        )
        return _common.EXIT_OK
    asyncio.run(_serve(config))
    return _common.EXIT_OK


async def _serve(config: Any) -> None:
    from fencekit.monitor import Agent

    agent = Agent(config)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, agent.stop)
    loop.add_signal_handler(signal.SIGINT, agent.stop)
    loop.add_signal_handler(signal.SIGHUP, agent.reload)
    await agent.run()
