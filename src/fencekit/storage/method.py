"""The ``scsi`` fence method: persistent reservations as a fence level.

An inventory device with ``driver = "scsi"`` names the shared disks in
its options; each node's key is derived from the cluster name and the
node's id (or, for id 0, its name), unless the node's options for the
device give one::

    [devices.shared-disks]
    driver = "scsi"
    host = "localhost"
    options = { devices = ["/dev/mapper/shop-data"] }
    # iSCSI: devices = ["iscsi://10.0.0.5/iqn...:disks/1"],
    #        initiator = "iqn.2024-01.com.example:node-a"

    [[nodes]]
    name = "node-b"
    id = 2
    levels = [["bmc-b"], ["shared-disks"]]
    options.shared-disks = { key = "0x5348000000000002" }   # optional

``off`` preempts the node's key with this machine's own key (the
machine running the fencer must be a node of the inventory). ``on`` is
unfencing: it registers the node's key from the node itself, so it is
refused for any other node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fencekit.errors import (
    ConfigError,
    DeviceTimeoutError,
    FencekitError,
    UnsupportedError,
)
from fencekit.outcome import Action, FenceOutcome
from fencekit.storage import operations
from fencekit.storage.keys import (
    check_unique,
    key_for_node,
    key_from_name,
    parse_key,
)
from fencekit.storage.operations import LogicalUnit, StorageOutcome
from fencekit.storage.spc import ReservationType

__all__ = ["ScsiMethod", "build", "check_inventory", "node_key"]

_OPTIONS = {"devices", "initiator", "type", "key", "abort"}


def node_key(
    cluster: str, name: str, node_id: int, options: Mapping[str, Any]
) -> int:
    """A node's key for one device: its own ``key`` option, else derived.

    Raises:
        ConfigError: the ``key`` option is not a key, or no cluster name.
    """
    explicit = options.get("key")
    if explicit is not None:
        return parse_key(str(explicit), where=f"nodes.{name}: key")
    if node_id > 0:
        return key_for_node(cluster, node_id)
    return key_from_name(cluster, name)


def check_inventory(
    inventory: Any, fail: Callable[[str, str], ConfigError] | None = None
) -> None:
    """Refuse ``scsi`` devices whose options are wrong, or two nodes of
    one device with one key; called when the inventory loads.

    Args:
        inventory: the inventory just read.
        fail: makes the error for a key and a message (so that it names
            the file); by default a plain :class:`ConfigError`.

    Raises:
        ConfigError: names the device, or both nodes of a collision.
    """
    make = fail or (lambda key, message: ConfigError(message, where=key))
    for device in inventory.devices.values():
        if device.driver != "scsi":
            continue
        try:
            _check_options(device.name, device.options)
            keys: dict[str, int] = {}
            for node in inventory.nodes.values():
                options = {
                    **device.options,
                    **node.device_options.get(device.name, {}),
                }
                keys[node.name] = node_key(
                    inventory.cluster, node.name, node.id, options
                )
            check_unique(keys, where=f"devices.{device.name}")
        except ConfigError as exc:
            message = exc.message.removeprefix(f"{exc.where}: ")
            raise make(exc.where or f"devices.{device.name}", message) from exc


def _check_options(name: str, options: Mapping[str, Any]) -> None:
    where = f"devices.{name}.options"
    unknown = set(options) - _OPTIONS
    if unknown:
        known = ", ".join(sorted(_OPTIONS))
        raise ConfigError(
            f"unknown option {sorted(unknown)[0]!r} (known: {known})",
            where=where,
        )
    devices = options.get("devices")
    if (
        not isinstance(devices, list)
        or not devices
        or not all(isinstance(d, str) and d for d in devices)
    ):
        raise ConfigError("devices must list disk paths or URLs", where=where)
    try:
        ReservationType.parse(str(options.get("type", "wero")))
    except ValueError as exc:
        raise ConfigError(str(exc), where=f"{where}.type") from None


class ScsiMethod:
    """One ``scsi`` fence device, ready to act on one node.

    Args:
        context: the fencer's :class:`~fencekit.fencing.MethodContext`.

    Raises:
        ConfigError: the device's options are wrong.
    """

    method = "scsi"

    def __init__(self, context: Any) -> None:
        self.name: str = context.device.name
        self.device: str = context.device.address
        self._context = context
        self._options: Mapping[str, Any] = context.options
        _check_options(self.name, self._options)
        self._type = ReservationType.parse(
            str(self._options.get("type", "wero"))
        )
        self._units: list[LogicalUnit] = []

    async def run(self, action: Action, timeout: float) -> FenceOutcome:
        """``OFF``: preempt the node's key; ``ON``: unfence this node.

        Never raises: failures are unverified outcomes with a reason.
        """
        node = self._context.node
        name = node.name if node is not None else self.device
        start = time.monotonic()
        limit = min(self._context.device.timeout, timeout)
        try:
            outcome = await asyncio.wait_for(self._act(action), limit)
        except TimeoutError:
            error: FencekitError = DeviceTimeoutError(
                f"{self.name}: no verified result in {limit:g} s",
                device=self.device,
            )
            return self._failed(name, action, error, start)
        except FencekitError as exc:
            return self._failed(name, action, exc, start)
        return FenceOutcome(
            node=name,
            device=self.device,
            method=self.method,
            action=action,
            verified=outcome.success,
            commands_sent=outcome.commands,
            duration=time.monotonic() - start,
            reason=outcome.reason,
            error=None if outcome.success else _error(outcome),
        )

    async def _act(self, action: Action) -> StorageOutcome:
        victim = self._context.node
        if victim is None:
            raise ConfigError("no node to act on", where=self.name)
        victim_key = self._key(victim)
        units = self._open()
        if action is Action.ON:
            self._refuse_remote_unfence(victim)
            return await operations.unfence(
                units, victim_key, rtype=self._type
            )
        if action is not Action.OFF:
            raise UnsupportedError(
                f"scsi fencing has no {action.value!r}", device=self.device
            )
        return await operations.fence(
            units,
            self._own_key(),
            victim_key,
            rtype=self._type,
            abort=bool(self._options.get("abort", True)),
        )

    def _key(self, node: Any) -> int:
        options = {
            **self._context.device.options,
            **node.device_options.get(self.name, {}),
        }
        return node_key(self._cluster(), node.name, node.id, options)

    def _cluster(self) -> str:
        return str(getattr(self._context, "cluster", "") or "")

    def _local(self) -> Any:
        local = getattr(self._context, "local_node", None)
        if local is None:
            raise ConfigError(
                "this machine is not a node of the inventory, so its own"
                " reservation key is unknown (set fencer.local_node)",
                where=self.name,
            )
        return local

    def _own_key(self) -> int:
        return self._key(self._local())

    def _refuse_remote_unfence(self, node: Any) -> None:
        if self._local().name != node.name:
            raise UnsupportedError(
                f"unfencing registers a node's own key from the node"
                f" itself: run it on {node.name}",
                device=self.device,
            )

    def _open(self) -> Sequence[LogicalUnit]:
        if not self._units:
            self._units = operations.open_units(
                self._options["devices"],
                initiator=self._options.get("initiator"),
                timeout=self._context.device.timeout,
            )
        return self._units

    async def check(self, timeout: float) -> str:
        """Read the keys of every disk.

        Raises:
            FencekitError: a disk could not be read.
        """
        outcome = await asyncio.wait_for(
            operations.keys(self._open()), timeout
        )
        if not outcome.success:
            raise _error(outcome)
        registered = sum(len(unit.keys) for unit in outcome.units)
        return f"{len(outcome.units)} disk(s), {registered} registration(s)"

    async def close(self) -> None:
        """Close every path; safe to call twice."""
        units, self._units = self._units, []
        await operations.close_units(units)

    def _failed(
        self, node: str, action: Action, error: FencekitError, start: float
    ) -> FenceOutcome:
        return FenceOutcome(
            node=node,
            device=self.device,
            method=self.method,
            action=action,
            verified=False,
            duration=time.monotonic() - start,
            reason=str(error),
            error=error,
        )


def _error(outcome: StorageOutcome) -> FencekitError:
    for unit in outcome.units:
        if unit.error is not None:
            return unit.error
    return FencekitError(outcome.reason or "not verified")


def build(context: Any) -> ScsiMethod:
    """The fencer's builder for ``driver = "scsi"``.

    Raises:
        ConfigError: the device's options are wrong.
    """
    return ScsiMethod(context)
