"""Credential sources and the masking Secret type."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pytest

from fencekit import logging as fk_logging
from fencekit._log import get_logger
from fencekit.errors import SecretError
from fencekit.secrets import MASK, Secret, from_command, from_env, from_file

CANARY = "canary-s3cr3t-9911"


def test_secret_masks_itself_everywhere() -> None:
    """str, repr, format and f-strings never show the value."""
    secret = Secret(CANARY, source="test")

    shown = [
        str(secret),
        repr(secret),
        f"{secret}",
        "%s" % secret,  # noqa: UP031
        format(secret, ">30"),
        str([secret]),
        str({"p": secret}),
    ]

    assert all(CANARY not in text for text in shown)
    assert secret.reveal() == CANARY


def test_secret_refuses_pickling() -> None:
    """A secret cannot be serialised by accident."""
    with pytest.raises(TypeError):
        pickle.dumps(Secret(CANARY))


def test_from_file_reads_the_first_line(tmp_path: Path) -> None:
    """Trailing newline and later lines are ignored."""
    path = tmp_path / "pw"
    path.write_text(f"{CANARY}\nsecond line\n")
    path.chmod(0o600)

    assert from_file(path).reveal() == CANARY


def test_from_file_warns_when_others_can_read(tmp_path: Path) -> None:
    """A group- or world-readable file works, with a warning."""
    path = tmp_path / "pw"
    path.write_text(CANARY)
    path.chmod(0o644)
    out = io.StringIO()
    fk_logging.configure(verbosity=0, json=True, stream=out)

    assert from_file(path).reveal() == CANARY
    event = json.loads(out.getvalue().splitlines()[0])
    assert event["event"] == "credentials_file_readable_by_others"
    assert CANARY not in out.getvalue()


@pytest.mark.parametrize("content", ["", "\n"])
def test_from_file_refuses_an_empty_file(tmp_path: Path, content: str) -> None:
    """An empty credentials file is an error naming the file."""
    path = tmp_path / "pw"
    path.write_text(content)

    with pytest.raises(SecretError, match=str(path)):
        from_file(path)


def test_from_file_missing_names_the_file(tmp_path: Path) -> None:
    """A missing file gives a one-line error with its path."""
    with pytest.raises(SecretError, match="cannot read credentials file"):
        from_file(tmp_path / "absent")


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The variable's value is the secret; unset is an error."""
    monkeypatch.setenv("FK_TEST_PW", CANARY)
    monkeypatch.delenv("FK_TEST_NONE", raising=False)

    assert from_env("FK_TEST_PW").reveal() == CANARY
    with pytest.raises(SecretError, match="FK_TEST_NONE"):
        from_env("FK_TEST_NONE")


def test_from_command_reads_stdout_without_a_shell(tmp_path: Path) -> None:
    """The command's first line is the secret; argv holds no secret."""
    path = tmp_path / "vault"
    path.write_text(CANARY + "\n")

    assert from_command(f"cat {path}").reveal() == CANARY


def test_from_command_failure_does_not_leak_output() -> None:
    """A failing command is named, its output is not repeated."""
    with pytest.raises(SecretError) as caught:
        from_command(f"sh -c 'echo {CANARY}; exit 3'")

    assert "exited 3" in str(caught.value)
    assert CANARY not in str(caught.value)


def test_redaction_masks_secret_keys_and_values() -> None:
    """The last processor masks known keys and Secret objects."""
    out = io.StringIO()
    fk_logging.configure(verbosity=2, json=True, stream=out)

    get_logger("test").info(
        "event",
        password=CANARY,
        community=CANARY,
        headers={"Authorization": CANARY, "Accept": "json"},
        nested=[Secret(CANARY)],
        x_auth_token=CANARY,
    )

    text = out.getvalue()
    assert CANARY not in text
    assert text.count(MASK) == 5
    assert '"Accept": "json"' in text


def test_library_without_logging_setup_keeps_stdout_clean() -> None:
    """A plain script: info stays silent, an error goes to stderr."""
    import subprocess
    import sys

    script = (
        "import asyncio, fencekit\n"
        "from fencekit.testing import FakePowerDriver\n"
        "from fencekit.errors import UnreachableError\n"
        "off = fencekit.Action.OFF\n"
        "asyncio.run(fencekit.attempt(FakePowerDriver(), off))\n"
        "bad = FakePowerDriver(read_errors=[UnreachableError('gone')])\n"
        "asyncio.run(fencekit.attempt(bad, off))\n"
        "print('result')\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.stdout == "result\n"
    assert "power_action_failed" in done.stderr
    assert "reason='gone'" in done.stderr
