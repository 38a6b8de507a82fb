"""The paths of a device-mapper multipath device, read from sysfs.

A reservation key is registered per I_T nexus, so a node must register
on every path of a multipath map; fencing needs only one path of the
logical unit. ``/sys/block/dm-N/dm/uuid`` starts with ``mpath-`` for a
multipath map, and ``/sys/block/dm-N/slaves/`` names its paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from fencekit.errors import ConfigError, UnsupportedError

__all__ = ["block_name", "paths"]


def block_name(device: str, *, dev_root: str = "/dev") -> str:
    """The kernel name (``dm-3``, ``sdb``) of a block device path.

    Symbolic links (``/dev/mapper/data``, ``/dev/disk/by-id/...``) are
    followed; the name is what the link finally points at.

    Raises:
        ConfigError: the path does not exist.
    """
    path = Path(device)
    if not path.is_absolute():
        path = Path(dev_root) / path
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise ConfigError("no such device", where=device) from exc
    return real.name


def paths(
    device: str, *, sysfs_root: str = "/sys", dev_root: str = "/dev"
) -> tuple[str, ...]:
    """Every path of ``device``: its slaves for a multipath map, the
    whole disk for a partition, else the device itself.

    Args:
        device: a block device path (or a name under ``dev_root``).
        sysfs_root: where sysfs is mounted (tests build their own).
        dev_root: where device nodes are.

    Raises:
        ConfigError: the device does not exist.
        UnsupportedError: a device-mapper device that is not multipath
            (LVM, crypt): reservations belong on the disks under it.
    """
    name = block_name(device, dev_root=dev_root)
    block = Path(sysfs_root) / "class" / "block" / name
    if not block.exists():
        return (device,)
    if (block / "partition").exists():
        # SG_IO goes to the whole disk; the kernel refuses it on a
        # partition without CAP_SYS_RAWIO.
        parent = block.resolve().parent.name
        return (str(Path(dev_root) / parent),)
    uuid_file = block / "dm" / "uuid"
    if not uuid_file.exists():
        return (device,)
    uuid = uuid_file.read_text(errors="replace").strip()
    if not uuid.startswith("mpath-"):
        raise UnsupportedError(
            f"device-mapper device {name} is not a multipath map"
            f" (uuid {uuid!r}): name the disks under it",
            device=device,
        )
    slaves = sorted(os.listdir(block / "slaves"))
    if not slaves:
        raise UnsupportedError(
            f"multipath map {name} has no paths", device=device
        )
    return tuple(str(Path(dev_root) / slave) for slave in slaves)
