"""``fencekit probe`` as a command, against real servers."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.http import HttpServer
from tests.support.peers import LOOPBACK, free_port


def fencekit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``fencekit ARGS`` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def https(tmp_path: Path) -> Iterator[HttpServer]:
    """An HTTPS server with a trustme certificate."""
    server = HttpServer(tmp_path / "https", tls=True).start()
    yield server
    server.stop()


def test_http_json_outcome(https: HttpServer) -> None:
    """probe http --json prints the outcome and exits 0 when healthy."""
    done = fencekit(
        "probe", "http", https.url, "--ca-file", str(https.ca_file), "--json"
    )

    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout)
    assert outcome["healthy"] is True
    assert outcome["kind"] == "http"
    assert outcome["details"]["status_code"] == 200
    assert outcome["details"]["tls_expiry_timestamp"] > 0


def test_http_unhealthy_exit_one(https: HttpServer) -> None:
    """An unverifiable certificate: exit 1, one line naming the reason."""
    done = fencekit("probe", "http", https.url)

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(f"fencekit: error: {https.url}: unhealthy")
    assert done.stderr.count("\n") == 1


def test_tcp_text_output() -> None:
    """probe tcp on a closed port fails with exit 1."""
    done = fencekit("probe", "tcp", LOOPBACK, str(free_port()))

    assert done.returncode == 1
    assert "unhealthy: connect:" in done.stderr


def test_bad_input_exit_two(tmp_path: Path) -> None:
    """Bad options exit 2 with one line naming the option."""
    regex = fencekit("probe", "http", "http://x/", "--body-regex", "(")
    url = fencekit("probe", "http", "gopher://x/")
    disk = fencekit("probe", "disk", "/dev/null", "--offset", "3")

    assert regex.returncode == 2
    assert regex.stderr.startswith("fencekit: error: --body-regex: bad")
    assert url.returncode == 2
    assert url.stderr.startswith("fencekit: error: URL: not an http(s)")
    assert disk.returncode == 2
    assert "--offset: must be a multiple" in disk.stderr


def test_multipath_from_saved_output() -> None:
    """probe multipath --input-file judges saved multipathd output."""
    fixture = (
        Path(__file__).resolve().parents[1]
        / "fixtures"
        / "multipath"
        / "maps.json"
    )

    done = fencekit(
        "probe",
        "multipath",
        "--input-file",
        str(fixture),
        "--map",
        "mpatha",
        "--json",
    )

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"]["mpatha"]["active"] == 4
