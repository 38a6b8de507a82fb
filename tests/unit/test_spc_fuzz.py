"""Fuzzing the SCSI parsers: only fencekit's own errors may escape."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from fencekit.errors import FencekitError
from fencekit.storage import spc
from fencekit.storage.spc import CommandResult

PARSERS = (
    spc.parse_read_keys,
    spc.parse_read_reservation,
    spc.parse_capabilities,
    spc.parse_full_status,
    spc.parse_sense,
)

# Bytes that start like real parameter data, so the fuzzer gets past the
# header checks more often than random bytes would.
headed = st.builds(
    lambda generation, length, body: (
        struct.pack(">II", generation, length) + body
    ),
    st.integers(0, 2**32 - 1),
    st.one_of(st.integers(0, 64), st.integers(0, 2**32 - 1)),
    st.binary(max_size=96),
)
sense_like = st.builds(
    lambda code, body: bytes([code]) + body,
    st.sampled_from([0x70, 0x71, 0x72, 0x73, 0xF0, 0x7F, 0x00]),
    st.binary(max_size=40),
)
payloads = st.one_of(st.binary(max_size=128), headed, sense_like)


@settings(max_examples=400, deadline=None)
@given(payloads)
def test_parsers_raise_only_fencekit_errors(data: bytes) -> None:
    """Every parser returns a value or raises a fencekit error."""
    for parse in PARSERS:
        with contextlib.suppress(FencekitError):
            parse(data)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 255), st.one_of(st.binary(max_size=64), sense_like))
def test_status_and_sense_map_to_fencekit_errors(
    status: int, sense: bytes
) -> None:
    """Any status byte with any sense returns or raises a fencekit error."""
    with contextlib.suppress(FencekitError):
        spc.check(CommandResult(status, sense=sense), what="FUZZ")


@given(st.integers(1, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_pr_out_parameters_round_trip(key: int, service_key: int) -> None:
    """Keys come back out of the parameter list as they went in."""
    data = spc.pr_out_parameters(key, service_key)

    assert struct.unpack(">QQ", data[:16]) == (key, service_key)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=40))
def test_read_keys_round_trip(keys: list[int]) -> None:
    """A READ KEYS list built from keys parses back to the same keys."""
    data = struct.pack(f">II{len(keys)}Q", 1, 8 * len(keys), *keys)

    assert spc.parse_read_keys(data).keys == tuple(keys)
