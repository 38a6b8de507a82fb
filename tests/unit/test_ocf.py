"""The OCF agent ocf:fencekit:check: actions, exit codes, metadata,
watching a real TCP service on loopback."""

from __future__ import annotations

import io
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fencekit.integrations import ocf
from tests.support import peers

ROOT = Path(__file__).resolve().parents[2]
DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening TCP socket on loopback: a service that is up."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((peers.LOOPBACK, 0))
    sock.listen(16)
    try:
        yield sock
    finally:
        sock.close()


def env_for(port: int, state: Path, **extra: str) -> dict[str, str]:
    """The environment Pacemaker gives the agent for a TCP check."""
    env = {
        "OCF_RESOURCE_INSTANCE": "web-check",
        "OCF_RESKEY_probe": "tcp",
        "OCF_RESKEY_options": f'host = "127.0.0.1", port = {port}',
        "OCF_RESKEY_state_dir": str(state),
    }
    env.update({f"OCF_RESKEY_{k}": v for k, v in extra.items()})
    return env


def act(action: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one action in process; return code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    code = ocf.run([action], env, out, err)
    return code, out.getvalue(), err.getvalue()


def test_lifecycle(listener: socket.socket, tmp_path: Path) -> None:
    """start, monitor, start again, stop, monitor, stop again: the
    sequence ocf-tester checks."""
    env = env_for(listener.getsockname()[1], tmp_path)

    codes = [act(a, env)[0] for a in ("monitor", "start", "monitor")]
    codes += [act(a, env)[0] for a in ("start", "stop", "monitor", "stop")]

    assert codes == [7, 0, 0, 0, 0, 7, 0]


def test_monitor_fails_when_service_goes_down(
    listener: socket.socket, tmp_path: Path
) -> None:
    """A watched service that stops answering makes monitor return 1,
    with the reason on standard error."""
    env = env_for(listener.getsockname()[1], tmp_path)
    assert act("start", env)[0] == 0

    listener.close()
    code, _, err = act("monitor", env)

    assert code == ocf.OCF_ERR_GENERIC
    assert "127.0.0.1" in err


def test_start_fails_when_service_is_down(tmp_path: Path) -> None:
    """start of a check whose service is down fails (1): not watched."""
    env = env_for(peers.free_port(), tmp_path)

    code, _, _ = act("start", env)

    assert code == ocf.OCF_ERR_GENERIC
    assert act("monitor", env)[0] == ocf.OCF_NOT_RUNNING


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"probe": "warp"}, "warp"),
        ({"probe": ""}, "probe: required"),
        ({"options": "host = "}, "options"),
        ({"config": "/x.toml", "check": "web"}, "config and check, or"),
    ],
)
def test_validate_all_rejects(
    extra: dict[str, str], reason: str, tmp_path: Path
) -> None:
    """validate-all returns 6 (not configured) with one line of reason."""
    env = env_for(1, tmp_path, **extra)

    code, _, err = act("validate-all", env)

    assert code == ocf.OCF_ERR_CONFIGURED
    assert reason in err


def test_monitor_before_start_ignores_bad_configuration(
    tmp_path: Path,
) -> None:
    """A probe of a resource never started returns 7 even when its
    parameters are wrong, as Pacemaker's probes need."""
    env = env_for(1, tmp_path, probe="warp")

    assert act("monitor", env)[0] == ocf.OCF_NOT_RUNNING


def test_named_check_from_agent_configuration(
    listener: socket.socket, tmp_path: Path
) -> None:
    """config and check run a check of a fencekit agent configuration."""
    port = listener.getsockname()[1]
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[checks.web]\nkind = "tcp"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    env = {
        "OCF_RESOURCE_INSTANCE": "named",
        "OCF_RESKEY_config": str(config),
        "OCF_RESKEY_check": "web",
        "OCF_RESKEY_state_dir": str(tmp_path),
    }

    assert act("start", env)[0] == 0
    assert act("monitor", env)[0] == 0
    env["OCF_RESKEY_check"] = "db"
    code, _, err = act("validate-all", env)
    assert code == ocf.OCF_ERR_CONFIGURED
    assert "db" in err


@pytest.mark.parametrize(("action", "code"), [("promote", 3), ("", 2)])
def test_unknown_action(action: str, code: int, tmp_path: Path) -> None:
    """An unknown action returns 3 (unimplemented); none at all, 2."""
    assert act(action, env_for(1, tmp_path))[0] == code


def test_metadata_is_valid_for_ra_api_dtd(tmp_path: Path) -> None:
    """meta-data exits 0 and validates against resource-agents' DTD."""
    xmllint = peers.require("xmllint")
    if not DTD.exists():
        peers.require("ocf-tester")
    code, out, _ = act("meta-data", {})
    file = tmp_path / "meta.xml"
    file.write_text(out)

    done = subprocess.run(
        [xmllint, "--noout", "--dtdvalid", str(DTD), str(file)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert code == 0
    assert done.returncode == 0, done.stderr


def test_script_answers_metadata_without_python(tmp_path: Path) -> None:
    """The installed script prints meta-data from the shell alone, so an
    account that cannot reach the interpreter still reads it."""
    script = tmp_path / "check"
    script.write_text(ocf.render_script("/nonexistent/python"))
    script.chmod(0o755)

    done = subprocess.run(
        [str(script), "meta-data"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0
    assert done.stdout == ocf.metadata()


def test_agents_folder_matches_the_rendering() -> None:
    """agents/ocf/check is the script install-agents writes."""
    assert (ROOT / "agents" / "ocf" / "check").read_text() == (
        ocf.render_script("python3")
    )
