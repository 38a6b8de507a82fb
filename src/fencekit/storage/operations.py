"""Storage fencing over logical units: unfence, fence, status, self-check.

A :class:`LogicalUnit` is one disk as the cluster shares it, reached by
one or more paths (each a :class:`~fencekit.storage.pr.PersistentReservations`
on its own transport). Registration is per path (per I_T nexus); a fence
is one preempt per logical unit, through the first path that answers.

The one rule, for storage: a fence succeeds only when, after the
preempt, the victim's key was read back absent from the logical unit
*and* a reservation was read back in place (without one, a node that is
not registered can still write). Anything else is a failure with its
reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from fencekit._log import get_logger
from fencekit.errors import (
    ConfigError,
    FencekitError,
    NotConfirmedError,
    TransportError,
)
from fencekit.storage.keys import format_key
from fencekit.storage.pr import PersistentReservations
from fencekit.storage.spc import (
    Registrations,
    Reservation,
    ReservationConflictError,
    ReservationType,
)

__all__ = [
    "DEFAULT_TYPE",
    "LogicalUnit",
    "StorageOutcome",
    "UnitResult",
    "close_units",
    "fence",
    "keys",
    "open_units",
    "self_check",
    "status",
    "unfence",
]

DEFAULT_TYPE = ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


@dataclasses.dataclass(frozen=True)
class LogicalUnit:
    """One shared disk and every path to it.

    Attributes:
        name: what the operator named it (a path or URL).
        paths: one entry per path (I_T nexus), in the order to try.
    """

    name: str
    paths: tuple[PersistentReservations, ...]

    def __post_init__(self) -> None:
        if not self.paths:
            raise ConfigError("a logical unit needs a path", where=self.name)

    @property
    def commands(self) -> int:
        """Round trips sent on every path so far."""
        return sum(path.commands for path in self.paths)


@dataclasses.dataclass(frozen=True)
class UnitResult:
    """What one operation found or did on one logical unit.

    Attributes:
        unit: the logical unit's name.
        ok: the operation succeeded (for a fence: verified).
        keys: the keys read back, one per registered I_T nexus.
        reservation: the reservation read back.
        paths: how many paths the unit has.
        registered: how many registrations of our key were read back.
        commands: round trips this operation sent.
        aborted: for a fence, whether PREEMPT AND ABORT was used (False
            means the target only took PREEMPT).
        reason: why it failed, or a note on a success.
        error: the fencekit error behind a failure (not serialised).
    """

    unit: str
    ok: bool
    keys: tuple[int, ...] = ()
    reservation: Reservation | None = None
    paths: int = 1
    registered: int = 0
    commands: int = 0
    aborted: bool | None = None
    reason: str | None = None
    error: FencekitError | None = dataclasses.field(
        default=None, compare=False, repr=False
    )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values; keys as ``0x`` text."""
        reservation = self.reservation
        return {
            "unit": self.unit,
            "ok": self.ok,
            "keys": [format_key(k) for k in self.keys],
            "reservation": _reservation_dict(reservation),
            "paths": self.paths,
            "registered": self.registered,
            "commands": self.commands,
            "aborted": self.aborted,
            "reason": self.reason,
        }


def _reservation_dict(reservation: Reservation | None) -> Any:
    if reservation is None or not reservation.held:
        return None
    assert reservation.type is not None
    return {
        "key": format_key(reservation.key or 0),
        "type": reservation.type.name.lower(),
    }


