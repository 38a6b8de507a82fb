"""Reading a TOML configuration file, with one-line errors."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from fencekit.errors import ConfigError


def read(file: Path) -> dict[str, Any]:
    """The table in ``file``.

    Raises:
        ConfigError: it cannot be read, or is not TOML (or not UTF-8);
            the message names the file.
    """
    try:
        with file.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot read: {reason}", where=str(file)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", where=str(file)) from exc
    except UnicodeDecodeError as exc:
        # tomllib decodes the whole file before parsing it (TOML 1.0:
        # UTF-8 only) and lets the codec's error through.
        raise ConfigError(
            f"not valid TOML: not UTF-8 at byte {exc.start}", where=str(file)
        ) from exc
