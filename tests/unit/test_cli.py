"""Bad input to the command line: one line, non-zero, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))
BASE = [
    "power",
    "status",
    "--driver",
    "ipmi",
    "--host",
    "127.0.0.1",
    "--username",
    "u",
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FENCEKIT, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["power", "status"], "required"),
        ([*BASE], "--password-file"),
        ([*BASE, "--password-file", "/nonexistent/pw"], "/nonexistent/pw"),
        ([*BASE, "--password-env", "FK_UNSET_VAR_X"], "FK_UNSET_VAR_X"),
        ([*BASE, "--password-env", "X", "--port", "70000"], "not a port"),
        ([*BASE, "--password-env", "X", "--timeout", "-1"], "above zero"),
        ([*BASE, "--password-env", "X", "--timeout", "nan"], "above zero"),
        ([*BASE, "--password-env", "X", "--off-time", "1e308"], "0 to"),
        ([*BASE, "--password-env", "X", "--settle", "1000"], "do not fit"),
        ([*BASE, "--password-env", "X", "--cipher", "5"], "invalid choice"),
        (["power", "explode"], "invalid choice"),
        (["nosuch"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], words: str) -> None:
    """Each mistake is named in the last stderr line; exit code 2."""
    done = run(*args)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert words in done.stderr.strip().splitlines()[-1]
    assert done.stdout == ""


def test_password_on_argv_is_not_accepted() -> None:
    """There is no --password option: secrets never go on argv."""
    done = run(*BASE, "--password-env", "X", "--password", "hunter2")

    assert done.returncode == 2
    assert "unrecognized arguments" in done.stderr


def test_inventory_kg_comes_from_a_source_never_the_value(
    tmp_path: Path,
) -> None:
    """IPMI Kg in an inventory: kg_file works, a literal key is refused."""
    from fencekit.errors import ConfigError
    from fencekit.power.drivers import build
    from fencekit.secrets import Secret

    kg = tmp_path / "kg"
    kg.write_text("the-kg-key\n")
    kg.chmod(0o600)

    driver = build(
        "ipmi",
        "127.0.0.1",
        username="u",
        password=Secret("p"),
        options={"kg_file": str(kg)},
    )
    assert "the-kg-key" not in repr(vars(driver))
    with pytest.raises(ConfigError, match="never the value"):
        build(
            "ipmi",
            "127.0.0.1",
            username="u",
            password=Secret("p"),
            options={"kg": "literal"},
        )


def test_inventory_irmc_ipmi_password_from_a_source(tmp_path: Path) -> None:
    """iRMC's IPMI fallback password: a file works, a literal is refused."""
    from fencekit.errors import ConfigError
    from fencekit.power.drivers import build
    from fencekit.secrets import Secret

    secret = tmp_path / "ipmi.pw"
    secret.write_text("ipmi-only-secret\n")
    secret.chmod(0o600)

    build(
        "irmc",
        "127.0.0.1",
        username="u",
        password=Secret("p"),
        options={"ipmi_fallback": True, "ipmi_password_file": str(secret)},
    )
    with pytest.raises(ConfigError, match="ipmi_password_file"):
        build(
            "irmc",
            "127.0.0.1",
            username="u",
            password=Secret("p"),
            options={"ipmi_fallback": True, "ipmi_password": "literal"},
        )


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["probe", "http", "http://[::1"], "Invalid IPv6 URL"),
        (["probe", "http", "http://127.0.0.1:99999/"], "Port out of range"),
        (["probe", "http", "http://127.0.0.1:abc/"], "Port could not"),
        (["probe", "http", "http://ñ☃.invalid/"], "IDNA"),
        (
            ["probe", "http", "http://127.0.0.1:1/", "--method", "GE T"],
            "not an HTTP method",
        ),
        (
            ["probe", "http", "http://127.0.0.1:1/", "--timeout", "1e308"],
            "at most",
        ),
    ],
)
def test_hostile_probe_input_is_one_line(args: list[str], words: str) -> None:
    """URLs, methods and numbers requests cannot use: exit 2, one line."""
    done = run(*args)

    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert words in done.stderr.strip().splitlines()[-1]


def test_password_file_that_never_ends_is_refused() -> None:
    """/dev/zero as a password file: an error, not all of memory."""
    done = run(*BASE, "--password-file", "/dev/zero")

    assert done.returncode == 2
    assert "no line within" in done.stderr


def test_broken_pipe_is_not_a_traceback() -> None:
    """`fencekit --help | head -1`: the reader leaving is no crash."""
    done = subprocess.run(
        f"{FENCEKIT} power --help | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert "Traceback" not in done.stderr


def test_agent_check_config_finds_what_start_would(tmp_path: Path) -> None:
    """--check-config refuses a fence action on a node not in inventory."""
    secret = tmp_path / "pw"
    secret.write_text("x\n")
    secret.chmod(0o600)
    (tmp_path / "inventory.toml").write_text(
        'cluster = "c"\n[devices.bmc]\ndriver = "ipmi"\nhost = "127.0.0.1"\n'
        f'username = "u"\npassword_file = "{secret}"\n'
        '[[nodes]]\nname = "node-a"\nid = 1\nlevels = ["bmc"]\n'
    )
    config = tmp_path / "agent.toml"
    config.write_text(
        '[agent]\ninventory = "inventory.toml"\n'
        '[actions.fence-zz]\ntype = "fence"\nnode = "node-zz"\n'
        '[checks.t]\nkind = "tcp"\nhost = "127.0.0.1"\nport = 1\n'
        'actions = ["fence-zz"]\n'
    )

    done = run("agent", "--config", str(config), "--check-config")

    assert done.returncode == 2
    assert "node-zz" in done.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*BASE, "--password-env", "X", "--system", "1"], "--system"),
        ([*BASE, "--password-env", "X", "--plug", "3"], "--plug"),
        (
            [
                "power",
                "status",
                "--driver",
                "ipmi",
                "--host",
                " ",
                "--username",
                "u",
                "--password-env",
                "HOME",
            ],
            "host: is empty",
        ),
        ([*BASE, "--password-env", "X", "--timeout", "inf"], "at most"),
    ],
)
def test_options_that_do_nothing_are_refused(
    args: list[str], words: str
) -> None:
    """An option another driver owns, or an empty host: exit 2."""
    done = run(*args)

    assert done.returncode == 2
    assert words in done.stderr.strip().splitlines()[-1]