@dataclasses.dataclass(frozen=True)
class StorageOutcome:
    """The result of one operation over a set of logical units.

    Attributes:
        action: ``fence``, ``unfence``, ``status``, ``keys`` or
            ``self-check``.
        key: this node's key.
        victim: the fenced node's key, for ``fence``.
        units: one result per logical unit, in the order given.
        duration: seconds from the request to the outcome.
    """

    action: str
    key: int | None
    victim: int | None
    units: tuple[UnitResult, ...]
    duration: float

    @property
    def success(self) -> bool:
        """Whether every logical unit succeeded."""
        return bool(self.units) and all(unit.ok for unit in self.units)

    @property
    def commands(self) -> int:
        """Round trips over every logical unit."""
        return sum(unit.commands for unit in self.units)

    @property
    def reason(self) -> str | None:
        """The first failure's reason, naming its logical unit."""
        for unit in self.units:
            if not unit.ok:
                return f"{unit.unit}: {unit.reason}"
        return None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values."""
        return {
            "action": self.action,
            "key": format_key(self.key) if self.key else None,
            "victim": format_key(self.victim) if self.victim else None,
            "success": self.success,
            "commands": self.commands,
            "duration": round(self.duration, 6),
            "units": [unit.to_dict() for unit in self.units],
        }


async def _first_path(
    unit: LogicalUnit, step: Any
) -> tuple[PersistentReservations, Any]:
    """Run ``step(path)`` on the first path that answers.

    Raises:
        TransportError: every path failed; the last one's error, with
            the earlier ones chained.
    """
    error: TransportError | None = None
    for path in unit.paths:
        try:
            return path, await step(path)
        except ReservationConflictError:
            raise
        except TransportError as exc:
            if error is not None:
                exc.__context__ = error
            error = exc
    assert error is not None
    raise error


async def _each(
    units: Sequence[LogicalUnit], operation: Any, action: str, **fields: Any
) -> StorageOutcome:
    start = time.monotonic()
    results = await asyncio.gather(*(operation(unit) for unit in units))
    outcome = StorageOutcome(
        action=action,
        key=fields.get("key"),
        victim=fields.get("victim"),
        units=tuple(results),
        duration=time.monotonic() - start,
    )
    _log(outcome)
    return outcome


def _failed(unit: LogicalUnit, before: int, exc: FencekitError) -> UnitResult:
    return UnitResult(
        unit=unit.name,
        ok=False,
        paths=len(unit.paths),
        commands=unit.commands - before,
        reason=str(exc),
        error=exc,
    )


async def unfence(
    units: Sequence[LogicalUnit],
    key: int,
    *,
    rtype: ReservationType = DEFAULT_TYPE,
) -> StorageOutcome:
    """Register ``key`` on every path and make sure a reservation exists.

    On each logical unit: REGISTER AND IGNORE EXISTING KEY on every path;
    RESERVE with ``rtype`` when nobody holds a reservation; then read the
    keys back. It succeeds when our key is registered at least once per
    path and a reservation is held.
    """

    async def one(unit: LogicalUnit) -> UnitResult:
        before = unit.commands
        try:
            return await _unfence_unit(unit, key, rtype, before)
        except FencekitError as exc:
            return _failed(unit, before, exc)

    return await _each(units, one, "unfence", key=key)


async def _unfence_unit(
    unit: LogicalUnit, key: int, rtype: ReservationType, before: int
) -> UnitResult:
    for path in unit.paths:
        await path.register(key)

    first = unit.paths[0]
    reservation = await first.read_reservation()
    if not reservation.held:
        # Another node may reserve first: re-read below either way.
        with contextlib.suppress(ReservationConflictError):
            await first.reserve(key, rtype)
        reservation = await first.read_reservation()
    registrations = await first.read_keys()

    count = registrations.count(key)
    reason = None
    ok = count >= len(unit.paths) and reservation.held
    if count < len(unit.paths):
        reason = (
            f"key {format_key(key)} registered {count} time(s) for"
            f" {len(unit.paths)} path(s)"
        )
    elif not reservation.held:
        reason = "no reservation held after RESERVE"
    elif count > len(unit.paths):
        reason = (
            f"{count - len(unit.paths)} more registration(s) of our key"
            " than paths (earlier sessions)"
        )
    return UnitResult(
        unit=unit.name,
        ok=ok,
        keys=registrations.keys,
        reservation=reservation,
        paths=len(unit.paths),
        registered=count,
        commands=unit.commands - before,
        reason=reason,
    )


async def fence(
    units: Sequence[LogicalUnit],
    key: int,
    victim: int,
    *,
    rtype: ReservationType = DEFAULT_TYPE,
    abort: bool = True,
    absent_ok: bool = True,
) -> StorageOutcome:
    """Cut the node registered as ``victim`` off every logical unit.

    On each logical unit, through the first path that answers: register
    our own key on that path; PREEMPT AND ABORT the victim's key (PREEMPT
    when the target does not support it), taking over its reservation
    if it held one; read the keys back. A unit without a reservation
    afterwards gets one (RESERVE, ``rtype``), since a registrants-only
    reservation is what refuses the victim's writes.

    A path whose own registration the target reports preempted (this
    node was fenced) fails the unit instead of registering again: the
    loser of a fence race must not come back by fencing the winner.

    A victim key registered nowhere on a unit means the node is fenced
    already; with ``absent_ok`` false (keys typed by hand) it fails the
    unit instead, since a mistyped key or cluster looks the same.

    Raises:
        ConfigError: ``victim`` is our own key.
    """
    if victim == key:
        raise ConfigError(
            "the victim's key is our own key: refusing to fence ourselves",
            where="victim-key",
        )

    async def one(unit: LogicalUnit) -> UnitResult:
        before = unit.commands
        try:
            return await _fence_unit(
                unit, key, victim, rtype, abort, before, absent_ok
            )
        except FencekitError as exc:
            return _failed(unit, before, exc)

    return await _each(units, one, "fence", key=key, victim=victim)


async def _fence_unit(
    unit: LogicalUnit,
    key: int,
    victim: int,
    rtype: ReservationType,
    abort: bool,
    before: int,
    absent_ok: bool = True,
) -> UnitResult:
    async def register(path: PersistentReservations) -> None:
        await path.register(key, rejoin=False)

    path, _ = await _first_path(unit, register)
    aborted = await _preempt(path, key, victim, rtype, abort)
    registrations, reservation = await _read_back(path, key, victim, rtype)

    remaining = registrations.count(victim)
    ok = remaining == 0 and reservation.held
    reason = _fence_reason(victim, remaining, reservation, aborted)
    if ok and aborted is None and not absent_ok:
        ok = False
        others = ", ".join(
            format_key(k) for k in sorted(set(registrations.keys)) if k != key
        )
        reason = (
            f"victim key {format_key(victim)} is not registered: nothing"
            " was fenced (already fenced, or a wrong key or cluster?);"
            f" other keys registered: {others or 'none'}"
        )
    error = None
    if not ok:
        error = NotConfirmedError(
            f"{unit.name}: {reason}", device=unit.name, action="fence"
        )
    return UnitResult(
        unit=unit.name,
        ok=ok,
        keys=registrations.keys,
        reservation=reservation,
        paths=len(unit.paths),
        registered=registrations.count(key),
        commands=unit.commands - before,
        aborted=aborted,
        reason=reason,
        error=error,
    )


async def _preempt(
    path: PersistentReservations,
    key: int,
    victim: int,
    rtype: ReservationType,
    abort: bool,
) -> bool | None:
    """Whether the victim's commands were aborted; None if no preempt
    was carried out."""
    try:
        return await path.preempt(key, victim, rtype, abort=abort)
    except ReservationConflictError:
        # SPC-4 5.12.11.4.3: a key that matches no registration makes the
        # preempt fail with RESERVATION CONFLICT. The read-back decides:
        # if the key is gone, the node is fenced already.
        return None


async def _read_back(
    path: PersistentReservations,
    key: int,
    victim: int,
    rtype: ReservationType,
) -> tuple[Registrations, Reservation]:
    """The keys and the reservation after the preempt, reserving first
    when the victim is gone and nobody holds a reservation."""
    # TODO: READ FULL STATUS would verify keys and reservation in one
    # round trip where the target has it (tgtd has not); two reads are
    # used everywhere for now.
    registrations = await path.read_keys()
    reservation = await path.read_reservation()
    if not reservation.held and registrations.count(victim) == 0:
        # Someone may reserve in between: re-read either way.
        with contextlib.suppress(ReservationConflictError):
            await path.reserve(key, rtype)
        reservation = await path.read_reservation()
    return registrations, reservation


def _fence_reason(
    victim: int,
    remaining: int,
    reservation: Reservation,
    aborted: bool | None,
) -> str | None:
    if remaining:
        return (
            f"victim key {format_key(victim)} still registered"
            f" {remaining} time(s) after the preempt"
        )
    if not reservation.held:
        return "no reservation held: the victim could still write"
    if aborted is None:
        return "victim key was not registered (already fenced)"
    if not aborted:
        return "PREEMPT used: the target has no PREEMPT AND ABORT"
    return None


async def status(units: Sequence[LogicalUnit], key: int) -> StorageOutcome:
    """Whether ``key`` is registered on each logical unit (read only).

    A unit succeeds when the key is registered once per path.
    """

    async def one(unit: LogicalUnit) -> UnitResult:
        before = unit.commands
        try:
            path, registrations = await _first_path(
                unit, lambda p: p.read_keys()
            )
            reservation = await path.read_reservation()
        except FencekitError as exc:
            return _failed(unit, before, exc)
        count = registrations.count(key)
        ok = count >= len(unit.paths)
        return UnitResult(
            unit=unit.name,
            ok=ok,
            keys=registrations.keys,
            reservation=reservation,
            paths=len(unit.paths),
            registered=count,
            commands=unit.commands - before,
            reason=None if ok else _missing(key, count, len(unit.paths)),
        )

    return await _each(units, one, "status", key=key)


def _missing(key: int, count: int, paths: int) -> str:
    if count == 0:
        return f"key {format_key(key)} is not registered"
    return f"key {format_key(key)} registered {count} time(s), {paths} path(s)"


async def keys(units: Sequence[LogicalUnit]) -> StorageOutcome:
    """Read the registered keys and the reservation of each unit."""

    async def one(unit: LogicalUnit) -> UnitResult:
        before = unit.commands
        try:
            path, registrations = await _first_path(
                unit, lambda p: p.read_keys()
            )
            reservation = await path.read_reservation()
        except FencekitError as exc:
            return _failed(unit, before, exc)
        return UnitResult(
            unit=unit.name,
            ok=True,
            keys=registrations.keys,
            reservation=reservation,
            paths=len(unit.paths),
            commands=unit.commands - before,
        )

    return await _each(units, one, "keys")


async def self_check(units: Sequence[LogicalUnit], key: int) -> StorageOutcome:
    """For a watchdog: is our key still registered on every unit?

    One READ KEYS per unit. A unit passes while the key is registered at
    all (a preempt removes every registration of a key; a lost path
    alone is not a fence, and is only noted). Fails closed: a unit whose
    keys cannot be read counts as fenced.
    """

    async def one(unit: LogicalUnit) -> UnitResult:
        before = unit.commands
        try:
            _, registrations = await _first_path(unit, lambda p: p.read_keys())
        except FencekitError as exc:
            return _failed(unit, before, exc)
        count = registrations.count(key)
        reason = None
        if count < len(unit.paths):
            reason = _missing(key, count, len(unit.paths))
        return UnitResult(
            unit=unit.name,
            ok=count > 0,
            keys=registrations.keys,
            paths=len(unit.paths),
            registered=count,
            commands=unit.commands - before,
            reason=reason,
        )

    return await _each(units, one, "self-check", key=key)


def _log(outcome: StorageOutcome) -> None:
    log = get_logger(__name__)
    fields = {
        "action": outcome.action,
        "units": len(outcome.units),
        "success": outcome.success,
        "commands": outcome.commands,
        "duration": round(outcome.duration, 4),
    }
    if outcome.victim is not None:
        fields["victim"] = format_key(outcome.victim)
    if outcome.success:
        if outcome.action in ("fence", "unfence"):
            log.info("scsi_" + outcome.action, **fields)
        return
    event = f"scsi_{outcome.action.replace('-', '_')}_failed"
    if outcome.action == "fence":
        log.error(event, **fields, reason=outcome.reason)
    elif outcome.action in ("unfence", "self-check"):
        log.warning(event, **fields, reason=outcome.reason)
    else:
        # A read that finds a key missing is an answer, not an alarm.
        log.info(event, **fields, reason=outcome.reason)


def open_units(
    devices: Sequence[str],
    *,
    initiator: str | None = None,
    timeout: float = 10.0,
    sysfs_root: str = "/sys",
) -> list[LogicalUnit]:
    """One logical unit per device named (nothing is opened yet).

    A multipath map becomes one unit with a path per slave; an
    ``iscsi://`` URL or any other local path is one unit with one path.

    Raises:
        ConfigError: a device does not exist, or an iSCSI URL is
            malformed or has no initiator name.
        UnsupportedError: a device-mapper device that is not multipath.
    """
    from fencekit.storage.multipath import paths
    from fencekit.storage.transport import open_transport

    # TODO: units are grouped only by multipath map. Two names for one
    # logical unit given separately (two iSCSI portals, /dev/sdb and
    # /dev/sdc without multipathd) become two units and get a preempt
    # each; grouping them needs the INQUIRY VPD 83h identifier.
    units: list[LogicalUnit] = []
    for device in devices:
        names: tuple[str, ...] = (device,)
        if "://" not in device:
            names = paths(device, sysfs_root=sysfs_root)
        transports = tuple(
            PersistentReservations(
                open_transport(name, initiator=initiator), timeout=timeout
            )
            for name in names
        )
        units.append(LogicalUnit(device, transports))
    return units


async def close_units(units: Sequence[LogicalUnit]) -> None:
    """Close every path of every unit."""
    for unit in units:
        for path in unit.paths:
            await path.transport.close()
