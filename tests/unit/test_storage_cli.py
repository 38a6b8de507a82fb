"""``fencekit storage`` refuses bad input with one line and exit 2."""

from __future__ import annotations

import pytest

from fencekit.cli import main

URL = "iscsi://127.0.0.1:3260/iqn.2024-01.io.fencekit:t/1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fence", URL, "--initiator", "i", "--key", "1"], "--victim-key"),
        (["status", URL, "--initiator", "i"], "needs this node's key"),
        (["status", URL, "--initiator", "i", "--key", "0"], "--key"),
        (["status", URL, "--key", "1"], "initiator"),
        (["status", "iscsi://h/x", "--initiator", "i", "--key", "1"], "URL"),
        (["keys", "nfs://h/x"], "unknown device scheme"),
        (["keys", URL, "--initiator", "i", "--type", "zz"], "--type"),
        (
            [
                "status",
                URL,
                "--initiator",
                "i",
                "--key",
                "1",
                "--victim-key",
                "2",
            ],
            "only fence",
        ),
        (["status", URL, "--initiator", "i", "--cluster", "c"], "node-id"),
        (
            [
                "fence",
                URL,
                "--initiator",
                "i",
                "--key",
                "5",
                "--victim-key",
                "0x5",
            ],
            "ourselves",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each mistake names what is wrong, in one line, exit code 2."""
    code = main(["storage", *args])

    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and message in err[0], err
