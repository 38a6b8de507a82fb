"""Logging set-up for fencekit's entry points (CLI, agents).

Library code never calls :func:`configure`. Entry points call it once:
JSON lines when stderr is not a terminal, readable console output when it
is. The redaction processor runs last before rendering, as a final line of
defence: values under known secret keys are masked, and so is any
:class:`~fencekit.secrets.Secret` that reached an event.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

from fencekit._log import set_threshold
from fencekit.secrets import MASK, Secret

__all__ = ["SECRET_KEYS", "configure", "redact"]

SECRET_KEYS = frozenset(
    {
        "authorization",
        "auth_key",
        "authkey",
        "community",
        "kg",
        "kg_key",
        "passwd",
        "password",
        "priv_key",
        "privkey",
        "secret",
        "token",
        "x_auth_token",
    }
)


def _is_secret_key(key: str) -> bool:
    norm = key.lower().replace("-", "_")
    return norm in SECRET_KEYS or norm.endswith(("_password", "_token"))


def _scrub(value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, Mapping):
        return {
            k: MASK if _is_secret_key(str(k)) else _scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def redact(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secrets under known keys and types."""
    for key in list(event):
        if _is_secret_key(key):
            event[key] = MASK
        else:
            event[key] = _scrub(event[key])
    return event


def configure(
    *,
    verbosity: int = 0,
    json: bool | None = None,
    stream: TextIO | None = None,
    quiet: bool = False,
) -> None:
    """Configure structlog for an entry point.

    Args:
        verbosity: 0 logs warnings and up, 1 info, 2 or more debug.
        json: force JSON lines (True) or console output (False); by
            default JSON unless the stream is a terminal.
        stream: where to write; standard error by default.
        quiet: log errors only, whatever ``verbosity`` says (commands
            whose own output already tells the story).
    """
    out = stream if stream is not None else sys.stderr
    if json is None:
        json = not out.isatty()
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    if quiet:
        level = logging.ERROR
    as_json = json

    def apply() -> None:
        import structlog

        renderer: Any
        if as_json:
            renderer = structlog.processors.JSONRenderer()
        else:
            renderer = structlog.dev.ConsoleRenderer(colors=False)
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                redact,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(level),
            logger_factory=structlog.PrintLoggerFactory(out),
            cache_logger_on_first_use=False,
        )

    # structlog is configured, and imported, only when the first event
    # at this level is logged.
    set_threshold(level, apply)
