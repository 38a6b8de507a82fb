"""Hostile SCSI data: sense data, PERSISTENT RESERVE IN parameter data.

A target (or a broken path) can answer anything. Every parser returns a
value or raises a :class:`~fencekit.errors.FencekitError`; ``check``
turns any status and sense bytes into success or a fencekit error. The
inputs are any bytes, and well-formed headers with hostile lengths and
bodies, so that the parsers' length checks are reached.
"""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given
from hypothesis import strategies as st

from fencekit.errors import FencekitError
from fencekit.storage import spc
from fencekit.storage.keys import format_key, parse_key
from tests.fuzz.budget import FUZZ

PARSERS = (
    spc.parse_sense,
    spc.parse_read_keys,
    spc.parse_read_reservation,
    spc.parse_capabilities,
    spc.parse_full_status,
)


def _headed() -> st.SearchStrategy[bytes]:
    """PR IN data: generation, a length that may lie, a body."""
    return st.builds(
        lambda gen, length, body: struct.pack(">II", gen, length) + body,
        st.integers(min_value=0, max_value=2**32 - 1),
        st.one_of(
            st.integers(min_value=0, max_value=64),
            st.integers(min_value=0, max_value=2**32 - 1),
        ),
        st.binary(max_size=120),
    )


def _sense() -> st.SearchStrategy[bytes]:
    """Sense data with a real response code and any rest."""
    return st.builds(
        lambda code, rest: bytes([code]) + rest,
        st.sampled_from([0x70, 0x71, 0x72, 0x73, 0xF0, 0xF2, 0x00, 0x7F]),
        st.binary(max_size=40),
    )


DATA = st.one_of(st.binary(max_size=200), _headed(), _sense())


@FUZZ
@given(data=DATA)
def test_parsers_return_or_raise_fencekit_errors(data: bytes) -> None:
    """Any bytes: a parsed value or a FencekitError, for every parser."""
    for parse in PARSERS:
        with contextlib.suppress(FencekitError):
            parse(data)


@FUZZ
@given(
    status=st.one_of(
        st.sampled_from([0x00, 0x02, 0x08, 0x18, 0x28, 0x40]),
        st.integers(min_value=0, max_value=255),
    ),
    data=st.binary(max_size=32),
    sense=st.one_of(st.binary(max_size=40), _sense()),
)
def test_check_maps_any_status_and_sense(
    status: int, data: bytes, sense: bytes
) -> None:
    """Any status and sense: success only for a completed command."""
    result = spc.CommandResult(status=status, data=data, sense=sense)
    try:
        spc.check(result, what="PERSISTENT RESERVE IN", device="fuzz")
    except FencekitError:
        return
    # SAM-5 5.3.1: CONDITION MET is a success status too; SPC-4 4.5.6:
    # RECOVERED ERROR means the command completed.
    if status == spc.Status.CHECK_CONDITION:
        key = spc.parse_sense(sense).key
        assert key == spc.SenseKey.RECOVERED_ERROR, (status, sense)
    else:
        assert status in (spc.Status.GOOD, spc.Status.CONDITION_MET), status


@FUZZ
@given(text=st.text(max_size=24))
def test_keys_parse_or_refuse(text: str) -> None:
    """Any key text: a key that formats back, or a fencekit error."""
    try:
        key = parse_key(text)
    except FencekitError:
        return
    assert 0 < key < 2**64
    assert parse_key(format_key(key)) == key
