"""SCSI persistent reservations (SPC-4), on the wire.

Command descriptor blocks (CDBs) and parameter data for PERSISTENT
RESERVE IN and OUT, parsers for what the target sends back, and the
mapping of SCSI status and sense data to fencekit errors. Nothing here
does I/O; every parser raises only :class:`~fencekit.errors.ProtocolError`
on data it cannot read.

Errors a SCSI command can end in (see :func:`check`)::

    ProtocolError
    └── ScsiError                  status or sense we cannot go past
        ├── ReservationConflictError   RESERVATION CONFLICT status
        ├── UnitAttentionError         sense key UNIT ATTENTION (transient)
        └── NotReadyError              sense key NOT READY
    UnsupportedError
    └── IllegalRequestError        sense key ILLEGAL REQUEST
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import Final

from fencekit.errors import ProtocolError, UnsupportedError

__all__ = [
    "Capabilities",
    "CommandResult",
    "FullStatusEntry",
    "IllegalRequestError",
    "NotReadyError",
    "PrIn",
    "PrOut",
    "Registrations",
    "Reservation",
    "ReservationConflictError",
    "ReservationType",
    "ScsiError",
    "Sense",
    "SenseKey",
    "Status",
    "UnitAttentionError",
    "check",
    "parse_capabilities",
    "parse_full_status",
    "parse_read_keys",
    "parse_read_reservation",
    "parse_sense",
    "pr_in_cdb",
    "pr_out_cdb",
    "pr_out_parameters",
    "read10_cdb",
    "write10_cdb",
]

PERSISTENT_RESERVE_IN: Final = 0x5E
PERSISTENT_RESERVE_OUT: Final = 0x5F
PR_OUT_PARAMETER_LENGTH: Final = 24
MAX_ALLOCATION: Final = 0xFFFF
MAX_KEY: Final = 0xFFFF_FFFF_FFFF_FFFF


class Status(enum.IntEnum):
    """SCSI status codes (SAM-5 5.3.1)."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    CONDITION_MET = 0x04
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    ACA_ACTIVE = 0x30
    TASK_ABORTED = 0x40


class SenseKey(enum.IntEnum):
    """Sense keys (SPC-4 4.5.6, table 48)."""

    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8
    VENDOR_SPECIFIC = 0x9
    COPY_ABORTED = 0xA
    ABORTED_COMMAND = 0xB
    RESERVED_C = 0xC
    VOLUME_OVERFLOW = 0xD
    MISCOMPARE = 0xE
    COMPLETED = 0xF


class PrIn(enum.IntEnum):
    """PERSISTENT RESERVE IN service actions (SPC-4 6.15.1)."""

    READ_KEYS = 0x00
    READ_RESERVATION = 0x01
    REPORT_CAPABILITIES = 0x02
    READ_FULL_STATUS = 0x03


class PrOut(enum.IntEnum):
    """PERSISTENT RESERVE OUT service actions (SPC-4 6.16.2)."""

    REGISTER = 0x00
    RESERVE = 0x01
    RELEASE = 0x02
    CLEAR = 0x03
    PREEMPT = 0x04
    PREEMPT_AND_ABORT = 0x05
    REGISTER_AND_IGNORE_EXISTING_KEY = 0x06
    REGISTER_AND_MOVE = 0x07


class ReservationType(enum.IntEnum):
    """Persistent reservation types (SPC-4 6.15.3.4, table 173)."""

    WRITE_EXCLUSIVE = 0x1
    EXCLUSIVE_ACCESS = 0x3
    WRITE_EXCLUSIVE_REGISTRANTS_ONLY = 0x5
    EXCLUSIVE_ACCESS_REGISTRANTS_ONLY = 0x6
    WRITE_EXCLUSIVE_ALL_REGISTRANTS = 0x7
    EXCLUSIVE_ACCESS_ALL_REGISTRANTS = 0x8

    @property
    def all_registrants(self) -> bool:
        """Whether every registrant holds the reservation (key 0)."""
        return self in (
            ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
            ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
        )

    @classmethod
    def parse(cls, text: str) -> ReservationType:
        """The type named by ``text`` (``wero``, ``5``, or its name).

        Raises:
            ValueError: ``text`` names no reservation type.
        """
        short = {
            "we": cls.WRITE_EXCLUSIVE,
            "ea": cls.EXCLUSIVE_ACCESS,
            "wero": cls.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
            "earo": cls.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY,
            "wear": cls.WRITE_EXCLUSIVE_ALL_REGISTRANTS,
            "eaar": cls.EXCLUSIVE_ACCESS_ALL_REGISTRANTS,
        }
        word = text.strip().lower().replace("-", "_")
        if word in short:
            return short[word]
        if word.isdigit() and int(word) in {t.value for t in cls}:
            return cls(int(word))
        for member in cls:
            if member.name.lower() == word:
                return member
        names = ", ".join(short)
        raise ValueError(f"unknown reservation type {text!r} ({names})")


