"""The library's loggers; configured only by entry points.

Loggers are proxies: structlog is imported when the first event passes
the level an entry point set, so a command that logs nothing at its
level does not pay for the import.

A script that imports fencekit and configures nothing should not find
fencekit's events on its standard output (structlog's default): then
events go to the standard library's ``logging``, where, unless the
script configures it, only warnings and errors reach standard error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["get_logger", "set_threshold"]

_state: dict[str, Any] = {
    "threshold": logging.NOTSET,
    "apply": None,
    "configured": False,
}

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
    _state["configured"] = apply is not None


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

            if not _state["configured"] and not structlog.is_configured():
                _to_stdlib(self._name, level, event, self._initial, values)
                return
            logger = structlog.get_logger(self._name, **self._initial)
            getattr(logger, method)(event, **values)

        return emit


def _to_stdlib(
    name: str,
    level: int,
    event: str,
    initial: dict[str, Any],
    values: dict[str, Any],
) -> None:
    """One ``event key=value...`` line through ``logging``, redacted."""
    from fencekit.logging import redact

    fields = redact(None, "", {**initial, **values})
    text = " ".join(f"{k}={v!r}" for k, v in fields.items())
    logging.getLogger(name).log(level, "%s %s", event, text)


def get_logger(name: str, **initial: Any) -> Any:
    """Return a logger for ``name`` (events are names plus key/values)."""
    return _Logger(name, initial)
