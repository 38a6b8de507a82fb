"""Persistent reservation commands on one path of a logical unit.

:class:`PersistentReservations` sends PERSISTENT RESERVE IN and OUT
commands through a transport and returns parsed results. A unit
attention is reported once and then the command is repeated (SAM-5
5.14: the command that received it was not carried out); so is a busy
target, after a short pause. Everything else is raised as the error
:func:`fencekit.storage.spc.check` maps it to.
"""

from __future__ import annotations

from fencekit._log import get_logger
from fencekit.clock import SYSTEM_CLOCK, Clock
from fencekit.errors import FenceError, ProtocolError
from fencekit.storage import spc
from fencekit.storage.spc import (
    Capabilities,
    FullStatusEntry,
    PrIn,
    PrOut,
    Registrations,
    Reservation,
    ReservationType,
)
from fencekit.storage.transport import ScsiTransport

__all__ = ["PersistentReservations"]

# Room for 64 registrations in the first READ KEYS; more cost a second.
_FIRST_ALLOCATION = 8 + 8 * 64


class PersistentReservations:
    """Persistent reservation commands through one transport.

    Args:
        transport: the path to the logical unit.
        timeout: seconds for each command.
        attempts: how many times a command is sent while the target
            answers with a unit attention or "busy".
        pause: seconds between attempts after "busy" (none after a unit
            attention, which is reported once).
        clock: for the pauses.

    Attributes:
        commands: how many commands were sent (round trips).
        abort_supported: False once the target refused PREEMPT AND
            ABORT; later fences go straight to PREEMPT.
        preempted: True once the target reported that this path's
            registration was preempted (UNIT ATTENTION 2Ah/03h or
            2Ah/05h): this node has been fenced. Only :meth:`register`
            with ``rejoin=True`` (unfencing) clears it.
    """

    def __init__(
        self,
        transport: ScsiTransport,
        *,
        timeout: float = 10.0,
        attempts: int = 8,
        pause: float = 0.1,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.transport = transport
        self.device = transport.device
        self.timeout = timeout
        self.attempts = attempts
        self.pause = pause
        self.clock = clock
        self.commands = 0
        self.abort_supported = True
        self.preempted = False

    async def send(
        self,
        what: str,
        cdb: bytes,
        *,
        data_out: bytes = b"",
        data_in: int = 0,
        guard: bool = False,
    ) -> bytes:
        """Send one command, repeating it after a unit attention.

        Args:
            what: the command's name, for messages.
            cdb: the command descriptor block.
            data_out: bytes for the target.
            data_in: the most bytes to accept.
            guard: refuse to go on when this path turns out to have been
                preempted, instead of repeating the command.

        Returns:
            The data-in bytes.

        Raises:
            FenceError: ``guard`` is set and this path was preempted.
            TransportError: the transport failed, or the command ended in
                an error status (see :func:`fencekit.storage.spc.check`).
            UnsupportedError: the target does not support it.
        """
        for attempt in range(1, self.attempts + 1):
            result = await self.transport.execute(
                cdb, data_out=data_out, data_in=data_in, timeout=self.timeout
            )
            self.commands += 1
            try:
                spc.check(result, what=what, device=self.device)
            except spc.ScsiError as exc:
                if _preempted(exc):
                    self.preempted = True
                    if guard:
                        raise _fenced(self.device) from exc
                if not exc.transient or attempt == self.attempts:
                    raise
                _log_retry(self.device, what, exc, attempt)
                if not isinstance(exc, spc.UnitAttentionError):
                    await self.clock.sleep(self.pause)
                continue
            return result.data
        raise AssertionError("unreachable: the last attempt raises")

    async def read_keys(self) -> Registrations:
        """READ KEYS: every registered key (asks again if truncated).

        Raises:
            TransportError: see :meth:`send`.
        """
        allocation = _FIRST_ALLOCATION
        while True:
            data = await self.send(
                "READ KEYS",
                spc.pr_in_cdb(PrIn.READ_KEYS, allocation),
                data_in=allocation,
            )
            keys = spc.parse_read_keys(data)
            if not keys.truncated:
                return keys
            # A partial list could hide the victim's key: never judge a
            # fence on one.
            if keys.needed <= allocation or allocation >= spc.MAX_ALLOCATION:
                raise ProtocolError(
                    f"{self.device}: READ KEYS announced {keys.needed} bytes"
                    f" but sent {len(data)}",
                    device=self.device,
                )
            allocation = min(keys.needed, spc.MAX_ALLOCATION)

    async def read_reservation(self) -> Reservation:
        """READ RESERVATION: the holder's key and the type, if any.

        Raises:
            TransportError: see :meth:`send`.
        """
        data = await self.send(
            "READ RESERVATION",
            spc.pr_in_cdb(PrIn.READ_RESERVATION, 24),
            data_in=24,
        )
        return spc.parse_read_reservation(data)

    async def report_capabilities(self) -> Capabilities:
        """REPORT CAPABILITIES.

        Raises:
            TransportError: see :meth:`send`.
            UnsupportedError: the target does not implement it.
        """
        data = await self.send(
            "REPORT CAPABILITIES",
            spc.pr_in_cdb(PrIn.REPORT_CAPABILITIES, 8),
            data_in=8,
        )
        return spc.parse_capabilities(data)

    async def read_full_status(self) -> tuple[FullStatusEntry, ...]:
        """READ FULL STATUS: each registration with its initiator.

        Raises:
            TransportError: see :meth:`send`.
            UnsupportedError: the target does not implement it.
        """
        allocation = spc.MAX_ALLOCATION
        data = await self.send(
            "READ FULL STATUS",
            spc.pr_in_cdb(PrIn.READ_FULL_STATUS, allocation),
            data_in=allocation,
        )
        return spc.parse_full_status(data)[1]

    async def _out(
        self,
        action: PrOut,
        key: int,
        service_key: int = 0,
        rtype: ReservationType | None = None,
        *,
        guard: bool = False,
    ) -> None:
        what = action.name.replace("_", " ")
        await self.send(
            what,
            spc.pr_out_cdb(action, rtype),
            data_out=spc.pr_out_parameters(key, service_key),
            guard=guard,
        )

    async def register(self, key: int, *, rejoin: bool = True) -> None:
        """Register ``key`` on this path, whatever was registered before
        (REGISTER AND IGNORE EXISTING KEY).

        Args:
            key: this node's key.
            rejoin: register even if this path was preempted (unfencing).
                When False, a preempted path is refused: a node that was
                fenced must not register again on its way to fencing
                another node (the loser of a fence race would come back).

        Raises:
            FenceError: ``rejoin`` is False and this path was preempted.
            TransportError: see :meth:`send`.
        """
        if not rejoin and self.preempted:
            raise _fenced(self.device)
        await self._out(
            PrOut.REGISTER_AND_IGNORE_EXISTING_KEY, 0, key, guard=not rejoin
        )
        if rejoin:
            self.preempted = False

    async def register_new(self, key: int, old: int = 0) -> None:
        """REGISTER: replace registration ``old`` (0: none) by ``key``.

        Raises:
            ReservationConflictError: ``old`` is not this path's key.
            TransportError: see :meth:`send`.
        """
        await self._out(PrOut.REGISTER, old, key)

    async def unregister(self, key: int) -> None:
        """Remove this path's registration of ``key``.

        Raises:
            ReservationConflictError: ``key`` is not registered here.
            TransportError: see :meth:`send`.
        """
        await self._out(PrOut.REGISTER, key, 0)

    async def reserve(self, key: int, rtype: ReservationType) -> None:
        """RESERVE with this path's ``key``.

        Raises:
            ReservationConflictError: another reservation exists, or the
                key is not registered here.
            TransportError: see :meth:`send`.
        """
        await self._out(PrOut.RESERVE, key, rtype=rtype)

    async def release(self, key: int, rtype: ReservationType) -> None:
        """RELEASE the reservation this path holds.

        Raises:
            TransportError: see :meth:`send`.
        """
        await self._out(PrOut.RELEASE, key, rtype=rtype)

    async def clear(self, key: int) -> None:
        """CLEAR every registration and the reservation.

        Raises:
            TransportError: see :meth:`send`.
        """
        await self._out(PrOut.CLEAR, key)

    async def preempt(
        self,
        key: int,
        victim: int,
        rtype: ReservationType,
        *,
        abort: bool = True,
    ) -> bool:
        """Remove ``victim``'s registrations, taking its reservation.

        PREEMPT AND ABORT also aborts the victim's queued commands (SPC-4
        5.12.11.2.6), so none of its writes lands after the fence. When
        the target does not support it, PREEMPT is sent instead and the
        fallback is logged.

        Returns:
            Whether the commands were aborted (PREEMPT AND ABORT used).

        Raises:
            ReservationConflictError: ``key`` is not registered here, or
                ``victim`` matches no registration.
            FenceError: this path's own registration was preempted.
            TransportError: see :meth:`send`.
        """
        if abort and self.abort_supported:
            try:
                await self._out(
                    PrOut.PREEMPT_AND_ABORT, key, victim, rtype, guard=True
                )
                return True
            except spc.IllegalRequestError as exc:
                self.abort_supported = False
                get_logger(__name__).warning(
                    "scsi_preempt_fallback",
                    device=self.device,
                    reason=str(exc),
                    using="PREEMPT",
                )
        await self._out(PrOut.PREEMPT, key, victim, rtype, guard=True)
        return False


def _preempted(exc: spc.ScsiError) -> bool:
    sense = exc.sense
    return (
        isinstance(exc, spc.UnitAttentionError)
        and sense is not None
        and sense.asc == spc.ASC_RESERVATIONS
        and sense.ascq
        in (spc.ASCQ_RESERVATIONS_PREEMPTED, spc.ASCQ_REGISTRATIONS_PREEMPTED)
    )


def _fenced(device: str) -> FenceError:
    return FenceError(
        f"{device}: this node's own registration was preempted (it has"
        " been fenced); it must be unfenced before it fences others",
        device=device,
        action="fence",
    )


def _log_retry(device: str, what: str, exc: Exception, attempt: int) -> None:
    get_logger(__name__).warning(
        "scsi_retry", device=device, command=what, attempt=attempt,
        reason=str(exc),
    )  # fmt: skip
