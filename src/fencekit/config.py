"""The cluster inventory: nodes, fence devices, fence levels, the fencer.

The inventory is one TOML file, read with :mod:`tomllib` and validated
as a whole when it is loaded. Every error names the file and the key at
fault, for example ``inventory.toml: nodes[1].id: must be an integer``.
A commented example lives in ``contrib/inventory.example.toml``::

    cluster = "lab"

    [fencer]
    run_dir = "/run/fencekit"            # per-node lock files
    journal = "/var/lib/fencekit/journal.jsonl"
    fence_timeout = 60                   # seconds for a whole fence
    max_parallel = 8                     # nodes fenced at once

    [devices.bmc-b]
    driver = "ipmi"                      # any registered driver
    host = "10.0.0.12"
    username = "fence"
    password_file = "/etc/fencekit/bmc-b.pass"
    timeout = 20                         # seconds per device operation
    options = { cipher = 3 }

    [[nodes]]
    name = "node-b"
    id = 2
    addresses = ["10.0.1.2"]
    levels = [["bmc-b"], ["pdu-1", "pdu-2"]]

A password itself is never accepted in the file: a device names where its
password is kept (``password_file``, ``password_env`` or
``password_command``), and the password is read only when it is used.
"""

from __future__ import annotations

import dataclasses
import math
import os
import socket
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from fencekit.errors import ConfigError
from fencekit.secrets import Secret, from_command, from_env, from_file

__all__ = [
    "DEFAULT_INVENTORY",
    "DEFAULT_JOURNAL",
    "DEFAULT_RUN_DIR",
    "Credentials",
    "DeviceConfig",
    "FencerSettings",
    "Inventory",
    "NodeConfig",
    "inventory_path",
    "load",
    "parse",
]

DEFAULT_INVENTORY: Final = Path("/etc/fencekit/inventory.toml")
DEFAULT_RUN_DIR: Final = Path("/run/fencekit")
DEFAULT_JOURNAL: Final = Path("/var/lib/fencekit/journal.jsonl")

_PASSWORD_SOURCES: Final = (
    "password_file",
    "password_env",
    "password_command",
)
# Keys that would put a credential itself into the file.
_INLINE_SECRETS: Final = ("password", "passwd", "kg", "community", "token")
# Driver options that would hold a secret's value. Their *_file, *_env
# and *_command forms are the accepted ones.
_INLINE_OPTION_SECRETS: Final = (
    *_INLINE_SECRETS,
    "ipmi_password",
    "auth_key",
    "priv_key",
    "secret",
)


@dataclasses.dataclass(frozen=True)
class Credentials:
    """Where a device's password is kept; never the password itself.

    Attributes:
        username: the account on the device.
        kind: ``file``, ``env`` or ``command``.
        source: the file path, variable name or command line.
    """

    username: str
    kind: str
    source: str

    def password(self) -> Secret:
        """Read the password from its source now.

        Raises:
            SecretError: the source gave no password.
        """
        if self.kind == "file":
            return from_file(self.source)
        if self.kind == "env":
            return from_env(self.source)
        return from_command(self.source)


@dataclasses.dataclass(frozen=True)
class DeviceConfig:
    """One fence device of the cluster.

    Attributes:
        name: the device's name in the inventory.
        driver: the driver or method that talks to it (``ipmi``...).
        host: its address (required for power drivers; may be empty
            for methods that find their device otherwise).
        port: its port; the driver's default when None.
        credentials: the account and where its password is kept, if the
            driver needs one.
        timeout: seconds for one operation on the device, verification
            included.
        options: driver-specific options, passed to the driver as given.
    """

    name: str
    driver: str
    host: str
    port: int | None = None
    credentials: Credentials | None = None
    timeout: float = 20.0
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def address(self) -> str:
        """``host`` or ``host:port``, for messages and the journal."""
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    """One node of the cluster and how it is fenced.

    Attributes:
        name: the node's name, as the cluster manager knows it.
        id: the node's numeric id (Corosync nodeid).
        addresses: the node's own addresses (not its devices').
        levels: fence levels in the order they are tried; each is a tuple
            of device names that must all succeed.
        delay: seconds to wait before powering this node off, to settle
            a fence race between two nodes in favour of this one.
        device_options: per-device options for this node only (a PDU
            outlet, a switch port), merged over the device's options.
    """

    name: str
    id: int
    addresses: tuple[str, ...] = ()
    levels: tuple[tuple[str, ...], ...] = ()
    delay: float = 0.0
    device_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict
    )


