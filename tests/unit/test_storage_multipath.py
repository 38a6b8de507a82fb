"""Multipath path discovery on sysfs trees built as fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fencekit.errors import ConfigError, UnsupportedError
from fencekit.storage import multipath
from fencekit.storage.operations import open_units
from fencekit.storage.sgio import SgioTransport


def _tree(root: Path) -> tuple[str, str]:
    """A sysfs and /dev with multipath map dm-3 over sdb and sdc, an LVM
    volume dm-4, a plain disk sdd with partition sdd1."""
    sysfs, dev = root / "sys", root / "dev"
    devices = sysfs / "devices"
    block = sysfs / "class" / "block"
    block.mkdir(parents=True)
    (dev / "mapper").mkdir(parents=True)

    def add(name: str, where: Path) -> Path:
        where.mkdir(parents=True)
        os.symlink(os.path.relpath(where, block), block / name)
        (dev / name).touch()
        return where

    disks = devices / "platform" / "host0"
    for name in ("sdb", "sdc", "sdd"):
        add(name, disks / name)
    partition = add("sdd1", disks / "sdd" / "sdd1")
    (partition / "partition").write_text("1\n")

    for name, uuid, slaves in (
        ("dm-3", "mpath-36001405abcdef", ("sdc", "sdb")),
        ("dm-4", "LVM-abcdef", ("dm-3",)),
    ):
        node = add(name, devices / "virtual" / "block" / name)
        (node / "dm").mkdir()
        (node / "dm" / "uuid").write_text(uuid + "\n")
        (node / "slaves").mkdir()
        for slave in slaves:
            os.symlink(block / slave, node / "slaves" / slave)
    os.symlink("../dm-3", dev / "mapper" / "shop-data")
    os.symlink("../dm-4", dev / "mapper" / "vg-lv")
    return str(sysfs), str(dev)


def test_multipath_map_has_every_slave(tmp_path: Path) -> None:
    """/dev/mapper/NAME resolves to dm-N; its slaves are the paths."""
    sysfs, dev = _tree(tmp_path)

    paths = multipath.paths(
        f"{dev}/mapper/shop-data", sysfs_root=sysfs, dev_root=dev
    )

    assert paths == (f"{dev}/sdb", f"{dev}/sdc")


def test_plain_disk_is_its_own_path(tmp_path: Path) -> None:
    """A disk that is not device-mapper has one path: itself."""
    sysfs, dev = _tree(tmp_path)

    assert multipath.paths(f"{dev}/sdd", sysfs_root=sysfs, dev_root=dev) == (
        f"{dev}/sdd",
    )


def test_partition_means_its_disk(tmp_path: Path) -> None:
    """Reservations are per logical unit: a partition means its disk."""
    sysfs, dev = _tree(tmp_path)

    assert multipath.paths(f"{dev}/sdd1", sysfs_root=sysfs, dev_root=dev) == (
        f"{dev}/sdd",
    )


def test_device_mapper_that_is_not_multipath(tmp_path: Path) -> None:
    """An LVM volume is refused, naming what to give instead."""
    sysfs, dev = _tree(tmp_path)

    with pytest.raises(UnsupportedError, match="not a multipath map"):
        multipath.paths(f"{dev}/mapper/vg-lv", sysfs_root=sysfs, dev_root=dev)


def test_missing_device(tmp_path: Path) -> None:
    """A device that does not exist is a configuration error."""
    sysfs, dev = _tree(tmp_path)

    with pytest.raises(ConfigError, match="no such device"):
        multipath.paths(f"{dev}/sdq", sysfs_root=sysfs, dev_root=dev)


def test_open_units_gives_one_unit_per_map(tmp_path: Path) -> None:
    """A multipath map is one logical unit with an SG_IO path each."""
    sysfs, dev = _tree(tmp_path)

    units = open_units([f"{dev}/mapper/shop-data"], sysfs_root=sysfs)

    assert len(units) == 1 and len(units[0].paths) == 2
    assert all(isinstance(p.transport, SgioTransport) for p in units[0].paths)
