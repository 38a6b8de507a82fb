"""Reading a probe's options from TOML tables or the command line.

Every mistake becomes one :class:`~fencekit.errors.ConfigError` naming
the key, prefixed by where the table came from (file and table).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from fencekit.errors import ConfigError
from fencekit.secrets import Secret, from_command, from_env, from_file

_MISSING: Any = object()


# No probe option (seconds, lag, sizes) needs more; larger values only
# overflow the clock and timers.
_MAX_NUMBER = 1e9


class Options:
    """Typed access to one probe's option table.

    Args:
        table: the options, as TOML or the command line gave them.
        where: the file and table, for messages (``agent.toml:
            checks.web``).
    """

    def __init__(self, table: Mapping[str, Any], where: str) -> None:
        self._table = dict(table)
        self._where = where
        self._used: set[str] = set()

    def where(self, key: str) -> str:
        """The location of ``key``, for messages."""
        return f"{self._where}.{key}" if self._where else key

    def fail(self, key: str, message: str) -> ConfigError:
        """A ConfigError about ``key``."""
        return ConfigError(message, where=self.where(key))

    def value(self, key: str, default: Any = _MISSING) -> Any:
        """An option of any type."""
        return self._get(key, default)

    def _get(self, key: str, default: Any) -> Any:
        self._used.add(key)
        if key in self._table and self._table[key] is not None:
            return self._table[key]
        if default is _MISSING:
            raise self.fail(key, "is required")
        return default

    def text(self, key: str, default: Any = _MISSING) -> Any:
        """A string option."""
        value = self._get(key, default)
        if value is not default and not isinstance(value, str):
            raise self.fail(key, "must be a string")
        return value

    def number(
        self, key: str, default: Any = _MISSING, *, minimum: float = 0.0
    ) -> Any:
        """A number option, at least ``minimum``."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(key, "must be a number")
        if value < minimum or value != value or value == float("inf"):
            raise self.fail(key, f"must be at least {minimum:g}")
        if value > _MAX_NUMBER:
            raise self.fail(key, f"must be at most {_MAX_NUMBER:g}")
        return value

    def integer(
        self, key: str, default: Any = _MISSING, *, minimum: int = 0
    ) -> Any:
        """A whole-number option, at least ``minimum``."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, "must be a whole number")
        if value < minimum:
            raise self.fail(key, f"must be at least {minimum}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        """A true/false option."""
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(key, "must be true or false")
        return value

    def texts(self, key: str, default: Any = _MISSING) -> Any:
        """A list of strings (a single string is a list of one)."""
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(
            isinstance(v, str) for v in value
        ):
            raise self.fail(key, "must be a list of strings")
        return list(value)

    def choice(self, key: str, choices: tuple[Any, ...], default: Any) -> Any:
        """One of ``choices``."""
        value = self._get(key, default)
        if value not in choices:
            names = ", ".join(str(c) for c in choices if c is not None)
            raise self.fail(key, f"must be one of {names}")
        return value

    def secret(self, key: str) -> Secret | None:
        """A secret given as ``KEY_file``, ``KEY_env`` or ``KEY_command``.

        A secret is never read from the table itself, so that a
        configuration file can be shared without leaking it.

        Raises:
            ConfigError: the key itself was given, or two sources were.
            SecretError: the source gave no secret.
        """
        if key in self._table:
            self._used.add(key)
            raise self.fail(
                key,
                f"give {key}_file, {key}_env or {key}_command, never the"
                " value itself",
            )
        sources = {
            f"{key}_file": from_file,
            f"{key}_env": from_env,
            f"{key}_command": from_command,
        }
        given = [k for k in sources if self._table.get(k) is not None]
        self._used.update(sources)
        if len(given) > 1:
            raise self.fail(given[1], f"conflicts with {given[0]}")
        if not given:
            return None
        name = given[0]
        value = self._table[name]
        if not isinstance(value, str):
            raise self.fail(name, "must be a string")
        return sources[name](value)

    @contextlib.contextmanager
    def located(self) -> Iterator[None]:
        """Prefix the location of ConfigErrors raised inside the block."""
        try:
            yield
        except ConfigError as exc:
            key = exc.where
            if not self._where or key is None or key.startswith(self._where):
                raise
            message = exc.message.removeprefix(f"{key}: ")
            raise ConfigError(message, where=self.where(key)) from exc

    def finish(self) -> None:
        """Reject keys that no option read.

        Raises:
            ConfigError: a key is unknown.
        """
        unknown = sorted(set(self._table) - self._used)
        if unknown:
            raise self.fail(unknown[0], "unknown option")
