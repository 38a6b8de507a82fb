"""The library's loggers; configured only by entry points.

Loggers are proxies: structlog is imported when the first event passes
the level an entry point set, so a command that logs nothing at its
level does not pay for the import. Without an entry point, every event
goes to structlog with its default configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["get_logger", "set_threshold"]

_state: dict[str, Any] = {"threshold": logging.NOTSET, "apply": None}

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
    "exception": logging.ERROR,
}


def set_threshold(level: int, apply: Callable[[], None] | None) -> None:
    """Drop events below ``level``; run ``apply`` before the first one.

    Called only by :func:`fencekit.logging.configure`.
    """
    _state["threshold"] = level
    _state["apply"] = apply


class _Logger:
    """A structlog logger that is created on the first event it emits."""

    __slots__ = ("_initial", "_name")

    def __init__(self, name: str, initial: dict[str, Any]) -> None:
        self._name = name
        self._initial = initial

    def bind(self, **values: Any) -> _Logger:
        return _Logger(self._name, {**self._initial, **values})

    def __getattr__(self, method: str) -> Callable[..., None]:
        level = _LEVELS.get(method)
        if level is None:
            raise AttributeError(method)

        def emit(event: str, **values: Any) -> None:
            if level < _state["threshold"]:
                return
            apply, _state["apply"] = _state["apply"], None
            if apply is not None:
                apply()
            import structlog

            logger = structlog.get_logger(self._name, **self._initial)
            getattr(logger, method)(event, **values)

        return emit


def get_logger(name: str, **initial: Any) -> Any:
    """Return a logger for ``name`` (events are names plus key/values)."""
    return _Logger(name, initial)
