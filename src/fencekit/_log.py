"""The library's loggers; configured only by entry points.

structlog is imported when the first logger is asked for, so commands
that log nothing do not pay for its import.
"""

from __future__ import annotations

from typing import Any


def get_logger(name: str, **initial: Any) -> Any:
    """Return a structlog logger bound to ``logger=name``."""
    import structlog

    return structlog.get_logger(name, **initial)
