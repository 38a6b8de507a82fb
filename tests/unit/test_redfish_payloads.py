"""Redfish parsers on recorded payloads of several vendors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fencekit.errors import ConfigError, ProtocolError, UnsupportedError
from fencekit.outcome import Action, PowerState
from fencekit.power.redfish import (
    IRMC,
    RedfishDriver,
    choose_reset,
    error_message,
    parse_action_info,
    parse_members,
    parse_service_root,
    parse_system,
    parse_task,
)
from fencekit.secrets import Secret

FIXTURES = Path(__file__).parent.parent / "fixtures" / "redfish"


def load(name: str) -> Any:
    """One recorded payload."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_dmtf_root_lists_systems_and_sessions() -> None:
    """The DMTF root names Systems and Links.Sessions."""
    root = parse_service_root(load("dmtf_service_root"))

    assert root.systems == "/redfish/v1/Systems"
    assert root.sessions == "/redfish/v1/SessionService/Sessions"
    assert not root.irmc


def test_ilo_root_is_not_irmc() -> None:
    """HPE iLO's root, with its trailing slashes, parses as standard."""
    root = parse_service_root(load("hpe_ilo5_service_root"))

    assert root.systems == "/redfish/v1/Systems/"
    assert root.vendor == "HPE"
    assert not root.irmc


@pytest.mark.parametrize(
    "name", ["fujitsu_irmc_s5_service_root", "fujitsu_irmc_s6_service_root"]
)
def test_irmc_roots_are_detected(name: str) -> None:
    """iRMC S5 (Oem.ts_fujitsu) and S6 (Vendor) are both detected."""
    assert parse_service_root(load(name)).irmc


def test_root_without_links_derives_sessions_from_service() -> None:
    """An older root with only SessionService still offers sessions."""
    doc = load("dmtf_service_root")
    del doc["Links"]

    root = parse_service_root(doc)

    assert root.sessions == "/redfish/v1/SessionService/Sessions"


def test_root_without_sessions() -> None:
    """A root with neither link offers no sessions (Basic only)."""
    root = parse_service_root({"Systems": {"@odata.id": "/redfish/v1/S"}})

    assert root.sessions is None


def test_collection_members() -> None:
    """Members of the Systems collection are read in order."""
    members = parse_members(load("dmtf_systems"))

    assert members == [
        "/redfish/v1/Systems/437XR1138R2",
        "/redfish/v1/Systems/529QB9450R6",
    ]


def test_collection_without_members_is_protocol_error() -> None:
    """A document without Members is not a collection."""
    with pytest.raises(ProtocolError):
        parse_members({"Name": "not a collection"})


@pytest.mark.parametrize(
    ("name", "power", "ident"),
    [
        ("dmtf_system", PowerState.ON, "437XR1138R2"),
        ("hpe_ilo5_system", PowerState.OFF, "1"),
        ("dell_idrac9_system", PowerState.ON, "System.Embedded.1"),
        ("lenovo_xcc_system", PowerState.ON, "1"),
        ("supermicro_system", PowerState.ON, "1"),
        ("fujitsu_irmc_s6_system_on", PowerState.ON, "0"),
        ("fujitsu_irmc_s5_system_off", PowerState.OFF, "0"),
    ],
)
def test_systems_of_each_vendor(
    name: str, power: PowerState, ident: str
) -> None:
    """Each vendor's system gives its id, power and reset target."""
    info = parse_system(load(name))

    assert info.power is power
    assert info.id == ident
    assert info.reset is not None
    assert info.reset.target.endswith("ComputerSystem.Reset") or (
        info.reset.target.endswith("ComputerSystem.Reset/")
    )


def test_transitional_power_state_is_unknown() -> None:
    """PoweringOff is not Off: it reads as unknown."""
    info = parse_system(load("dmtf_system_powering_off"))

    assert info.power is PowerState.UNKNOWN
    assert info.power_text == "PoweringOff"
    assert info.reset is not None and info.reset.allowed is None


def test_missing_power_state_is_protocol_error() -> None:
    """A system without PowerState cannot be verified."""
    doc = load("dmtf_system")
    del doc["PowerState"]

    with pytest.raises(ProtocolError, match="PowerState"):
        parse_system(doc)


def test_null_power_state_is_unknown() -> None:
    """PowerState null (a BMC that does not know) reads as unknown."""
    doc = load("dmtf_system")
    doc["PowerState"] = None

    assert parse_system(doc).power is PowerState.UNKNOWN


@pytest.mark.parametrize(
    ("name", "off", "on"),
    [
        ("dmtf_system", "ForceOff", "On"),
        ("hpe_ilo5_system", "ForceOff", "On"),
        ("dell_idrac9_system", "ForceOff", "On"),
        ("lenovo_xcc_system", "ForceOff", "On"),
    ],
)
def test_reset_types_chosen_per_vendor(name: str, off: str, on: str) -> None:
    """ForceOff for off and On for on, from each vendor's list."""
    info = parse_system(load(name))
    assert info.reset is not None

    assert choose_reset(Action.OFF, info.reset.allowed) == off
    assert choose_reset(Action.ON, info.reset.allowed) == on


def test_irmc_on_system_offers_no_standard_on() -> None:
    """iRMC S6 when on lists no On: on is refused naming the values."""
    info = parse_system(load("fujitsu_irmc_s6_system_on"))
    assert info.reset is not None

    with pytest.raises(UnsupportedError, match="allowed: ForceOff"):
        choose_reset(Action.ON, info.reset.allowed, PowerState.ON)


