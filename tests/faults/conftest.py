"""Print the fault matrix at the end of a session that ran fault tests."""

from __future__ import annotations

from typing import Any

from tests.faults import matrix


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The table: fault, runs, successes, failures, false successes."""
    if not matrix.RECORDED:
        return
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(matrix.markdown(matrix.RECORDED))
