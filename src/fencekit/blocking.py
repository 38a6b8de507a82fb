"""Blocking wrappers of the fencer, for scripts that are not async.

Each call runs its own event loop with :func:`asyncio.run`, so these
cannot be called from inside a running loop (use
:class:`fencekit.fencing.Fencer` there)::

    from fencekit.blocking import fence

    outcome = fence("node-b", "off", config="/etc/fencekit/inventory.toml")
    if not outcome.success:
        raise SystemExit(outcome.reason)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from fencekit.config import Inventory, inventory_path, load
from fencekit.fencing import CheckResult, Fencer
from fencekit.outcome import Action, FenceOutcome

__all__ = ["BlockingFencer", "check", "fence"]


class BlockingFencer:
    """The fencer of an inventory, with blocking calls.

    Args:
        inventory: a loaded inventory, or the path of one; by default
            ``$FENCEKIT_INVENTORY`` or ``/etc/fencekit/inventory.toml``.

    Raises:
        ConfigError: the inventory is invalid.
    """

    def __init__(
        self, inventory: Inventory | str | os.PathLike[str] | None = None
    ) -> None:
        if not isinstance(inventory, Inventory):
            inventory = load(inventory_path(inventory))
        self.inventory = inventory

    def fence(
        self, node: str, action: Action | str = Action.OFF
    ) -> FenceOutcome:
        """Fence ``node``; see :meth:`fencekit.fencing.Fencer.fence`.

        Raises:
            ConfigError: unknown node or action, or a refused local node.
            FencekitError: the journal could not be written.
        """
        return self.fence_many([node], action)[0]

    def fence_many(
        self, nodes: Sequence[str], action: Action | str = Action.OFF
    ) -> list[FenceOutcome]:
        """Fence several nodes at once; outcomes in the order given.

        Raises:
            ConfigError: unknown node or action, or a refused local node.
            FencekitError: the journal could not be written.
        """

        async def run() -> list[FenceOutcome]:
            async with Fencer(self.inventory) as fencer:
                return await fencer.fence_many(nodes, action)

        return asyncio.run(run())

    def check(self, timeout: float | None = None) -> list[CheckResult]:
        """Check every fence device; see :meth:`Fencer.check`."""

        async def run() -> list[CheckResult]:
            async with Fencer(self.inventory) as fencer:
                return await fencer.check(timeout=timeout)

        return asyncio.run(run())


def fence(
    node: str,
    action: Action | str = Action.OFF,
    *,
    config: str | os.PathLike[str] | None = None,
) -> FenceOutcome:
    """Fence ``node`` with the inventory at ``config`` and wait.

    Raises:
        ConfigError: the inventory is invalid, unknown node or action, or
            a refused local node.
        FencekitError: the journal could not be written.
    """
    return BlockingFencer(config).fence(node, action)


def check(
    *, config: str | os.PathLike[str] | None = None
) -> list[CheckResult]:
    """Check every fence device of the inventory at ``config``.

    Raises:
        ConfigError: the inventory is invalid.
    """
    return BlockingFencer(config).check()
