"""``fence_fencekit_scsi``: storage fencing with SCSI-3 persistent
reservations, as a Pacemaker fence agent.

Every node has a reservation key derived from the cluster's name and the
node's id (the same keys as the fencekit inventory gives), or from the
node's name. ``on`` is unfencing: Pacemaker runs it on the node itself
when it joins, which registers the node's key on every path and takes
the reservation if nobody holds it. ``off`` preempts the target's key
and succeeds only when the key was read back gone and a reservation read
back in place, so the target's writes are refused.

The cluster name and node ids come from the options, or from corosync
(``corosync-cmapctl``) when the options do not give them.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from fencekit.errors import ConfigError, FencekitError
from fencekit.integrations.fence_agent import (
    EXIT_OFF,
    EXIT_OK,
    AgentSpec,
    Parameter,
    Recorder,
    Request,
)
from fencekit.integrations.power_agent import COMMON_PARAMETERS

if TYPE_CHECKING:
    from fencekit.storage import LogicalUnit, StorageOutcome

__all__ = ["SCSI_AGENT", "parse_cmap", "scsi_spec"]

SCSI_AGENT: Final = "fence_fencekit_scsi"
_ACTIONS: Final = ("on", "off", "status", "monitor", "validate-all")
_COMMON: Final = frozenset(
    {
        "action",
        "plug",
        "nodename",
        "delay",
        "power_timeout",
        "journal",
        "verbose",
        "debug_file",
    }
)
_CMAP_TIMEOUT: Final = 10.0

_PARAMETERS: Final = (
    Parameter(
        "devices",
        "string",
        "Shared disks: device paths, multipath maps or"
        " iscsi://HOST:PORT/TARGET-IQN/LUN URLs, separated by commas or"
        " spaces",
        required=True,
        short="d",
    ),
    Parameter(
        "initiator",
        "string",
        "iSCSI initiator name this node logs in as (for iscsi:// devices)",
    ),
    Parameter(
        "cluster_name",
        "string",
        "Cluster name the keys derive from (default: corosync's"
        " totem.cluster_name)",
    ),
    Parameter(
        "node_ids",
        "string",
        "Node ids as node=id pairs separated by ; , or spaces (default:"
        " corosync's nodelist); use the ids of the fencekit inventory",
    ),
    Parameter(
        "key_value",
        "select",
        "Derive keys from the node id (id) or from the node name (name)",
        default="id",
        choices=("id", "name"),
    ),
    Parameter(
        "local_node",
        "string",
        "This node's name (default: crm_node -n, else the host name)",
    ),
)


def scsi_spec() -> AgentSpec:
    """Return the spec of ``fence_fencekit_scsi``."""
    common = tuple(p for p in COMMON_PARAMETERS if p.name in _COMMON)
    timing = tuple(
        dataclasses.replace(
            p,
            shortdesc="Seconds for the whole operation, verification included",
        )
        if p.name == "power_timeout"
        else p
        for p in common[3:]
    )
    return AgentSpec(
        name=SCSI_AGENT,
        shortdesc="Fence a node off shared disks with SCSI-3 persistent"
        " reservations (fencekit)",
        longdesc=(
            "fence_fencekit_scsi cuts a node off shared disks: its"
            " reservation key is preempted, so the disks refuse its"
            " writes. on registers the node's own key (unfencing, run by"
            " Pacemaker on the node itself; configure the device with"
            " meta provides=unfencing). off succeeds only when the key was"
            " read back gone and a registrants-only reservation read back"
            " in place."
        ),
        parameters=(*common[:3], *_PARAMETERS, *timing),
        actions=_ACTIONS,
        default_action="off",
        handler=_handle,
        checker=_check,
        unfence_on_target=True,
    )


def parse_cmap(text: str) -> tuple[str | None, dict[str, int]]:
    """Read ``corosync-cmapctl`` output: the cluster name and node ids.

    Lines look like ``nodelist.node.0.name (str) = node-a`` and
    ``nodelist.node.0.nodeid (u32) = 1``; a node listed by
    ``ring0_addr`` only is named by that address.
    """
    cluster = None
    fields: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        name = key.split(" (")[0].strip()
        value = value.strip()
        if name == "totem.cluster_name":
            cluster = value
        parts = name.split(".")
        if len(parts) == 4 and parts[:2] == ["nodelist", "node"]:
            fields.setdefault(parts[2], {})[parts[3]] = value
    ids: dict[str, int] = {}
    for node in fields.values():
        label = node.get("name") or node.get("ring0_addr")
        if label and node.get("nodeid", "").isdigit():
            ids[label] = int(node["nodeid"])
    return cluster, ids


def _cmap() -> tuple[str | None, dict[str, int]]:
    import shutil
    import subprocess

    tool = shutil.which("corosync-cmapctl") or "/usr/sbin/corosync-cmapctl"
    try:
        done = subprocess.run(
            [tool],
            capture_output=True,
            text=True,
            timeout=_CMAP_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, {}
    if done.returncode != 0:
        return None, {}
    return parse_cmap(done.stdout)


def _node_ids(text: str) -> dict[str, int]:
    ids: dict[str, int] = {}
    for item in text.replace(";", " ").replace(",", " ").split():
        node, sep, value = item.partition("=")
        if not sep or not node or not value.isdigit():
            raise ConfigError(
                f"expected node=id, got {item!r}", where="node_ids"
            )
        ids[node] = int(value)
    return ids


@dataclasses.dataclass(frozen=True)
class _Keys:
    """How node names become reservation keys."""

    cluster: str
    ids: Mapping[str, int]
    by_name: bool

    def key(self, node: str) -> int:
        from fencekit.storage import key_for_node, key_from_name

        if self.by_name:
            return key_from_name(self.cluster, node)
        if node not in self.ids:
            known = ", ".join(sorted(self.ids)) or "none"
            raise ConfigError(
                f"no node id for {node!r} (known: {known})", where="node_ids"
            )
        return key_for_node(self.cluster, self.ids[node])


def _keys(request: Request) -> _Keys:
    """The key scheme from the options, else from corosync.

    Raises:
        ConfigError: no cluster name, or node ids needed and none known.
    """
    options = request.options
    cluster = options.string("cluster_name")
    by_name = options.choice("key_value") == "name"
    given = options.string("node_ids")
    ids = _node_ids(given) if given else {}
    if cluster is None or (not by_name and not given):
        cmap_cluster, cmap_ids = _cmap()
        cluster = cluster or cmap_cluster
        ids = ids or cmap_ids
    if not cluster:
        raise ConfigError(
            "required (corosync did not give it either)", where="cluster_name"
        )
    return _Keys(cluster, ids, by_name)


def _local_node(request: Request) -> str:
    import shutil
    import socket
    import subprocess

    name = request.options.string("local_node")
    if name:
        return name
    tool = shutil.which("crm_node")
    if tool:
        try:
            done = subprocess.run(
                [tool, "-n"],
                capture_output=True,
                text=True,
                timeout=_CMAP_TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            done = None
        if done is not None and done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    return socket.gethostname()


def _devices(request: Request) -> list[str]:
    text = request.options.text("devices") or ""
    return text.replace(",", " ").split()


def _target(request: Request) -> str:
    options = request.options
    target = options.string("plug") or options.string("nodename")
    if target is None:
        raise ConfigError("required: the node to act on", where="plug")
    return target


def _check(request: Request) -> None:
    """Validate the options without opening any disk."""
    if not _devices(request):
        raise ConfigError("required", where="devices")
    timeout = request.options.seconds("power_timeout")
    if timeout is not None and timeout <= 0:
        raise ConfigError("must be above zero", where="power_timeout")
    given = request.options.string("node_ids")
    if given:
        _node_ids(given)
    iscsi = any(d.startswith("iscsi://") for d in _devices(request))
    if iscsi and not request.options.string("initiator"):
        raise ConfigError("required for iscsi:// devices", where="initiator")


def _handle(request: Request) -> int:
    try:
        return asyncio.run(_dispatch(request))
    except FencekitError as exc:
        return request.fail(str(exc))


async def _dispatch(request: Request) -> int:
    from fencekit.storage import close_units, open_units

    options = request.options
    timeout = options.seconds("power_timeout") or 20.0
    units = open_units(
        _devices(request),
        initiator=options.string("initiator"),
        timeout=timeout,
    )
    try:
        return await asyncio.wait_for(_act(request, units), timeout)
    except TimeoutError:
        return request.fail(
            f"{request.action}: not done within {timeout:g} s (not verified)"
        )
    finally:
        await close_units(units)


async def _act(request: Request, units: list[LogicalUnit]) -> int:
    from fencekit import storage

    action = request.action
    if action == "monitor":
        return _report(request, await storage.keys(units))

    keys = _keys(request)
    target = _target(request)
    victim = keys.key(target)
    if action == "status":
        outcome = await storage.status(units, victim)
        if outcome.success:
            request.say("Status: ON")
            return EXIT_OK
        if all(u.error is None for u in outcome.units):
            request.say("Status: OFF")
            return EXIT_OFF
        return _report(request, outcome)

    local = _local_node(request)
    if action == "on" and target != local:
        raise ConfigError(
            f"unfencing registers {target}'s key through this node's"
            f" paths: run it on {target} itself (this node is {local})",
            where="plug",
        )
    record = Recorder(request, target, "on" if action == "on" else "off")
    await record("requested", delay=request.options.seconds("delay") or 0.0)
    if action == "on":
        outcome = await storage.unfence(units, victim)
    else:
        await _delay(request, record)
        outcome = await storage.fence(units, keys.key(local), victim)
    await record("attempt", **_fields(outcome))
    await record("outcome", **_fields(outcome))
    return _report(request, outcome, target)


async def _delay(request: Request, record: Recorder) -> None:
    delay = request.options.seconds("delay") or 0.0
    if delay > 0:
        await record("delay", seconds=delay)
        await asyncio.sleep(delay)


def _report(
    request: Request, outcome: StorageOutcome, target: str | None = None
) -> int:
    what = f"{request.action} {target}" if target else request.action
    if not outcome.success:
        return request.fail(f"{what}: {outcome.reason}")
    if target is not None:
        units = len(outcome.units)
        request.say(f"Success: {what} verified on {units} disk(s)")
    return EXIT_OK


def _fields(outcome: StorageOutcome) -> dict[str, Any]:
    data = outcome.to_dict()
    data["verified"] = outcome.success
    data["method"] = "scsi"
    data["reason"] = outcome.reason
    data["device_action"] = data.pop("action")
    return data
