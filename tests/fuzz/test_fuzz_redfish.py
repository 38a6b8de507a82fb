"""Hostile Redfish JSON: the parsers, and the driver over HTTPS.

The parsers get any JSON object, with the members the driver looks for
mixed in at random types. The driver reads a fault service whose system
document, reset answer and task are fuzzed: every read ends in a power
state or a fencekit error, and ``off`` is never verified unless the
document said ``Off``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fencekit.errors import FencekitError
from fencekit.outcome import Action, PowerState
from fencekit.power import redfish
from fencekit.power.operate import Verification, attempt
from fencekit.secrets import Secret
from tests.fuzz.budget import FUZZ
from tests.support.redfish import FaultyRedfish, Pki

KEYS = [
    "@odata.id",
    "PowerState",
    "Actions",
    "#ComputerSystem.Reset",
    "target",
    "ResetType@Redfish.AllowableValues",
    "@Redfish.ActionInfo",
    "Members",
    "Links",
    "Sessions",
    "SessionService",
    "Systems",
    "Oem",
    "ts_fujitsu",
    "Vendor",
    "Parameters",
    "Name",
    "AllowableValues",
    "error",
    "message",
    "@Message.ExtendedInfo",
    "Message",
    "MessageId",
    "TaskState",
    "TaskStatus",
    "Messages",
    "Id",
    "UUID",
    "SerialNumber",
]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(["On", "Off", "PoweringOn", "PoweringOff", "", "/x"]),
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=8)),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=25,
)
DOCS = st.dictionaries(
    st.one_of(st.sampled_from(KEYS), st.text(max_size=8)), JSON, max_size=8
)


@FUZZ
@given(doc=DOCS, anything=JSON)
def test_parsers_return_or_raise_fencekit_errors(
    doc: dict[str, Any], anything: Any
) -> None:
    """Every parser returns a value or raises a FencekitError."""
    for parse in (
        redfish.parse_service_root,
        redfish.parse_members,
        redfish.parse_system,
        redfish.parse_action_info,
        redfish.parse_task,
    ):
        with contextlib.suppress(FencekitError):
            parse(doc)
    message = redfish.error_message(anything)
    assert message is None or isinstance(message, str)
    allowed = anything if isinstance(anything, list) else None
    strings = [a for a in allowed or [] if isinstance(a, str)]
    for action in Action:
        for listed in (None, strings):
            try:
                chosen = redfish.choose_reset(action, listed)
            except FencekitError:
                continue
            assert listed is None or chosen in listed


class FuzzedRedfish(FaultyRedfish):
    """The fault service, answering fuzzed documents where asked."""

    # A one-tuple holding the document, so that JSON null can be served.
    system_doc: tuple[Any] | None = None
    reset_answer: tuple[int, Any] | None = None

    def _system(self, uri: str) -> tuple[int, dict[str, str], Any]:
        if self.system_doc is None:
            return super()._system(uri)
        return 200, {}, self.system_doc[0]

    def _reset(self, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        if self.reset_answer is None:
            return super()._reset(path, body)
        status, doc = self.reset_answer
        return status, {}, doc


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FuzzedRedfish]:
    """One fuzzed Redfish service for every example of the module."""
    pki = Pki(Path(tmp_path_factory.mktemp("pki")))
    svc = FuzzedRedfish(pki).start()
    try:
        yield svc
    finally:
        svc.stop()


def _driver(svc: FuzzedRedfish) -> redfish.RedfishDriver:
    return redfish.RedfishDriver(
        svc.host,
        port=svc.port,
        username=svc.user,
        password=Secret(svc.password),
        ca_file=svc.pki.ca_file,
        system=f"/redfish/v1/Systems/{svc.system_id}",
    )


def _system_docs() -> st.SearchStrategy[Any]:
    real = st.fixed_dictionaries(
        {"@odata.id": st.just("/redfish/v1/Systems/node1")},
        optional={
            "PowerState": SCALARS,
            "Actions": JSON,
            "Id": SCALARS,
        },
    )
    return st.one_of(real, DOCS, JSON)


@settings(FUZZ, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_system_docs())
def test_driver_reads_fuzzed_system_documents(
    service: FuzzedRedfish, doc: Any
) -> None:
    """A fuzzed system document: a state or a fencekit error, no other."""
    service.system_doc = (doc,)

    async def read() -> PowerState | FencekitError:
        async with _driver(service) as driver:
            try:
                return await driver.read_state(5.0)
            except FencekitError as exc:
                return exc

    result = asyncio.run(read())
    if isinstance(result, PowerState) and result is not PowerState.UNKNOWN:
        assert isinstance(doc, dict)
        assert doc.get("PowerState") == result.value.capitalize()


@settings(
    FUZZ,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    max_examples=max(10, FUZZ.max_examples // 10),
)
@given(
    status=st.sampled_from([200, 201, 202, 204, 400, 404, 409, 500, 503]),
    answer=st.one_of(st.none(), JSON),
)
def test_fuzzed_reset_answers_never_verify_a_system_left_on(
    service: FuzzedRedfish, status: int, answer: Any
) -> None:
    """Any answer to the reset: off is verified only if it happened."""
    service.system_doc = None
    service.behaviour.power = "On"
    service.reset_answer = (status, answer)
    verify = Verification(timeout=0.6, settle=2, interval=0.05)

    async def fence() -> Any:
        async with _driver(service) as driver:
            return await attempt(driver, Action.OFF, verification=verify)

    outcome = asyncio.run(fence())
    service.reset_answer = None
    # The fuzzed answer never carries the reset out: power stays On.
    assert not outcome.success, outcome
    assert outcome.reason
