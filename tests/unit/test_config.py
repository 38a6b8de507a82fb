"""The inventory: loading, validation, and the CLI's one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from fencekit.cli import main
from fencekit.config import load, parse
from fencekit.errors import ConfigError

GOOD = """\
cluster = "lab"

[fencer]
run_dir = "run"
journal = "journal.jsonl"
fence_timeout = 30
max_parallel = 4

[devices.bmc-a]
driver = "ipmi"
host = "127.0.0.1"
port = 6230
username = "admin"
password_file = "pw"
options = { cipher = 3 }

[devices.bmc-b]
driver = "ipmi"
host = "127.0.0.2"
username = "admin"
password_env = "BMC_B_PASSWORD"
timeout = 5

[[nodes]]
name = "node-a"
id = 1
addresses = ["10.0.1.1"]
levels = [["bmc-a"], ["bmc-b"]]
delay = 2.5

[[nodes]]
name = "node-b"
id = 2
levels = ["bmc-b"]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "pw").write_text("fk-secret\n")
    (tmp_path / "pw").chmod(0o600)
    return tmp_path


def write(folder: Path, text: str) -> Path:
    path = folder / "inventory.toml"
    path.write_text(text)
    return path


def test_good_inventory_loads(folder: Path) -> None:
    """A valid inventory gives nodes, levels, devices and settings."""
    inventory = load(write(folder, GOOD))

    assert inventory.cluster == "lab"
    assert list(inventory.nodes) == ["node-a", "node-b"]
    node_a = inventory.nodes["node-a"]
    assert node_a.id == 1
    assert node_a.levels == (("bmc-a",), ("bmc-b",))
    assert node_a.delay == 2.5
    assert inventory.nodes["node-b"].levels == (("bmc-b",),)
    device = inventory.devices["bmc-a"]
    assert device.address == "127.0.0.1:6230"
    assert device.credentials is not None
    assert device.credentials.source == str(folder / "pw")
    assert device.credentials.password().reveal() == "fk-secret"
    assert inventory.fencer.run_dir == folder / "run"
    assert inventory.fencer.max_parallel == 4


def test_example_inventory_is_valid(tmp_path: Path) -> None:
    """contrib's commented example parses (credentials files aside)."""
    import tomllib

    example = Path(__file__).parents[2] / "contrib/inventory.example.toml"
    data = tomllib.loads(example.read_text())
    data["devices"]["bmc-a"]["password_file"] = str(tmp_path / "pw")
    (tmp_path / "pw").write_text("x\n")

    inventory = parse(data, source=example)

    assert set(inventory.nodes) == {"node-a", "node-b"}


BAD = [
    (
        "level naming a missing device",
        GOOD.replace('["bmc-a"], ["bmc-b"]', '["bmc-a"], ["bmc-z"]'),
        "nodes[0].levels[1]: names no device: 'bmc-z'",
    ),
    (
        "unknown driver",
        GOOD.replace(
            'driver = "ipmi"\nhost = "127.0.0.2"',
            'driver = "telnet"\nhost = "127.0.0.2"',
        ),
        "devices.bmc-b.driver: unknown driver 'telnet'",
    ),
    (
        "duplicate node names",
        GOOD.replace('name = "node-b"', 'name = "node-a"'),
        "nodes[1].name: duplicate node name 'node-a'",
    ),
    (
        "non-integer node id",
        GOOD.replace("id = 2", 'id = "two"'),
        "nodes[1].id: must be an integer",
    ),
    (
        "missing credentials file",
        GOOD.replace('password_file = "pw"', 'password_file = "nope"'),
        "devices.bmc-a.password_file: credentials file",
    ),
    (
        "password in the file",
        GOOD.replace(
            'password_env = "BMC_B_PASSWORD"', 'password = "fk-canary-417"'
        ),
        "devices.bmc-b.password: secrets are not accepted",
    ),
    (
        "duplicate node id",
        GOOD.replace("id = 2", "id = 1"),
        "nodes[1].id: node id 1 is also node-a's",
    ),
    (
        "unknown key",
        GOOD.replace("fence_timeout = 30", "fence_timout = 30"),
        "fencer.fence_timout: unknown key",
    ),
    (
        "no level",
        GOOD.replace('levels = ["bmc-b"]', "levels = []"),
        "nodes[1].levels: must list at least one fence level",
    ),
    (
        "two password sources",
        GOOD.replace(
            'password_file = "pw"', 'password_file = "pw"\npassword_env = "X"'
        ),
        "devices.bmc-a.password_env: give only one of",
    ),
    (
        "negative delay",
        GOOD.replace("delay = 2.5", "delay = -1"),
        "nodes[0].delay: must be a number of seconds",
    ),
    (
        "delay longer than the fence",
        GOOD.replace("delay = 2.5", "delay = 30"),
        "nodes[0].delay: must be shorter than fencer.fence_timeout",
    ),
    (
        "power device without host",
        GOOD.replace('host = "127.0.0.2"\n', ""),
        "devices.bmc-b.host: is required",
    ),
    (
        "not TOML",
        GOOD + "\n[[nodes]\n",
        "not valid TOML",
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in BAD],
    ids=[name for name, _, _ in BAD],
)
def test_bad_inventory_names_file_and_key(
    folder: Path, text: str, expected: str
) -> None:
    """Each invalid inventory is refused naming the file and the key."""
    path = write(folder, text)

    with pytest.raises(ConfigError) as caught:
        load(path)

    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)
    assert "fk-canary-417" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(text, expected) for _, text, expected in BAD],
    ids=[name for name, _, _ in BAD],
)
@pytest.mark.parametrize("command", ["nodes", "check", "fence"])
def test_cli_bad_inventory_one_line_exit_2(
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    text: str,
    expected: str,
) -> None:
    """The CLI prints one error line naming file and key, and exits 2."""
    path = write(folder, text)
    args = [command, "--config", str(path)]
    if command == "fence":
        args.insert(1, "node-b")

    code = main(args)

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert str(path) in err
    assert expected in err
    assert "Traceback" not in err


def test_missing_inventory_file(tmp_path: Path) -> None:
    """A missing inventory names the file."""
    with pytest.raises(ConfigError, match=r"nope\.toml: cannot read"):
        load(tmp_path / "nope.toml")


def test_local_node_from_settings(folder: Path) -> None:
    """fencer.local_node names this machine's node; it must exist."""
    text = GOOD.replace("max_parallel = 4", 'local_node = "node-a"')
    assert load(write(folder, text)).local_node() == "node-a"

    text = GOOD.replace("max_parallel = 4", 'local_node = "node-x"')
    with pytest.raises(ConfigError, match=r"fencer\.local_node"):
        load(write(folder, text))


@pytest.mark.parametrize(
    "options",
    [
        '{ community = "public" }',
        '{ ipmi_password = "x" }',
        '{ kg = "k" }',
        '{ Password = "x" }',
        '{ nested = { password = "x" } }',
    ],
)
def test_secret_values_in_driver_options_are_refused(
    tmp_path: Path, options: str
) -> None:
    """A secret's value among a device's options fails at load time."""
    from fencekit.config import load
    from fencekit.errors import ConfigError

    path = tmp_path / "inventory.toml"
    path.write_text(
        f'cluster = "c"\n[devices.d]\ndriver = "ipmi"\nhost = "h"\n'
        f"options = {options}\n"
        '[[nodes]]\nname = "n"\nid = 1\nlevels = ["d"]\n'
    )

    with pytest.raises(ConfigError, match="secrets are not accepted"):
        load(path)
