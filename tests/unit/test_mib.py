"""FENCEKIT-MIB: smilint finds nothing, and the code agrees with it."""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

from fencekit import notify
from fencekit.outcome import Action, FenceOutcome, PowerState
from tests.support import peers

ROOT = Path(__file__).resolve().parents[2]
MIB = ROOT / "mibs" / "FENCEKIT-MIB"
STUBS = ROOT / "tests" / "support" / "snmp" / "mib-stubs"


@pytest.fixture(scope="module")
def mib() -> dict[str, Any]:
    """FENCEKIT-MIB compiled by pysmi into its JSON form."""
    with warnings.catch_warnings():
        # pysmi 2 deprecates camelCase names that its own modules still
        # use on import.
        warnings.simplefilter("ignore", DeprecationWarning)
        from pysmi.codegen import JsonCodeGen
        from pysmi.compiler import MibCompiler
        from pysmi.parser import SmiStarParser
        from pysmi.reader import FileReader
        from pysmi.searcher import StubSearcher
        from pysmi.writer import CallbackWriter

        out: dict[str, str] = {}

        def keep(name: str, data: str, _ctx: object) -> None:
            out[name] = data

        compiler = MibCompiler(
            SmiStarParser(), JsonCodeGen(), CallbackWriter(keep)
        )
        compiler.add_sources(
            FileReader(str(MIB.parent)), FileReader(str(STUBS))
        )
        compiler.add_searchers(StubSearcher(*JsonCodeGen.baseMibs))
        status = compiler.compile("FENCEKIT-MIB", noDeps=True)
    assert status["FENCEKIT-MIB"] == "compiled", status
    compiled: dict[str, Any] = json.loads(out["FENCEKIT-MIB"])
    return compiled


def _samples() -> list[notify.Notification]:
    """Every notification the code can send, with edge values."""
    long_text = "é" * 400 + "\x00\n"
    outcome = FenceOutcome(
        node="node-b",
        device="10.0.0.12",
        method="ipmi",
        action=Action.REBOOT,
        verified=True,
        state=PowerState.ON,
        duration=1e9,
    )
    samples = [
        notify.from_outcome(outcome),
        notify.check_down("web", None, long_text),
        notify.check_up("web", "node-a"),
        notify.device_unreachable("node-b", "pdu-1", "snmp-pdu", long_text),
    ]
    for action in Action:
        samples.append(notify.node_fenced("n", "d", "m", action, 0.0))
        samples.append(notify.fence_failed("n", "d", "m", action, -1, "x"))
    return samples