@dataclasses.dataclass(frozen=True)
class FencerSettings:
    """How the fencer runs.

    Attributes:
        run_dir: where per-node lock files live.
        journal: the journal file (JSON lines).
        fence_timeout: seconds for one whole fence, every level included.
        max_parallel: how many nodes are fenced at the same time.
        local_node: this machine's node; by default the node whose name
            is the host name (or its first label).
        allow_local: allow fencing the local node.
        settle: consecutive readings of the wanted power state required.
        interval: seconds between readings while the state is wrong.
        settle_interval: seconds between the readings that confirm it.
        off_time: for reboot, seconds the node stays off before on.
    """

    run_dir: Path = DEFAULT_RUN_DIR
    journal: Path = DEFAULT_JOURNAL
    fence_timeout: float = 60.0
    max_parallel: int = 8
    local_node: str | None = None
    allow_local: bool = False
    settle: int = 2
    interval: float = 0.25
    settle_interval: float = 0.1
    off_time: float = 1.0


@dataclasses.dataclass(frozen=True)
class Inventory:
    """A validated cluster inventory.

    Attributes:
        cluster: the cluster's name.
        nodes: nodes by name, in file order.
        devices: fence devices by name, in file order.
        fencer: the fencer's settings.
        path: the file it was read from, if any.
    """

    cluster: str
    nodes: Mapping[str, NodeConfig]
    devices: Mapping[str, DeviceConfig]
    fencer: FencerSettings = FencerSettings()
    path: Path | None = None

    def node(self, name: str) -> NodeConfig:
        """Return the node called ``name``.

        Raises:
            ConfigError: no node has that name.
        """
        try:
            return self.nodes[name]
        except KeyError:
            known = ", ".join(self.nodes) or "none"
            raise ConfigError(
                f"no such node in the inventory (nodes: {known})",
                where=name,
            ) from None

    def local_node(self) -> str | None:
        """This machine's node name, when the inventory has it."""
        if self.fencer.local_node is not None:
            return self.fencer.local_node
        host = socket.gethostname()
        for name in (host, host.split(".", 1)[0]):
            if name in self.nodes:
                return name
        return None


def inventory_path(config: str | os.PathLike[str] | None = None) -> Path:
    """The inventory to read: ``config``, else ``$FENCEKIT_INVENTORY``,
    else ``/etc/fencekit/inventory.toml``."""
    if config is not None:
        return Path(config)
    return Path(os.environ.get("FENCEKIT_INVENTORY", DEFAULT_INVENTORY))


def load(
    path: str | os.PathLike[str],
    *,
    known_drivers: Iterable[str] | None = None,
) -> Inventory:
    """Read and validate the inventory at ``path``.

    Args:
        path: the TOML file.
        known_drivers: driver names a device may use; by default every
            driver and fence method registered with the fencer.

    Raises:
        ConfigError: the file cannot be read or is invalid; the message
            names the file and the key.
    """
    from fencekit import _toml

    file = Path(path)
    data = _toml.read(file)
    return parse(data, source=file, known_drivers=known_drivers)


def parse(
    data: Mapping[str, Any],
    *,
    source: str | os.PathLike[str] | None = None,
    known_drivers: Iterable[str] | None = None,
) -> Inventory:
    """Validate inventory ``data`` already read from TOML.

    Relative paths in the data are taken from the directory of
    ``source`` when it is given.

    Raises:
        ConfigError: the data is invalid; the message names the key.
    """
    if known_drivers is None:
        from fencekit.fencing import known_drivers as registered

        known_drivers = registered()
    path = Path(source) if source is not None else None
    reader = _Reader(path, frozenset(known_drivers))
    return reader.inventory(data)


