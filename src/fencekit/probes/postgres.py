"""PostgreSQL probe over psycopg 3 (its native asyncio connection).

Connect, run a query, and optionally require the server to be a primary
or a standby and a standby's replay lag to stay under a limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from fencekit.probes._options import Options
from fencekit.probes.base import Detail, ProbeOutcome, outcome
from fencekit.secrets import Secret

__all__ = ["PostgresProbe", "from_options"]

# On a standby whose last received WAL is all replayed there is no lag,
# however old the last replayed transaction: an idle primary sends none.
_STATE_QUERY = """
SELECT pg_is_in_recovery(),
       CASE
         WHEN NOT pg_is_in_recovery() THEN NULL
         WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
         ELSE COALESCE(
           extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)
       END
"""

# libpq's connect_timeout is whole seconds, and values below 2 are
# raised to 2 (libpq's documentation of connect_timeout).
_LIBPQ_MIN_CONNECT = 2


class PostgresProbe:
    """Connect to PostgreSQL, query, and check its role.

    Args:
        host: name, address, or a socket directory (starts with ``/``).
        port: TCP port.
        user: the role to log in as.
        dbname: the database.
        password: the password, if the server asks for one.
        timeout: deadline in seconds for the whole probe.
        query: a query that must succeed.
        role: ``primary`` or ``standby`` to require one of them.
        max_lag: largest replay lag in seconds a standby may have.
        sslmode: libpq's sslmode.
    """

    kind = "postgres"

    def __init__(
        self,
        host: str,
        *,
        port: int = 5432,
        user: str = "postgres",
        dbname: str = "postgres",
        password: Secret | None = None,
        timeout: float = 5.0,
        query: str = "SELECT 1",
        role: str | None = None,
        max_lag: float | None = None,
        sslmode: str = "prefer",
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.dbname = dbname
        self.password = password
        self.timeout = timeout
        self.query = query
        self.role = role
        self.max_lag = max_lag
        self.sslmode = sslmode
        self.target = f"postgresql://{user}@{host}:{port}/{dbname}"

    async def run(self) -> ProbeOutcome:
        """Connect and check within the deadline; never raises."""
        import psycopg

        started = time.monotonic()
        details: dict[str, Detail] = {}
        try:
            async with asyncio.timeout(self.timeout):
                reason = await self._check(details)
        except TimeoutError:
            reason = f"no answer within {self.timeout:g} s"
        except psycopg.Error as exc:
            reason = _reason(exc)
        return outcome(self, started, not reason, reason, details)

    async def _check(self, details: dict[str, Detail]) -> str:
        import psycopg

        connection = await psycopg.AsyncConnection.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            dbname=self.dbname,
            password=self.password.reveal() if self.password else None,
            connect_timeout=max(_LIBPQ_MIN_CONNECT, int(self.timeout + 1)),
            sslmode=self.sslmode,
            application_name="fencekit-probe",
            autocommit=True,
        )
        async with connection:
            await connection.execute(self.query)
            cursor = await connection.execute(_STATE_QUERY)
            row = await cursor.fetchone()
        assert row is not None
        in_recovery, lag = bool(row[0]), row[1]
        details["in_recovery"] = in_recovery
        if lag is not None:
            details["replication_lag_seconds"] = float(lag)
        return self._judge(in_recovery, None if lag is None else float(lag))

    def _judge(self, in_recovery: bool, lag: float | None) -> str:
        if self.role == "primary" and in_recovery:
            return "is a standby, expected a primary"
        if self.role == "standby" and not in_recovery:
            return "is a primary, expected a standby"
        if self.max_lag is not None and lag is not None and lag > self.max_lag:
            return f"replication lag {lag:.1f} s above {self.max_lag:g} s"
        return ""


def _reason(exc: BaseException) -> str:
    """The server's own message when it sent one, else libpq's."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return " ".join(str(primary).split())[:300]
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return " ".join(text.split())[:300]


def from_options(table: Mapping[str, Any], where: str = "") -> PostgresProbe:
    """Build a :class:`PostgresProbe` from an option table.

    The password comes from ``password_file``, ``password_env`` or
    ``password_command``.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
        SecretError: the password source gave no secret.
    """
    opts = Options(table, where)
    probe = PostgresProbe(
        opts.text("host"),
        port=opts.integer("port", 5432, minimum=1),
        user=opts.text("user", "postgres"),
        dbname=opts.text("dbname", "postgres"),
        password=opts.secret("password"),
        timeout=opts.number("timeout", 5.0, minimum=0.001),
        query=opts.text("query", "SELECT 1"),
        role=opts.choice("role", ("primary", "standby", None), None),
        max_lag=opts.number("max_lag", None),
        sslmode=opts.choice(
            "sslmode",
            (
                "disable",
                "allow",
                "prefer",
                "require",
                "verify-ca",
                "verify-full",
            ),
            "prefer",
        ),
    )
    opts.finish()
    return probe
