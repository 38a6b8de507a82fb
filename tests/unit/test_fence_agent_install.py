"""``fencekit install-agents``: where the agents go, and that nothing
fencekit did not write is ever replaced or removed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fencekit.integrations import agents, ocf

FENCEKIT = str(Path(sys.executable).with_name("fencekit"))


def install(prefix: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``fencekit install-agents --prefix PREFIX ARGS``."""
    return subprocess.run(
        [FENCEKIT, "install-agents", "--prefix", str(prefix), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_installs_every_agent(tmp_path: Path) -> None:
    """Fence agents go to PREFIX/sbin, the OCF agent to its provider
    folder, executable, run by the chosen interpreter."""
    done = install(tmp_path, "--python", "/opt/py/bin/python3", "--no-check")

    assert done.returncode == 0, done.stderr
    for name in agents.agent_names():
        script = tmp_path / "sbin" / name
        assert script.stat().st_mode & 0o777 == 0o755
        assert script.read_text().startswith("#!/opt/py/bin/python3\n")
    check = tmp_path / "lib/ocf/resource.d/fencekit/check"
    assert check.read_text() == ocf.render_script("/opt/py/bin/python3")
    assert "link these files there" in done.stdout


def test_refuses_to_replace_a_foreign_file(tmp_path: Path) -> None:
    """A file fencekit did not write is left alone, exit 1, others are
    still installed."""
    foreign = tmp_path / "sbin" / "fence_fencekit_ipmi"
    foreign.parent.mkdir()
    foreign.write_text("#!/bin/sh\necho not ours\n")

    done = install(tmp_path)

    assert done.returncode == 1
    assert foreign.read_text() == "#!/bin/sh\necho not ours\n"
    assert "not written by fencekit" in done.stderr
    assert (tmp_path / "sbin" / "fence_fencekit_redfish").exists()


def test_updates_its_own_files_and_reports_unchanged(tmp_path: Path) -> None:
    """A second run with another interpreter updates fencekit's files;
    a third with the same one changes nothing."""
    install(tmp_path, "--python", "/a/python", "--no-check")

    second = install(tmp_path, "--python", "/b/python", "--no-check", "--json")
    third = install(tmp_path, "--python", "/b/python", "--no-check", "--json")

    results = {r["result"] for r in json.loads(second.stdout)["files"]}
    assert results == {"updated"}
    results = {r["result"] for r in json.loads(third.stdout)["files"]}
    assert results == {"unchanged"}


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    """--dry-run says what it would install and writes nothing."""
    done = install(tmp_path, "--dry-run")

    assert done.returncode == 0
    assert "installed:" in done.stdout
    assert not (tmp_path / "sbin").exists()


def test_uninstall_removes_only_fencekit_files(tmp_path: Path) -> None:
    """--uninstall removes fencekit's files and its empty provider
    folder, and leaves a foreign file in place."""
    install(tmp_path)
    foreign = tmp_path / "sbin" / "fence_fencekit_irmc"
    foreign.write_text("#!/bin/sh\n")

    done = install(tmp_path, "--uninstall")

    assert done.returncode == 1
    assert foreign.exists()
    assert not (tmp_path / "sbin" / "fence_fencekit_ipmi").exists()
    assert not (tmp_path / "lib/ocf/resource.d/fencekit").exists()


def test_unwritable_prefix_is_one_line_error(tmp_path: Path) -> None:
    """A prefix that cannot be written: exit 1, one line per file, no
    traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")

    done = install(blocker)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert all(
        line.startswith("fencekit: error:")
        for line in done.stderr.splitlines()
    )


def test_an_interpreter_that_cannot_run_fencekit_is_refused(
    tmp_path: Path,
) -> None:
    """--python naming nothing usable: exit 2, nothing written."""
    done = subprocess.run(
        [FENCEKIT, "install-agents", "--prefix", str(tmp_path),
         "--python", "/nonexistent/python3"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 2
    assert "--python" in done.stderr
    assert not any(tmp_path.iterdir())