class _Reader:
    """Validates one inventory, naming the file in each error."""

    def __init__(self, path: Path | None, drivers: frozenset[str]) -> None:
        self.path = path
        self.base = path.parent if path is not None else Path.cwd()
        self.drivers = drivers

    def fail(self, key: str, message: str) -> ConfigError:
        where = f"{self.path}: {key}" if self.path is not None else key
        return ConfigError(message, where=where)

    def inventory(self, data: Mapping[str, Any]) -> Inventory:
        self.only(data, "", {"cluster", "fencer", "devices", "nodes"})
        cluster = self.text(data, "cluster", "")
        fencer = self.fencer(self.table(data, "fencer", ""))
        devices = self.devices(self.table(data, "devices", ""))
        nodes = self.nodes(data.get("nodes", []), devices)
        for index, node in enumerate(nodes.values()):
            if node.delay >= fencer.fence_timeout:
                raise self.fail(
                    f"nodes[{index}].delay",
                    "must be shorter than fencer.fence_timeout",
                )
        if fencer.local_node is not None and fencer.local_node not in nodes:
            raise self.fail("fencer.local_node", "names no node")
        inventory = Inventory(cluster, nodes, devices, fencer, self.path)
        if any(d.driver == "scsi" for d in devices.values()):
            from fencekit.storage.method import check_inventory

            check_inventory(inventory, self.fail)
        return inventory

    def fencer(self, data: Mapping[str, Any]) -> FencerSettings:
        keys = {f.name for f in dataclasses.fields(FencerSettings)}
        self.only(data, "fencer", keys)
        d = FencerSettings()
        return FencerSettings(
            run_dir=self.file(data, "run_dir", "fencer", d.run_dir),
            journal=self.file(data, "journal", "fencer", d.journal),
            fence_timeout=self.seconds(
                data, "fence_timeout", "fencer", d.fence_timeout, zero=False
            ),
            max_parallel=self.count(
                data, "max_parallel", "fencer", d.max_parallel
            ),
            local_node=self.text(data, "local_node", "fencer", None),
            allow_local=self.flag(data, "allow_local", "fencer", False),
            settle=self.count(data, "settle", "fencer", d.settle),
            interval=self.seconds(data, "interval", "fencer", d.interval),
            settle_interval=self.seconds(
                data, "settle_interval", "fencer", d.settle_interval
            ),
            off_time=self.seconds(data, "off_time", "fencer", d.off_time),
        )

    def devices(self, data: Mapping[str, Any]) -> dict[str, DeviceConfig]:
        return {
            name: self.device(name, self.table(data, name, "devices"))
            for name in data
        }

    def device(self, name: str, data: Mapping[str, Any]) -> DeviceConfig:
        at = f"devices.{name}"
        for key in _INLINE_SECRETS:
            if key in data:
                raise self.fail(
                    f"{at}.{key}",
                    "secrets are not accepted in the inventory: use"
                    " password_file, password_env or password_command",
                )
        keys = {"driver", "host", "port", "username", "timeout", "options"}
        self.only(data, at, keys | set(_PASSWORD_SOURCES))

        driver = self.text(data, "driver", at)
        if driver not in self.drivers:
            known = ", ".join(sorted(self.drivers))
            raise self.fail(
                f"{at}.driver", f"unknown driver {driver!r} (known: {known})"
            )
        return DeviceConfig(
            name=name,
            driver=driver,
            host=self.text(data, "host", at, _host_default(driver)),
            port=self.port(data, at),
            credentials=self.credentials(data, at),
            timeout=self.seconds(data, "timeout", at, 20.0, zero=False),
            # TODO: driver options are checked when the driver is built
            # (fence or check time), not here: building a driver to check
            # them could open sessions, and drivers have no dry-run hook.
            options=self.options(data, at),
        )

    def options(self, data: Mapping[str, Any], at: str) -> dict[str, Any]:
        """A device's driver options, without any secret's value."""
        options = dict(self.table(data, "options", at))
        self.no_secrets(options, f"{at}.options")
        return options

    def no_secrets(self, table: Mapping[str, Any], at: str) -> None:
        """Refuse a secret's value anywhere in ``table`` (any case, any
        depth)."""
        for key, value in table.items():
            if str(key).lower() in _INLINE_OPTION_SECRETS:
                name = str(key).lower()
                raise self.fail(
                    f"{at}.{key}",
                    "secrets are not accepted in the inventory: use"
                    f" {name}_file, {name}_env or {name}_command",
                )
            if isinstance(value, Mapping):
                self.no_secrets(value, f"{at}.{key}")

    def credentials(
        self, data: Mapping[str, Any], at: str
    ) -> Credentials | None:
        given = [key for key in _PASSWORD_SOURCES if key in data]
        if len(given) > 1:
            raise self.fail(
                f"{at}.{given[1]}", f"give only one of {', '.join(given)}"
            )
        username = self.text(data, "username", at, None)
        if not given:
            if username is not None:
                raise self.fail(
                    at,
                    "username given without password_file, password_env"
                    " or password_command",
                )
            return None
        key = given[0]
        source = self.text(data, key, at)
        if key == "password_file":
            source = str(self.base / source)
            if not os.access(source, os.R_OK):
                raise self.fail(
                    f"{at}.{key}", f"credentials file {source} is not readable"
                )
        return Credentials(username or "", key.split("_", 1)[1], source)

    def nodes(
        self, data: Any, devices: Mapping[str, DeviceConfig]
    ) -> dict[str, NodeConfig]:
        if not isinstance(data, list):
            raise self.fail("nodes", "must be an array of tables ([[nodes]])")
        nodes: dict[str, NodeConfig] = {}
        ids: dict[int, str] = {}
        for index, entry in enumerate(data):
            at = f"nodes[{index}]"
            if not isinstance(entry, Mapping):
                raise self.fail(at, "must be a table")
            node = self.node(entry, at, devices)
            if node.name in nodes:
                raise self.fail(
                    f"{at}.name", f"duplicate node name {node.name!r}"
                )
            if node.id in ids:
                raise self.fail(
                    f"{at}.id", f"node id {node.id} is also {ids[node.id]}'s"
                )
            nodes[node.name] = node
            ids[node.id] = node.name
        return nodes

    def node(
        self,
        data: Mapping[str, Any],
        at: str,
        devices: Mapping[str, DeviceConfig],
    ) -> NodeConfig:
        keys = {"name", "id", "addresses", "levels", "delay", "options"}
        self.only(data, at, keys)
        node_id = data.get("id")
        if isinstance(node_id, bool) or not isinstance(node_id, int):
            raise self.fail(f"{at}.id", "must be an integer")
        if node_id < 0:
            raise self.fail(f"{at}.id", "must not be negative")

        levels = self.levels(data.get("levels", []), at, devices)
        options = self.table(data, "options", at)
        for device, table in options.items():
            if device not in devices or not isinstance(table, Mapping):
                raise self.fail(
                    f"{at}.options.{device}",
                    "must be a table named after a device",
                )
            self.no_secrets(table, f"{at}.options.{device}")
        return NodeConfig(
            name=self.text(data, "name", at),
            id=node_id,
            addresses=tuple(self.texts(data, "addresses", at)),
            levels=levels,
            delay=self.seconds(data, "delay", at, 0.0),
            device_options={k: dict(v) for k, v in options.items()},
        )

    def levels(
        self, data: Any, at: str, devices: Mapping[str, DeviceConfig]
    ) -> tuple[tuple[str, ...], ...]:
        key = f"{at}.levels"
        if not isinstance(data, list) or not data:
            raise self.fail(key, "must list at least one fence level")
        levels = []
        for index, level in enumerate(data):
            names = [level] if isinstance(level, str) else level
            if not isinstance(names, list) or not names:
                raise self.fail(
                    f"{key}[{index}]", "must be a device name or a list"
                )
            for name in names:
                if not isinstance(name, str) or name not in devices:
                    raise self.fail(
                        f"{key}[{index}]", f"names no device: {name!r}"
                    )
            levels.append(tuple(names))
        return tuple(levels)

    # Typed readers: each names the key it rejects.

    def only(self, data: Mapping[str, Any], at: str, keys: set[str]) -> None:
        for key in data:
            if key not in keys:
                name = f"{at}.{key}" if at else key
                raise self.fail(name, "unknown key")

    def table(
        self, data: Mapping[str, Any], key: str, at: str
    ) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(_join(at, key), "must be a table")
        return value

    def text(
        self,
        data: Mapping[str, Any],
        key: str,
        at: str,
        default: Any = ...,
    ) -> Any:
        if key not in data:
            if default is ...:
                raise self.fail(_join(at, key), "is required")
            return default
        value = data[key]
        if not isinstance(value, str) or not value.strip():
            raise self.fail(_join(at, key), "must be a non-empty string")
        return value

    def texts(self, data: Mapping[str, Any], key: str, at: str) -> list[str]:
        value = data.get(key, [])
        if not isinstance(value, list) or not all(
            isinstance(v, str) and v for v in value
        ):
            raise self.fail(_join(at, key), "must be a list of strings")
        return value

    def file(
        self, data: Mapping[str, Any], key: str, at: str, default: Path
    ) -> Path:
        if key not in data:
            return default
        value: str = self.text(data, key, at)
        return self.base / value

    def flag(
        self, data: Mapping[str, Any], key: str, at: str, default: bool
    ) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(_join(at, key), "must be true or false")
        return value

    def count(
        self, data: Mapping[str, Any], key: str, at: str, default: int
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(_join(at, key), "must be an integer")
        if value < 1:
            raise self.fail(_join(at, key), "must be at least 1")
        return value

    def seconds(
        self,
        data: Mapping[str, Any],
        key: str,
        at: str,
        default: float,
        *,
        zero: bool = True,
    ) -> float:
        value = data.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or not math.isfinite(value) or value < 0:
            raise self.fail(_join(at, key), "must be a number of seconds")
        if value == 0 and not zero:
            raise self.fail(_join(at, key), "must be above zero")
        return float(value)

    def port(self, data: Mapping[str, Any], at: str) -> int | None:
        value = data.get("port")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{at}.port", "must be an integer")
        if not 0 < value < 65536:
            raise self.fail(f"{at}.port", "must be 1-65535")
        return value


def _host_default(driver: str) -> Any:
    """Power devices need a host; other methods (storage) may not."""
    from fencekit.power.drivers import DRIVERS

    return ... if driver in DRIVERS else ""


def _join(at: str, key: str) -> str:
    return f"{at}.{key}" if at else key
