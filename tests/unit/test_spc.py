"""SPC-4 persistent reservation CDBs, parameter data, sense and status."""

from __future__ import annotations

import struct

import pytest

from fencekit.errors import ProtocolError, UnsupportedError
from fencekit.storage import spc
from fencekit.storage.spc import (
    CommandResult,
    PrIn,
    PrOut,
    ReservationType,
    SenseKey,
)

# Recorded from tgtd (tests/fixtures/scsi/tgtd-fence.json).
TGTD_ILLEGAL = bytes.fromhex("700005000000000a00000000240000000000")
TGTD_PREEMPTED = bytes.fromhex("700006000000000a000000002a0300000000")
TGTD_CAPABILITIES = bytes.fromhex("00080080ea010000")


def test_pr_in_cdb_layout() -> None:
    """Opcode 5Eh, service action, allocation length in bytes 7-8."""
    cdb = spc.pr_in_cdb(PrIn.READ_KEYS, 0x208)

    assert cdb == bytes.fromhex("5e000000000000020800")


def test_pr_in_cdb_refuses_oversized_allocation() -> None:
    """The allocation length field has 16 bits."""
    with pytest.raises(ValueError, match="allocation"):
        spc.pr_in_cdb(PrIn.READ_KEYS, 0x10000)


def test_pr_out_cdb_layout() -> None:
    """Opcode 5Fh, service action, LU scope and type, list length 24."""
    cdb = spc.pr_out_cdb(
        PrOut.PREEMPT_AND_ABORT,
        ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY,
    )

    assert cdb == bytes.fromhex("5f050500000000001800")


def test_pr_out_parameters_layout() -> None:
    """Reservation key, service action key, flags byte 20, no APTPL."""
    data = spc.pr_out_parameters(
        0x0102030405060708, 0xA1, all_target_ports=True
    )

    assert len(data) == 24
    assert struct.unpack(">QQ", data[:16]) == (0x0102030405060708, 0xA1)
    assert data[20] == 0x04


def test_pr_out_parameters_refuse_wide_keys() -> None:
    """A key wider than 64 bits cannot be sent."""
    with pytest.raises(ValueError, match="64-bit"):
        spc.pr_out_parameters(1 << 64)


def test_read_write_cdbs() -> None:
    """READ(10) and WRITE(10): opcode, LBA, transfer length."""
    assert spc.write10_cdb(7, 1) == bytes.fromhex("2a000000000700000100")
    assert spc.read10_cdb(7, 2) == bytes.fromhex("28000000000700000200")


def test_parse_read_keys() -> None:
    """Generation, then one key per registered I_T nexus."""
    data = struct.pack(">IIQQ", 5, 16, 0xA, 0xA)

    keys = spc.parse_read_keys(data)

    assert keys.generation == 5 and keys.keys == (0xA, 0xA)
    assert keys.count(0xA) == 2 and not keys.truncated


def test_parse_read_keys_truncated() -> None:
    """Fewer keys than announced: truncated, with the length needed."""
    data = struct.pack(">IIQ", 1, 24, 0xB)

    keys = spc.parse_read_keys(data)

    assert keys.truncated and keys.needed == 32 and keys.keys == (0xB,)


def test_parse_read_keys_rejects_partial_key_length() -> None:
    """An additional length that is not whole keys is a protocol error."""
    with pytest.raises(ProtocolError, match="multiple of 8"):
        spc.parse_read_keys(struct.pack(">II", 0, 12) + bytes(12))


def test_parse_read_reservation() -> None:
    """Holder key and type from the reservation descriptor."""
    data = struct.pack(">IIQ4xBBH", 3, 16, 0xA1, 0, 0x05, 0)

    reservation = spc.parse_read_reservation(data)

    assert reservation.held and reservation.key == 0xA1
    assert reservation.type is ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY


def test_parse_read_reservation_none() -> None:
    """Additional length 0: nothing is reserved."""
    reservation = spc.parse_read_reservation(struct.pack(">II", 9, 0))

    assert not reservation.held and reservation.key is None


def test_parse_read_reservation_unknown_type() -> None:
    """A reserved type code is a protocol error."""
    data = struct.pack(">IIQ4xBBH", 3, 16, 0xA1, 0, 0x02, 0)

    with pytest.raises(ProtocolError, match="type 2h"):
        spc.parse_read_reservation(data)


def test_parse_capabilities_from_tgtd() -> None:
    """tgtd's REPORT CAPABILITIES: type mask valid, every type."""
    capabilities = spc.parse_capabilities(TGTD_CAPABILITIES)

    assert capabilities.type_mask_valid
    assert capabilities.types == frozenset(ReservationType)
    assert not capabilities.persist_through_power_loss