# Additional sense codes fencekit acts on (SPC-4 annex D).
ASC_INVALID_OPCODE: Final = 0x20
ASC_INVALID_FIELD_IN_CDB: Final = 0x24
ASC_INVALID_FIELD_IN_PARAMETERS: Final = 0x26
ASC_RESERVATIONS: Final = 0x2A
ASCQ_RESERVATIONS_PREEMPTED: Final = 0x03
ASCQ_RESERVATIONS_RELEASED: Final = 0x04
ASCQ_REGISTRATIONS_PREEMPTED: Final = 0x05
ASC_NOT_READY: Final = 0x04
ASCQ_BECOMING_READY: Final = 0x01


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """What a transport got back for one command.

    Attributes:
        status: the SCSI status byte.
        data: the data-in bytes actually transferred.
        sense: the sense data, empty when there was none.
    """

    status: int
    data: bytes = b""
    sense: bytes = b""


@dataclasses.dataclass(frozen=True)
class Sense:
    """Sense data in either format (SPC-4 4.5).

    Attributes:
        key: the sense key.
        asc: the additional sense code.
        ascq: its qualifier.
        descriptor: whether it came in descriptor format.
        deferred: whether it reports an earlier command's error.
    """

    key: SenseKey
    asc: int = 0
    ascq: int = 0
    descriptor: bool = False
    deferred: bool = False

    def __str__(self) -> str:
        name = self.key.name.replace("_", " ")
        return f"{name}, ASC/ASCQ {self.asc:02X}h/{self.ascq:02X}h"


def parse_sense(data: bytes) -> Sense:
    """Parse fixed (70h/71h) or descriptor (72h/73h) sense data.

    Raises:
        ProtocolError: too short, or an unknown response code.
    """
    if len(data) < 2:
        raise ProtocolError(f"sense data too short ({len(data)} bytes)")
    code = data[0] & 0x7F
    if code in (0x72, 0x73):
        # SPC-4 4.5.2: key, ASC and ASCQ in bytes 1 to 3.
        padded = data[:4].ljust(4, b"\0")
        return Sense(
            key=SenseKey(padded[1] & 0x0F),
            asc=padded[2],
            ascq=padded[3],
            descriptor=True,
            deferred=code == 0x73,
        )
    if code in (0x70, 0x71):
        if len(data) < 3:
            raise ProtocolError("fixed sense data without a sense key")
        # SPC-4 4.5.3: ASC and ASCQ at bytes 12 and 13, when the
        # additional length (byte 7) reaches them.
        extra = data[7] if len(data) > 7 else 0
        usable = min(len(data), 8 + extra)
        return Sense(
            key=SenseKey(data[2] & 0x0F),
            asc=data[12] if usable > 12 else 0,
            ascq=data[13] if usable > 13 else 0,
            deferred=code == 0x71,
        )
    raise ProtocolError(f"unknown sense response code {code:02X}h")


