"""MariaDB/MySQL probe over PyMySQL (blocking, run in a thread).

Connect, ping, run a query, and optionally require the server to be
read-only or writable and a replica's lag to stay under a limit.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from fencekit.probes._options import Options
from fencekit.probes.base import (
    Detail,
    ProbeOutcome,
    ProbeTimeoutError,
    in_thread,
    outcome,
)
from fencekit.secrets import Secret

__all__ = ["MysqlProbe", "from_options"]


class MysqlProbe:
    """Connect to MariaDB/MySQL, ping, query, and check its state.

    Args:
        host: name or address, ignored when ``unix_socket`` is given.
        port: TCP port.
        user: the account to log in as.
        password: its password.
        database: the default database, if any.
        unix_socket: a socket path instead of TCP.
        timeout: deadline in seconds for the whole probe.
        query: a query that must succeed.
        read_only: require ``@@global.read_only`` to be this, if set.
        max_lag: largest ``Seconds_Behind_Master`` a replica may have;
            a replica whose SQL thread stopped (lag NULL) fails.
    """

    kind = "mysql"

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        port: int = 3306,
        user: str = "root",
        password: Secret | None = None,
        database: str | None = None,
        unix_socket: str | None = None,
        timeout: float = 5.0,
        query: str = "SELECT 1",
        read_only: bool | None = None,
        max_lag: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
        self.unix_socket = unix_socket
        self.timeout = timeout
        self.query = query
        self.read_only = read_only
        self.max_lag = max_lag
        where = unix_socket or f"{host}:{port}"
        self.target = f"mysql://{user}@{where}/{database or ''}"

    async def run(self) -> ProbeOutcome:
        """Connect and check within the deadline; never raises."""
        started = time.monotonic()
        details: dict[str, Detail] = {}
        try:
            reason = await in_thread(
                lambda: self._check(details), self.timeout
            )
        except ProbeTimeoutError as exc:
            reason = str(exc)
        return outcome(self, started, not reason, reason, dict(details))

    def _check(self, details: dict[str, Detail]) -> str:
        import pymysql

        # PyMySQL's timeouts are per socket operation; the thread ends
        # soon after the probe's own deadline.
        try:
            connection = pymysql.connect(
                host=self.host,
                port=self.port,
                user=self.user,
                password=self.password.reveal() if self.password else "",
                database=self.database,
                unix_socket=self.unix_socket,
                connect_timeout=self.timeout,
                read_timeout=self.timeout,
                write_timeout=self.timeout,
                autocommit=True,
            )
        except pymysql.MySQLError as exc:
            return f"connect: {_reason(exc)}"
        try:
            return self._inspect(connection, details)
        except pymysql.MySQLError as exc:
            return _reason(exc)
        finally:
            connection.close()

    def _inspect(self, connection: Any, details: dict[str, Detail]) -> str:
        connection.ping(reconnect=False)
        with connection.cursor() as cursor:
            cursor.execute(self.query)
            cursor.fetchall()
            cursor.execute("SELECT @@global.read_only")
            read_only = bool(int(cursor.fetchone()[0]))
            lag, replica = self._replica_lag(cursor)
        details["read_only"] = read_only
        if lag is not None:
            details["replication_lag_seconds"] = lag
        if self.read_only is not None and read_only != self.read_only:
            want = "read-only" if self.read_only else "writable"
            return f"server is not {want}"
        if self.max_lag is not None and replica:
            if lag is None:
                return "replica is not replaying (lag unknown)"
            if lag > self.max_lag:
                return f"replication lag {lag:g} s above {self.max_lag:g} s"
        return ""

    @staticmethod
    def _replica_lag(cursor: Any) -> tuple[float | None, bool]:
        import pymysql

        try:
            cursor.execute("SHOW REPLICA STATUS")
        except pymysql.err.ProgrammingError:
            # MySQL before 8.0.22 and MariaDB before 10.5 know only the
            # older spelling.
            cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
        if row is None:
            return None, False
        names = [d[0] for d in cursor.description]
        status = dict(zip(names, row, strict=True))
        lag = status.get("Seconds_Behind_Master")
        if lag is None:
            lag = status.get("Seconds_Behind_Source")
        return (None if lag is None else float(lag)), True


def _reason(exc: BaseException) -> str:
    args: tuple[Any, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[1], str):
        return f"({args[0]}) {args[1]}"[:300]
    return (str(exc) or type(exc).__name__)[:300]


def from_options(table: Mapping[str, Any], where: str = "") -> MysqlProbe:
    """Build a :class:`MysqlProbe` from an option table.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
        SecretError: the password source gave no secret.
    """
    opts = Options(table, where)
    read_only = opts.value("read_only", None)
    if read_only is not None and not isinstance(read_only, bool):
        raise opts.fail("read_only", "must be true or false")
    probe = MysqlProbe(
        opts.text("host", "127.0.0.1"),
        port=opts.integer("port", 3306, minimum=1),
        user=opts.text("user", "root"),
        password=opts.secret("password"),
        database=opts.text("database", None),
        unix_socket=opts.text("unix_socket", None),
        timeout=opts.number("timeout", 5.0, minimum=0.001),
        query=opts.text("query", "SELECT 1"),
        read_only=read_only,
        max_lag=opts.number("max_lag", None),
    )
    opts.finish()
    return probe
