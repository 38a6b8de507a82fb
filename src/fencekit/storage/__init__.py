"""Storage fencing: SCSI-3 persistent reservations.

Layers, lowest first: :mod:`~fencekit.storage.spc` (CDBs, parameter data,
sense), :mod:`~fencekit.storage.keys` (64-bit keys from node identity),
transports (:mod:`~fencekit.storage.sgio` for local disks,
:mod:`~fencekit.storage.iscsi` for iSCSI through libiscsi),
:mod:`~fencekit.storage.multipath` (the paths of a multipath map),
:mod:`~fencekit.storage.pr` (commands on one path) and
:mod:`~fencekit.storage.operations` (unfence, fence, status, self-check
over logical units). :mod:`~fencekit.storage.method` makes it a fence
method of the fencer (driver ``scsi``).
"""

from __future__ import annotations

from fencekit.storage.keys import (
    check_unique,
    format_key,
    key_for_node,
    key_from_name,
    parse_key,
)
from fencekit.storage.operations import (
    LogicalUnit,
    StorageOutcome,
    UnitResult,
    close_units,
    fence,
    keys,
    open_units,
    self_check,
    status,
    unfence,
)
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.spc import ReservationType

__all__ = [
    "LogicalUnit",
    "PersistentReservations",
    "ReservationType",
    "StorageOutcome",
    "UnitResult",
    "check_unique",
    "close_units",
    "fence",
    "format_key",
    "key_for_node",
    "key_from_name",
    "keys",
    "open_units",
    "parse_key",
    "self_check",
    "status",
    "unfence",
]
