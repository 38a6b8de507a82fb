"""The fence-agent interface: option spellings, booleans, metadata."""

from __future__ import annotations

import dataclasses
import io
import shutil
import subprocess
from pathlib import Path

import pytest

from fencekit.errors import ConfigError
from fencekit.integrations import agents
from fencekit.integrations.fence_agent import (
    AgentSpec,
    Options,
    Parameter,
    metadata,
    parse_argv,
    parse_stdin,
    run,
)
from fencekit.integrations.power_agent import parse_host_map

SPEC = agents.spec("fence_fencekit_ipmi")
SCHEMA = Path("/usr/share/cluster/relaxng/metadata.rng")
ROOT = Path(__file__).resolve().parents[2]


def _stdin(text: str) -> dict[str, str]:
    return parse_stdin(SPEC, io.StringIO(text)).values


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("ip=10.0.0.1", "ip", "10.0.0.1"),
        ("ipaddr=10.0.0.1", "ip", "10.0.0.1"),
        ("login=admin", "username", "admin"),
        ("user-name=admin", "username", None),
        ("passwd=s3cret", "password", "s3cret"),
        ("port=node-b", "plug", "node-b"),
        ("plug=node-b", "plug", "node-b"),
        ("power-timeout=30", "power_timeout", "30"),
        ("power_timeout=30", "power_timeout", "30"),
        ("POWER_WAIT=2", "power_wait", "2"),
        ('password_script="cat /etc/pw"', "password_script", "cat /etc/pw"),
        ("  delay = 5 ", "delay", "5"),
        ("host_map=a=1.2.3.4;b=1.2.3.5", "host_map", "a=1.2.3.4;b=1.2.3.5"),
    ],
)
def test_stdin_spellings(line: str, name: str, value: str | None) -> None:
    """Names match with - and _ alike, old names map to new ones."""
    assert _stdin(line + "\n").get(name) == value


def test_stdin_skips_comments_blank_lines_and_unknown_options() -> None:
    """Comments and blanks are skipped; unknown options warn, no value."""
    parsed = parse_stdin(
        SPEC,
        io.StringIO("# a comment\n\nfrobnicate=xyzzy\nnot a pair\nip=h\n"),
    )

    assert parsed.values == {"ip": "h"}
    assert len(parsed.warnings) == 2
    assert not any("xyzzy" in w for w in parsed.warnings)
    assert not any("not a pair" in w for w in parsed.warnings)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("yes", True),
        ("on", True),
        ("TRUE", True),
        ("0", False),
        ("no", False),
        ("off", False),
        ("false", False),
    ],
)
def test_booleans(text: str, expected: bool) -> None:
    """Booleans accept the fence-agent words, in any case."""
    options = Options(SPEC, {"lanplus": text})

    assert options.boolean("lanplus") is expected


def test_boolean_default_and_bad_word() -> None:
    """An unset boolean takes its default; a bad word names the option."""
    assert Options(SPEC, {}).boolean("lanplus") is True
    assert Options(SPEC, {}).boolean("verbose") is False
    with pytest.raises(ConfigError, match="lanplus"):
        Options(SPEC, {"lanplus": "maybe"}).boolean("lanplus")


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"delay": "soon"}, "delay"),
        ({"delay": "-1"}, "delay"),
        ({"ipport": "6x23"}, "ipport"),
        ({"cipher": "4"}, "cipher"),
        ({"privlvl": "root"}, "privlvl"),
        ({"power_timeout": "inf"}, "power_timeout"),
    ],
)
def test_bad_values_name_the_option(raw: dict[str, str], where: str) -> None:
    """A value that does not convert fails with the option's name."""
    with pytest.raises(ConfigError, match=where):
        Options(SPEC, raw).check_types()


def test_argv_long_short_and_flags() -> None:
    """Command-line options: --name=V, --name V, -x V, bare flags."""
    parsed = parse_argv(
        SPEC,
        ["--ip=h", "-l", "admin", "--ipport", "6230", "-v", "-o", "status"],
    )

    assert parsed.values == {
        "ip": "h",
        "username": "admin",
        "ipport": "6230",
        "verbose": "1",
        "action": "status",
    }


def test_argv_boolean_with_explicit_word() -> None:
    """A boolean flag may be followed by an explicit boolean word."""
    parsed = parse_argv(SPEC, ["--lanplus", "0", "--ip", "h"])

    assert parsed.values == {"lanplus": "0", "ip": "h"}


@pytest.mark.parametrize("arg", ["--password=canary", "-p", "--passwd=x"])
def test_argv_refuses_passwords(arg: str) -> None:
    """A password on the agent's own command line is refused."""
    with pytest.raises(ConfigError, match="command line") as exc:
        parse_argv(SPEC, [arg, "canary"])

    assert "canary" not in str(exc.value)


def test_argv_unknown_option_is_ignored() -> None:
    """An unknown command-line option is ignored with a warning."""
    parsed = parse_argv(SPEC, ["--colour", "blue", "--ip=h"])

    assert parsed.values == {"ip": "h"}
    assert parsed.warnings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=h1", {"a": "h1"}),
        ("a=h1:6230;b=h2", {"a": "h1:6230", "b": "h2"}),
        ("a=h1, b=[::1]:623", {"a": "h1", "b": "[::1]:623"}),
        ("a=[fe80::1]", {"a": "fe80::1"}),
    ],
)
def test_host_map(text: str, expected: dict[str, str]) -> None:
    """host_map pairs nodes with device addresses."""
    parsed = {n: str(a) for n, a in parse_host_map(text).items()}

    assert parsed == expected