def test_smilint_reports_nothing_at_level_9() -> None:
    """smilint -l 9 prints nothing (its exit code is always 0)."""
    smilint = peers.require("smilint")

    done = subprocess.run(
        [smilint, "-s", "-l", "9", str(MIB)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SMIPATH": str(STUBS)},
    )

    assert done.stdout + done.stderr == ""


def test_smilint_output_check_catches_a_broken_mib(tmp_path: Path) -> None:
    """smilint does print a finding for a broken copy of the MIB."""
    smilint = peers.require("smilint")
    broken = tmp_path / "FENCEKIT-MIB"
    broken.write_text(
        MIB.read_text().replace(
            "{ fencekitObjects 1 }", "{ fencekitObjects }", 1
        )
    )

    done = subprocess.run(
        [smilint, "-s", "-l", "9", str(broken)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "SMIPATH": str(STUBS)},
    )

    assert "FENCEKIT-MIB:" in done.stdout + done.stderr


def test_code_and_mib_list_the_same_notifications(mib: dict[str, Any]) -> None:
    """Every NOTIFICATION-TYPE in the MIB is in the code, and back."""
    in_mib = {
        name
        for name, item in mib.items()
        if isinstance(item, dict) and item.get("class") == "notificationtype"
    }

    assert in_mib == set(notify.NOTIFICATIONS)


def test_each_notification_oid_and_objects_match(mib: dict[str, Any]) -> None:
    """Each notification's OID and its objects, in order, are the MIB's."""
    for name, (number, objects) in notify.NOTIFICATIONS.items():
        entry = mib[name]
        assert entry["oid"] == f"{notify.DEFAULT_MIB_ROOT}.0.{number}"
        assert tuple(o["object"] for o in entry["objects"]) == objects
        assert all(o["module"] == "FENCEKIT-MIB" for o in entry["objects"])


def test_each_object_oid_and_access_match(mib: dict[str, Any]) -> None:
    """Each object's OID is the code's and it is accessible-for-notify."""
    for name, (number, _kind) in notify.OBJECTS.items():
        entry = mib[name]
        assert entry["oid"] == f"{notify.DEFAULT_MIB_ROOT}.1.{number}"
        assert entry["maxaccess"] == "accessible-for-notify"
        assert entry["nodetype"] == "scalar"


def test_enumerations_match(mib: dict[str, Any]) -> None:
    """The action and check-state values are the MIB's enumerations."""
    actions = mib["FencekitActionType"]["type"]["constraints"]["enumeration"]
    states = mib["FencekitCheckStateType"]["type"]["constraints"][
        "enumeration"
    ]

    assert actions == {a.value: v for a, v in notify.ACTION_VALUES.items()}
    assert states == dict(notify.CHECK_STATE_VALUES)


def _check_value(mib: dict[str, Any], name: str, oid: str, value: Any) -> None:
    """One var-bind against the object's syntax in the MIB."""
    from pysnmp.proto import rfc1902

    entry = mib[name]
    assert oid == entry["oid"] + ".0"
    syntax = entry["syntax"]["type"]
    if syntax == "DisplayString":
        assert isinstance(value, rfc1902.OctetString)
        raw = bytes(value)
        assert len(raw) <= 255
        assert all(32 <= b < 127 or b in (9, 10, 13) for b in raw)
    elif syntax == "Unsigned32":
        assert isinstance(value, rfc1902.Unsigned32)
        assert 0 <= int(value) <= 2**32 - 1
    else:
        enum = mib[syntax]["type"]["constraints"]["enumeration"]
        assert isinstance(value, rfc1902.Integer)
        assert int(value) in enum.values()


def test_every_sendable_notification_fits_the_mib(
    mib: dict[str, Any],
) -> None:
    """Every notification's var-binds match the MIB's objects and syntax."""
    by_oid = {
        item["oid"]: name
        for name, item in mib.items()
        if isinstance(item, dict) and "oid" in item
    }

    for sample in _samples():
        binds = sample.var_binds()
        trap_oid, identity = binds[0]
        assert trap_oid == "1.3.6.1.6.3.1.1.4.1.0"
        assert by_oid[str(identity)] == sample.name
        names = [by_oid[oid.removesuffix(".0")] for oid, _ in binds[1:]]
        assert tuple(names) == notify.NOTIFICATIONS[sample.name][1]
        for (oid, value), name in zip(binds[1:], names, strict=True):
            _check_value(mib, name, oid, value)


def test_from_journal_records_fit_the_mib(mib: dict[str, Any]) -> None:
    """Notifications made from fencer journal records fit the MIB too."""
    records = [
        {
            "event": "outcome",
            "node": "b",
            "action": "off",
            "success": True,
            "device": "bmc-b",
            "method": "ipmi",
            "duration": 0.5,
        },
        {
            "event": "outcome",
            "node": "b",
            "action": "reboot",
            "success": False,
            "device": "",
            "method": "",
            "duration": 3,
            "reason": "every fence level failed",
        },
        {
            "event": "attempt",
            "node": "b",
            "action": "off",
            "address": "10.0.0.9",
            "method": "ipmi",
            "error": "UnreachableError",
            "reason": "no answer",
        },
    ]

    made = [notify._from_record(r) for r in records]

    assert [n.name for n in made if n] == [
        "fencekitNodeFenced",
        "fencekitFenceFailed",
        "fencekitDeviceUnreachable",
    ]
    for sample in made:
        assert sample is not None
        for oid, value in sample.var_binds()[1:]:
            name = next(
                n
                for n, (num, _) in notify.OBJECTS.items()
                if oid == f"{notify.DEFAULT_MIB_ROOT}.1.{num}.0"
            )
            _check_value(mib, name, oid, value)