class ScsiError(ProtocolError):
    """A SCSI command ended in a status or sense we cannot go past.

    Attributes:
        status: the SCSI status byte.
        sense: the parsed sense data, when there was any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        sense: Sense | None = None,
        transient: bool = False,
        device: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(
            message,
            code=status,
            transient=transient,
            device=device,
            action=action,
        )
        self.status = status
        self.sense = sense


class ReservationConflictError(ScsiError):
    """RESERVATION CONFLICT: a reservation or registration forbids it."""


class UnitAttentionError(ScsiError):
    """UNIT ATTENTION: an event to report first; the command may be
    repeated (SAM-5 5.14)."""


class NotReadyError(ScsiError):
    """NOT READY: the logical unit cannot take commands now."""


class IllegalRequestError(UnsupportedError):
    """ILLEGAL REQUEST: the target does not support the command as sent.

    Attributes:
        sense: the parsed sense data.
    """

    def __init__(
        self,
        message: str,
        *,
        sense: Sense,
        device: str | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, device=device, action=action)
        self.sense = sense


def check(
    result: CommandResult, *, what: str, device: str | None = None
) -> None:
    """Raise the error ``result`` stands for; return if it succeeded.

    Args:
        result: the transport's result.
        what: the command, for messages (``READ KEYS``).
        device: the device, for messages and the error's attribute.

    Raises:
        ReservationConflictError: RESERVATION CONFLICT status.
        UnitAttentionError: a unit attention; repeat the command.
        NotReadyError: the logical unit is not ready.
        IllegalRequestError: the target does not support the command.
        ScsiError: any other error status or sense.
        ProtocolError: unreadable sense data.
    """
    status = result.status
    where = f"{device}: " if device else ""
    if status in (Status.GOOD, Status.CONDITION_MET):
        return
    if status == Status.RESERVATION_CONFLICT:
        raise ReservationConflictError(
            f"{where}{what}: reservation conflict",
            status=status,
            device=device,
            action=what,
        )
    if status in (Status.BUSY, Status.TASK_SET_FULL):
        raise ScsiError(
            f"{where}{what}: target busy (status {status:02X}h)",
            status=status,
            transient=True,
            device=device,
            action=what,
        )
    if status != Status.CHECK_CONDITION:
        raise ScsiError(
            f"{where}{what}: SCSI status {status:02X}h",
            status=status,
            device=device,
            action=what,
        )
    _check_sense(result, what, where, device)


def _check_sense(
    result: CommandResult, what: str, where: str, device: str | None
) -> None:
    if not result.sense:
        raise ScsiError(
            f"{where}{what}: CHECK CONDITION without sense data",
            status=result.status,
            device=device,
            action=what,
        )
    sense = parse_sense(result.sense)
    text = f"{where}{what}: {sense}"
    if sense.key == SenseKey.RECOVERED_ERROR:
        return
    if sense.key == SenseKey.ILLEGAL_REQUEST:
        raise IllegalRequestError(
            f"{text} (not supported by the target)",
            sense=sense,
            device=device,
            action=what,
        )
    kind: type[ScsiError] = ScsiError
    transient = sense.key == SenseKey.NO_SENSE
    if sense.key == SenseKey.UNIT_ATTENTION:
        kind, transient = UnitAttentionError, True
    elif sense.key == SenseKey.NOT_READY:
        kind = NotReadyError
        transient = (sense.asc, sense.ascq) == (
            ASC_NOT_READY,
            ASCQ_BECOMING_READY,
        )
    raise kind(
        text,
        status=result.status,
        sense=sense,
        transient=transient,
        device=device,
        action=what,
    )


def pr_in_cdb(action: PrIn, allocation: int) -> bytes:
    """A PERSISTENT RESERVE IN CDB (SPC-4 6.15.1, 10 bytes).

    Raises:
        ValueError: ``allocation`` is not 0 to 65535.
    """
    if not 0 <= allocation <= MAX_ALLOCATION:
        raise ValueError(f"allocation length out of range: {allocation}")
    return struct.pack(">BB5xHB", PERSISTENT_RESERVE_IN, action, allocation, 0)


def pr_out_cdb(action: PrOut, rtype: ReservationType | None = None) -> bytes:
    """A PERSISTENT RESERVE OUT CDB (SPC-4 6.16.1, 10 bytes).

    The scope is always LU_SCOPE (0); ``rtype`` matters only to RESERVE,
    RELEASE, PREEMPT and PREEMPT AND ABORT.
    """
    scope_type = int(rtype) if rtype is not None else 0
    return struct.pack(
        ">BBB2xIB",
        PERSISTENT_RESERVE_OUT,
        action,
        scope_type,
        PR_OUT_PARAMETER_LENGTH,
        0,
    )


def pr_out_parameters(
    key: int, service_key: int = 0, *, all_target_ports: bool = False
) -> bytes:
    """The 24-byte PERSISTENT RESERVE OUT parameter list (SPC-4 6.16.3).

    APTPL is never set: a reservation that survives a power loss of the
    array would keep a rebuilt cluster off its own disks.

    Raises:
        ValueError: a key is not a 64-bit unsigned value.
    """
    for value in (key, service_key):
        if not 0 <= value <= MAX_KEY:
            raise ValueError(f"key out of 64-bit range: {value:#x}")
    flags = 0x04 if all_target_ports else 0x00
    return struct.pack(">QQ4xB3x", key, service_key, flags)


def read10_cdb(lba: int, blocks: int) -> bytes:
    """A READ(10) CDB (SBC-3 5.11), to probe access to the medium."""
    return struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0)


def write10_cdb(lba: int, blocks: int) -> bytes:
    """A WRITE(10) CDB (SBC-3 5.32), to prove writes are refused."""
    return struct.pack(">BBIBHB", 0x2A, 0, lba, 0, blocks, 0)


@dataclasses.dataclass(frozen=True)
class Registrations:
    """READ KEYS parameter data (SPC-4 6.15.2).

    Attributes:
        generation: the PRgeneration counter.
        keys: every registered key, one entry per registered I_T nexus.
        truncated: the target had more keys than the allocation length
            let it send; ask again with a larger one.
        needed: the allocation length that holds them all.
    """

    generation: int
    keys: tuple[int, ...]
    truncated: bool = False
    needed: int = 0

    def count(self, key: int) -> int:
        """How many I_T nexuses registered ``key``."""
        return self.keys.count(key)


def parse_read_keys(data: bytes) -> Registrations:
    """Parse READ KEYS parameter data.

    Raises:
        ProtocolError: the header is short or the list is not whole keys.
    """
    generation, length = _header(data, "READ KEYS")
    if length % 8:
        raise ProtocolError(
            f"READ KEYS: additional length {length} is not a multiple of 8"
        )
    body = data[8 : 8 + length]
    whole = len(body) - len(body) % 8
    keys = struct.unpack(f">{whole // 8}Q", body[:whole])
    return Registrations(
        generation=generation,
        keys=tuple(keys),
        truncated=whole < length,
        needed=8 + length,
    )


@dataclasses.dataclass(frozen=True)
class Reservation:
    """READ RESERVATION parameter data (SPC-4 6.15.3).

    Attributes:
        generation: the PRgeneration counter.
        key: the holder's key; None when nothing is reserved (0 for the
            "all registrants" types, where every registrant holds it).
        type: the reservation type, None when nothing is reserved.
    """

    generation: int
    key: int | None = None
    type: ReservationType | None = None

    @property
    def held(self) -> bool:
        """Whether a reservation exists."""
        return self.type is not None


def parse_read_reservation(data: bytes) -> Reservation:
    """Parse READ RESERVATION parameter data.

    Raises:
        ProtocolError: short data, or an unknown reservation type.
    """
    generation, length = _header(data, "READ RESERVATION")
    if length == 0:
        return Reservation(generation)
    if length < 16 or len(data) < 24:
        raise ProtocolError(
            f"READ RESERVATION: descriptor too short ({len(data)} bytes)"
        )
    (key,) = struct.unpack_from(">Q", data, 8)
    return Reservation(generation, key, _type(data[21] & 0x0F))


def _type(code: int) -> ReservationType:
    try:
        return ReservationType(code)
    except ValueError:
        raise ProtocolError(
            f"unknown persistent reservation type {code:X}h"
        ) from None


def _header(data: bytes, what: str) -> tuple[int, int]:
    if len(data) < 8:
        raise ProtocolError(f"{what}: header too short ({len(data)} bytes)")
    generation, length = struct.unpack_from(">II", data, 0)
    return generation, length


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """REPORT CAPABILITIES parameter data (SPC-4 6.15.4).

    Attributes:
        compatible_reservation_handling: CRH.
        specify_initiator_ports: SIP_C.
        all_target_ports: ATP_C.
        persist_through_power_loss: PTPL_C.
        type_mask_valid: TMV; ``types`` means something only when set.
        allow_commands: the ALLOW COMMANDS field.
        types: the reservation types the target supports.
    """

    compatible_reservation_handling: bool
    specify_initiator_ports: bool
    all_target_ports: bool
    persist_through_power_loss: bool
    type_mask_valid: bool
    allow_commands: int
    types: frozenset[ReservationType]


# SPC-4 table 180: persistent reservation type mask, bytes 4 and 5.
_TYPE_MASK: Final = (
    (4, 0x80, ReservationType.WRITE_EXCLUSIVE_ALL_REGISTRANTS),
    (4, 0x40, ReservationType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY),
    (4, 0x20, ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
    (4, 0x08, ReservationType.EXCLUSIVE_ACCESS),
    (4, 0x02, ReservationType.WRITE_EXCLUSIVE),
    (5, 0x01, ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),
)


def parse_capabilities(data: bytes) -> Capabilities:
    """Parse REPORT CAPABILITIES parameter data.

    Raises:
        ProtocolError: fewer than the 8 bytes the format has.
    """
    if len(data) < 8:
        raise ProtocolError(
            f"REPORT CAPABILITIES: too short ({len(data)} bytes)"
        )
    types = frozenset(t for i, bit, t in _TYPE_MASK if data[i] & bit)
    return Capabilities(
        compatible_reservation_handling=bool(data[2] & 0x10),
        specify_initiator_ports=bool(data[2] & 0x08),
        all_target_ports=bool(data[2] & 0x04),
        persist_through_power_loss=bool(data[2] & 0x01),
        type_mask_valid=bool(data[3] & 0x80),
        allow_commands=(data[3] >> 4) & 0x07,
        types=types,
    )


@dataclasses.dataclass(frozen=True)
class FullStatusEntry:
    """One READ FULL STATUS descriptor (SPC-4 6.15.5).

    Attributes:
        key: the registered key.
        holder: whether this I_T nexus holds the reservation.
        all_target_ports: ALL_TG_PT.
        type: the reservation type, when ``holder``.
        relative_target_port: the target port's relative identifier.
        transport_id: the initiator's TransportID, as text for iSCSI
            names and hexadecimal otherwise.
    """

    key: int
    holder: bool
    all_target_ports: bool
    type: ReservationType | None
    relative_target_port: int
    transport_id: str


def parse_full_status(data: bytes) -> tuple[int, tuple[FullStatusEntry, ...]]:
    """Parse READ FULL STATUS parameter data.

    Returns:
        The PRgeneration and every descriptor that arrived whole.

    Raises:
        ProtocolError: a header or descriptor is malformed.
    """
    generation, length = _header(data, "READ FULL STATUS")
    body = data[8 : 8 + length]
    entries: list[FullStatusEntry] = []
    offset = 0
    while offset + 24 <= len(body):
        (key,) = struct.unpack_from(">Q", body, offset)
        flags, scope_type = body[offset + 12], body[offset + 13]
        (port,) = struct.unpack_from(">H", body, offset + 18)
        (id_length,) = struct.unpack_from(">I", body, offset + 20)
        end = offset + 24 + id_length
        if end > len(body):
            break
        holder = bool(flags & 0x01)
        entries.append(
            FullStatusEntry(
                key=key,
                holder=holder,
                all_target_ports=bool(flags & 0x02),
                type=_type(scope_type & 0x0F) if holder else None,
                relative_target_port=port,
                transport_id=_transport_id(body[offset + 24 : end]),
            )
        )
        offset = end
    return generation, tuple(entries)


def _transport_id(data: bytes) -> str:
    # SPC-4 7.6.4.6: protocol identifier 5h is iSCSI, whose TransportID
    # carries the initiator's name (and ISID) as text from byte 4.
    if len(data) >= 4 and data[0] & 0x0F == 0x5:
        text = data[4:].split(b"\0", 1)[0]
        return text.decode("utf-8", errors="replace")
    return data.hex()