@pytest.mark.parametrize("text", ["a", "a=", "a=h:0", "a=h;a=g", "a=[h]x"])
def test_host_map_errors(text: str) -> None:
    """A malformed host_map is a ConfigError naming host_map."""
    with pytest.raises(ConfigError, match="host_map"):
        parse_host_map(text)


def _run(text: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run(SPEC, [], io.StringIO(text), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("username=a\npassword=p\n", "ip: required"),
        ("ip=h\npassword=p\n", "username: required"),
        ("ip=h\nusername=a\n", "password"),
        ("ip=h\nusername=a\npassword=p\npassword_file=/x\n", "only one"),
        ("ip=h\nusername=a\npassword_file=/nonexistent/pw\n", "/nonexist"),
        ("ip=h\nusername=a\npassword=p\nsettle=0\n", "settle"),
        ("ip=h\nusername=a\npassword=p\ncipher=2\n", "cipher"),
        ("ip=h:99999\nusername=a\npassword=p\n", "ip"),
        ("ip=h\nusername=" + "u" * 17 + "\npassword=p\n", "username"),
    ],
)
def test_validate_all_rejects(text: str, reason: str) -> None:
    """validate-all exits 1 with one line naming what is wrong."""
    code, out, err = _run("action=validate-all\n" + text)

    assert code == 1
    assert reason in err
    assert err.count("\n") == 1
    assert out == ""


def test_validate_all_accepts() -> None:
    """validate-all exits 0 for a complete configuration."""
    code, _, err = _run(
        "action=validate-all\nip=h\nusername=a\npassword=p\nport=node1\n"
    )

    assert (code, err) == (0, "")


def test_unknown_action_fails() -> None:
    """An unknown action exits 1 and names the known ones."""
    code, _, err = _run("action=explode\nip=h\nusername=a\npassword=p\n")

    assert code == 1
    assert "explode" in err
    assert "list-status" in err


@pytest.mark.parametrize("action", ["metadata", "meta-data", "META_DATA"])
def test_metadata_spellings(action: str) -> None:
    """metadata (and meta-data) prints XML and exits 0 with no options."""
    code, out, _ = _run(f"action={action}\n")

    assert code == 0
    assert out.startswith("<?xml")


def test_metadata_documents_every_parameter() -> None:
    """Every parameter, and every deprecated spelling, has a shortdesc."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(metadata(SPEC))
    names = {p.get("name"): p for p in root.iter("parameter")}

    for param in SPEC.parameters:
        assert param.name in names
        if param.replaces:
            assert names[param.replaces].get("deprecated") == "1"
    for node in names.values():
        assert (node.findtext("shortdesc") or "").strip()
    for timing in ("delay", "power_timeout", "power_wait", "port"):
        assert timing in names
    actions = {a.get("name") for a in root.iter("action")}
    assert actions >= {"on", "off", "reboot", "status", "monitor", "list"}
    assert actions >= {"list-status", "metadata", "validate-all"}


@pytest.mark.parametrize("name", agents.agent_names())
def test_metadata_validates_against_fence_agents_schema(
    name: str, tmp_path: Path
) -> None:
    """The metadata validates with xmllint against metadata.rng."""
    from tests.support import peers

    xmllint = peers.require("xmllint")
    if not SCHEMA.exists():
        peers.require("fence_ipmilan")
    file = tmp_path / "metadata.xml"
    file.write_text(metadata(agents.spec(name)))

    done = subprocess.run(
        [xmllint, "--noout", "--relaxng", str(SCHEMA), str(file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", agents.agent_names())
def test_agents_folder_matches_the_table(name: str) -> None:
    """Each executable in agents/ is the one the table renders."""
    script = ROOT / "agents" / name

    assert script.read_text() == agents.render_script(
        name, "/usr/bin/env python3"
    )
    assert shutil.which(name, path=str(script.parent))


def _storage_spec() -> AgentSpec:
    """A storage-style agent: off by default, on is unfencing."""
    seen: list[str] = []
    return AgentSpec(
        name="fence_fencekit_test",
        shortdesc="test",
        longdesc="test",
        parameters=(Parameter("action", "string", "Fencing action"),),
        actions=("on", "off", "status", "monitor", "validate-all"),
        default_action="off",
        handler=lambda request: seen.append(request.action) or 0,
        checker=lambda request: None,
        unfence_on_target=True,
    )


def test_storage_metadata_marks_on_for_unfencing(tmp_path: Path) -> None:
    """A storage agent's on action carries on_target and automatic, so
    Pacemaker unfences from the node itself; it still validates."""
    from xml.etree import ElementTree

    from tests.support import peers

    text = metadata(_storage_spec())
    root = ElementTree.fromstring(text)
    on = next(a for a in root.iter("action") if a.get("name") == "on")
    off = next(a for a in root.iter("action") if a.get("name") == "off")
    file = tmp_path / "metadata.xml"
    file.write_text(text)
    done = subprocess.run(
        [
            peers.require("xmllint"),
            "--noout",
            "--relaxng",
            str(SCHEMA),
            str(file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert (on.get("on_target"), on.get("automatic")) == ("1", "1")
    assert off.get("on_target") is None
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("given", "ran"), [("enable", "on"), ("disable", "off"), ("", "off")]
)
def test_fabric_action_aliases(given: str, ran: str) -> None:
    """enable and disable are on and off; no action is the default."""
    spec = _storage_spec()
    calls: list[str] = []
    spec = dataclasses.replace(
        spec, handler=lambda request: calls.append(request.action) or 0
    )
    text = f"action={given}\n" if given else ""

    code = run(spec, [], io.StringIO(text), io.StringIO(), io.StringIO())

    assert (code, calls) == (0, [ran])