def test_parse_full_status_with_iscsi_transport_id() -> None:
    """A holder descriptor with an iSCSI initiator name."""
    name = b"iqn.2024-01.io.fencekit:node-a\0\0"
    transport_id = bytes([0x05, 0]) + struct.pack(">H", len(name)) + name
    descriptor = (
        struct.pack(">Q4xBB4xHI", 0xA1, 0x01, 0x05, 1, len(transport_id))
        + transport_id
    )
    data = struct.pack(">II", 7, len(descriptor)) + descriptor

    generation, entries = spc.parse_full_status(data)

    assert generation == 7 and len(entries) == 1
    entry = entries[0]
    assert entry.key == 0xA1 and entry.holder
    assert entry.type is ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY
    assert entry.transport_id == "iqn.2024-01.io.fencekit:node-a"


def test_parse_fixed_sense_from_tgtd() -> None:
    """Fixed format: key in byte 2, ASC and ASCQ in bytes 12-13."""
    sense = spc.parse_sense(TGTD_PREEMPTED)

    assert sense.key is SenseKey.UNIT_ATTENTION
    assert (sense.asc, sense.ascq) == (0x2A, 0x03)
    assert not sense.descriptor and not sense.deferred


def test_parse_descriptor_sense() -> None:
    """Descriptor format: key, ASC, ASCQ in bytes 1-3."""
    sense = spc.parse_sense(bytes.fromhex("720524000000000000"))

    assert sense.key is SenseKey.ILLEGAL_REQUEST
    assert (sense.asc, sense.ascq, sense.descriptor) == (0x24, 0, True)


def test_parse_short_fixed_sense_has_no_asc() -> None:
    """An additional length that stops before byte 12 gives ASC 0."""
    sense = spc.parse_sense(bytes.fromhex("7100020000000004000000002a03"))

    assert sense.deferred and sense.asc == 0 and sense.ascq == 0


def test_parse_unknown_sense_code() -> None:
    """Vendor-specific response codes are not read."""
    with pytest.raises(ProtocolError, match="response code 7Fh"):
        spc.parse_sense(b"\x7f\x00\x00")


def test_check_good_and_recovered() -> None:
    """GOOD, and CHECK CONDITION with RECOVERED ERROR, are successes."""
    spc.check(CommandResult(0), what="X")
    spc.check(CommandResult(2, sense=b"\x70\x00\x01"), what="X")


def test_check_reservation_conflict() -> None:
    """RESERVATION CONFLICT status has its own error."""
    with pytest.raises(spc.ReservationConflictError) as caught:
        spc.check(CommandResult(0x18), what="WRITE(10)", device="/dev/sdb")

    assert caught.value.device == "/dev/sdb"
    assert "WRITE(10): reservation conflict" in str(caught.value)


def test_check_unit_attention_is_transient() -> None:
    """UNIT ATTENTION may be repeated."""
    with pytest.raises(spc.UnitAttentionError) as caught:
        spc.check(CommandResult(2, sense=TGTD_PREEMPTED), what="READ KEYS")

    assert caught.value.transient
    assert "2Ah/03h" in str(caught.value)


def test_check_illegal_request_is_unsupported() -> None:
    """ILLEGAL REQUEST means the target does not support the command."""
    with pytest.raises(UnsupportedError) as caught:
        spc.check(CommandResult(2, sense=TGTD_ILLEGAL), what="PREEMPT")

    assert isinstance(caught.value, spc.IllegalRequestError)
    assert caught.value.sense.asc == 0x24


@pytest.mark.parametrize(
    ("sense", "transient"),
    [("70000200000000060000000004010000", True), ("7000020000000006", False)],
)
def test_check_not_ready(sense: str, transient: bool) -> None:
    """NOT READY is transient only while becoming ready (04h/01h)."""
    with pytest.raises(spc.NotReadyError) as caught:
        spc.check(CommandResult(2, sense=bytes.fromhex(sense)), what="X")

    assert caught.value.transient is transient


def test_check_busy_is_transient() -> None:
    """BUSY may be repeated after a pause."""
    with pytest.raises(spc.ScsiError) as caught:
        spc.check(CommandResult(0x08), what="X")

    assert caught.value.transient


def test_check_condition_without_sense() -> None:
    """CHECK CONDITION without sense data is an error, not a success."""
    with pytest.raises(spc.ScsiError, match="without sense"):
        spc.check(CommandResult(2), what="X")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wero", ReservationType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY),
        ("8", ReservationType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS),
        ("write-exclusive", ReservationType.WRITE_EXCLUSIVE),
    ],
)
def test_reservation_type_parse(text: str, expected: ReservationType) -> None:
    """Short names, numbers and full names name a type."""
    assert ReservationType.parse(text) is expected


def test_reservation_type_parse_rejects_unknown() -> None:
    """An unknown name lists the short names."""
    with pytest.raises(ValueError, match="wero"):
        ReservationType.parse("2")