def test_irmc_off_system_allows_only_on() -> None:
    """iRMC S5 when off lists only On: off is refused, on is On."""
    info = parse_system(load("fujitsu_irmc_s5_system_off"))
    assert info.reset is not None

    assert choose_reset(Action.ON, info.reset.allowed) == "On"
    with pytest.raises(UnsupportedError, match="ForceOff"):
        choose_reset(Action.OFF, info.reset.allowed)


def test_irmc_oem_reset_found_with_the_profile() -> None:
    """The iRMC profile finds FTSComputerSystem.Reset and its values."""
    info = parse_system(load("fujitsu_irmc_s6_system_on"), IRMC)

    assert info.oem_reset is not None
    assert info.oem_reset.parameter == "FTSResetType"
    assert info.oem_reset.target == (
        "/redfish/v1/Systems/0/Actions/Oem/FTSComputerSystem.Reset"
    )
    assert info.oem_reset.allowed is not None
    assert "PowerOff" in info.oem_reset.allowed


def test_oem_reset_ignored_without_the_profile() -> None:
    """The standard profile does not look at OEM actions."""
    info = parse_system(load("fujitsu_irmc_s6_system_on"))

    assert info.oem_reset is None


def test_supermicro_lists_values_in_action_info() -> None:
    """Supermicro points to an ActionInfo resource for the values."""
    info = parse_system(load("supermicro_system"))
    assert info.reset is not None

    assert info.reset.allowed is None
    assert info.reset.action_info == "/redfish/v1/Systems/1/ResetActionInfo"
    allowed = parse_action_info(load("supermicro_reset_action_info"))
    assert allowed is not None and "ForceOff" in allowed


def test_action_info_without_the_parameter() -> None:
    """ActionInfo without ResetType lists nothing (all allowed)."""
    assert parse_action_info({"Parameters": [{"Name": "Other"}]}) is None


def test_no_allowable_values_means_any() -> None:
    """No list: the first preference is taken (DSP0266 allows all)."""
    assert choose_reset(Action.OFF, None) == "ForceOff"
    assert choose_reset(Action.DIAG, None) == "Nmi"


def test_graceful_values_never_stand_in_for_off() -> None:
    """GracefulShutdown or PushPowerButton are never used for off."""
    allowed = ["On", "GracefulShutdown", "PushPowerButton"]

    with pytest.raises(UnsupportedError, match="GracefulShutdown"):
        choose_reset(Action.OFF, allowed)


def test_on_falls_back_to_force_on_then_button() -> None:
    """On is preferred, then ForceOn, then PushPowerButton."""
    assert choose_reset(Action.ON, ["ForceOn", "ForceOff"]) == "ForceOn"
    off = PowerState.OFF
    assert choose_reset(Action.ON, ["PushPowerButton"], off) == (
        "PushPowerButton"
    )


def test_power_button_is_not_pushed_unless_off() -> None:
    """PushPowerButton toggles: it is not used when the state is not Off."""
    with pytest.raises(UnsupportedError):
        choose_reset(Action.ON, ["PushPowerButton"], PowerState.UNKNOWN)


def test_reboot_has_no_single_reset() -> None:
    """reboot is done as off then on, never one ResetType."""
    with pytest.raises(UnsupportedError):
        choose_reset(Action.REBOOT, None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("dmtf_error_not_in_list", "is not in the list of acceptable"),
        ("dell_idrac9_error_already_off", "already powered off"),
        ("hpe_ilo5_error_state", "iLO.2.14.InvalidOperationForSystemState"),
        ("fujitsu_irmc_error_reset", "ForceOff for the action"),
        ("supermicro_error_unauthorized", "insufficient privileges"),
    ],
)
def test_error_bodies_give_the_bmc_words(name: str, expected: str) -> None:
    """ExtendedInfo messages (or ids) of each vendor reach the text."""
    text = error_message(load(name))

    assert text is not None and expected in text


def test_error_message_of_non_json_is_none() -> None:
    """A body that is not a Redfish error gives no message."""
    assert error_message("<html>oops</html>") is None
    assert error_message({}) is None


def test_tasks() -> None:
    """Completed and Exception tasks give state, status and messages."""
    assert parse_task(load("dmtf_task_completed")) == ("Completed", "OK", "")
    state, status, text = parse_task(load("dmtf_task_exception"))

    assert (state, status) == ("Exception", "Critical")
    assert "internal service error" in text


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ({"port": 0}, "port"),
        ({"auth": "digest"}, "auth"),
        ({"profile": "ilo"}, "profile"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"connect_timeout": 0.0}, "connect_timeout"),
    ],
)
def test_bad_options_name_themselves(
    options: dict[str, Any], where: str
) -> None:
    """Each invalid option is a ConfigError naming it."""
    with pytest.raises(ConfigError) as caught:
        RedfishDriver(
            "127.0.0.1",
            username="u",
            password=Secret("p"),
            **options,
        )

    assert caught.value.where == where


def test_ca_file_and_insecure_exclude(tmp_path: Path) -> None:
    """A CA file and insecure together are refused."""
    ca = tmp_path / "ca.pem"
    ca.write_text("x")

    with pytest.raises(ConfigError, match="exclude"):
        RedfishDriver(
            "127.0.0.1",
            username="u",
            password=Secret("p"),
            ca_file=ca,
            insecure=True,
        )


def test_repr_shows_no_password() -> None:
    """The driver's repr names the device and user, not the password."""
    driver = RedfishDriver(
        "127.0.0.1", port=8443, username="u", password=Secret("hunter2")
    )

    assert "hunter2" not in repr(driver)
    assert "127.0.0.1:8443" in repr(driver)
