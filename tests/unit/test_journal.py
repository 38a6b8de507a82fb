"""The journal: durable appends, torn lines skipped, never a secret."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import structlog.testing

from fencekit.journal import Journal, read


def test_append_and_read(tmp_path: Path) -> None:
    """Records come back in order, with time, pid and host added."""
    journal = Journal(tmp_path / "sub" / "journal.jsonl")

    journal.append("requested", op="1", node="node-b", action="off")
    journal.append("outcome", op="1", node="node-b", success=True)
    journal.append("requested", op="2", node="node-c", action="off")

    result = journal.read()
    assert [r["event"] for r in result.records] == [
        "requested",
        "outcome",
        "requested",
    ]
    assert result.records[0]["pid"] == os.getpid()
    assert "time" in result.records[0]
    assert result.skipped == ()
    assert [r["op"] for r in read(journal.path, node="node-b").records] == [
        "1",
        "1",
    ]


def test_fsync_before_append_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each record is fsynced before append() returns."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    journal = Journal(tmp_path / "journal.jsonl")

    journal.append("requested", node="node-b")

    assert synced == [journal.path.stat().st_size]


def test_torn_last_line_skipped_with_warning(tmp_path: Path) -> None:
    """A torn last line is skipped, reported, and does not stop reading."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("requested", node="node-b")
    with journal.path.open("ab") as stream:
        stream.write(b'{"event": "outcome", "node": "nod')

    with structlog.testing.capture_logs() as logs:
        result = read(journal.path)

    assert [r["event"] for r in result.records] == ["requested"]
    assert result.skipped == (2,)
    assert logs[0]["event"] == "journal_lines_skipped"
    assert logs[0]["log_level"] == "warning"


def test_append_after_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    """A record written after a crash stays whole and readable."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("requested", node="node-b")
    with journal.path.open("ab") as stream:
        stream.write(b'{"event": "attem')

    journal.append("outcome", node="node-b", success=False)

    result = read(journal.path)
    assert [r["event"] for r in result.records] == ["requested", "outcome"]
    assert result.skipped == (2,)


def test_garbage_in_the_middle_does_not_stop_reading(tmp_path: Path) -> None:
    """Lines that are not records are skipped wherever they are."""
    path = tmp_path / "journal.jsonl"
    path.write_bytes(
        b'{"event": "requested"}\n\xff\xfe\n[1, 2]\n{"event": "outcome"}\n'
    )

    result = read(path)

    assert [r["event"] for r in result.records] == ["requested", "outcome"]
    assert result.skipped == (2, 3)


def test_missing_journal_is_empty(tmp_path: Path) -> None:
    """A journal never written has no records."""
    assert read(tmp_path / "none.jsonl").records == ()


def test_journal_file_is_private(tmp_path: Path) -> None:
    """The journal is created readable by its owner only."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("requested", node="node-b")

    assert journal.path.stat().st_mode & 0o077 == 0


def test_each_record_is_one_json_line(tmp_path: Path) -> None:
    """Reasons with newlines still make one line per record."""
    journal = Journal(tmp_path / "journal.jsonl")
    journal.append("outcome", reason="first\nsecond")

    lines = journal.path.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["reason"] == "first\nsecond"


async def test_async_record(tmp_path: Path) -> None:
    """record() appends from a thread and returns the record."""
    journal = Journal(tmp_path / "journal.jsonl")

    record = await journal.record("requested", node="node-b")

    assert journal.read().records == (record,)
