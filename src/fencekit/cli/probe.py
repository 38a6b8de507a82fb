"""``fencekit probe``: one probe, now; exit 0 when healthy."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fencekit.cli import _common


def register(sub: Any) -> None:
    """Add ``probe`` and its kinds to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "probe",
        help="probe a service or device once",
        description="Probe once; exit 0 when healthy, 1 when not.",
    )
    kinds = parser.add_subparsers(dest="kind", metavar="KIND")
    kinds.required = True
    for add in (_http, _tcp, _postgres, _mysql, _multipath, _disk, _command):
        kind = add(kinds)
        kind.add_argument(
            "--timeout",
            type=_common.positive_float,
            default=5.0,
            metavar="SECONDS",
            help="deadline of the probe (5)",
        )
        kind.add_argument("--json", action="store_true", help="print JSON")
        kind.set_defaults(handler=handle)


def _http(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "http", help="an HTTP(S) request"
    )
    p.add_argument("url")
    p.add_argument(
        "--expect-status",
        type=int,
        action="append",
        metavar="CODE",
        help="accepted status code, repeatable (default 200-399)",
    )
    p.add_argument("--body-regex", metavar="REGEX")
    p.add_argument(
        "--header-required",
        action="append",
        default=[],
        metavar="NAME[=REGEX]",
        help="a header the answer must carry, repeatable",
    )
    p.add_argument("--method", default="GET")
    p.add_argument(
        "--no-follow-redirects", action="store_true", help="judge a 3xx"
    )
    p.add_argument("--ca-file", metavar="FILE")
    p.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the server certificate",
    )
    p.add_argument("--client-cert", metavar="FILE")
    p.add_argument("--client-key", metavar="FILE")
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ip_version", action="store_const", const=4)
    family.add_argument("-6", dest="ip_version", action="store_const", const=6)
    return p


def _tcp(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser("tcp", help="a TCP connect")
    p.add_argument("host")
    p.add_argument("port", type=_common.port_number)
    p.add_argument("--send", metavar="TEXT")
    p.add_argument("--expect", metavar="REGEX")
    family = p.add_mutually_exclusive_group()
    family.add_argument("-4", dest="ip_version", action="store_const", const=4)
    family.add_argument("-6", dest="ip_version", action="store_const", const=6)
    return p


def _database(p: argparse.ArgumentParser, port: int, user: str) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_common.port_number, default=port)
    p.add_argument("--user", default=user)
    p.add_argument("--query", default="SELECT 1")
    p.add_argument(
        "--max-lag",
        type=float,
        metavar="SECONDS",
        help="largest replication lag a standby or replica may have",
    )
    _common.add_password_options(p, required=False)


def _postgres(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "postgres", help="a PostgreSQL server"
    )
    _database(p, 5432, "postgres")
    p.add_argument("--dbname", default="postgres")
    p.add_argument("--role", choices=("primary", "standby"))
    return p


def _mysql(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "mysql", help="a MariaDB or MySQL server"
    )
    _database(p, 3306, "root")
    p.add_argument("--database")
    p.add_argument("--unix-socket", metavar="PATH")
    state = p.add_mutually_exclusive_group()
    state.add_argument(
        "--read-only",
        dest="read_only",
        action="store_const",
        const=True,
        help="require read_only to be on",
    )
    state.add_argument(
        "--writable",
        dest="read_only",
        action="store_const",
        const=False,
        help="require read_only to be off",
    )
    return p


def _multipath(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "multipath", help="multipath maps and their paths"
    )
    p.add_argument(
        "--source",
        choices=("json", "paths", "ll"),
        default="json",
        help="which multipath output to read (json)",
    )
    p.add_argument(
        "--input-file", metavar="FILE", help="read saved output from FILE"
    )
    p.add_argument(
        "--map", dest="maps", action="append", default=[], metavar="NAME"
    )
    p.add_argument("--min-active", type=int, default=1)
    p.add_argument("--fail-on-degraded", action="store_true")
    return p


def _disk(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "disk", help="an O_DIRECT read from a device or file"
    )
    p.add_argument("path")
    p.add_argument("--offset", type=int, default=0)
    p.add_argument("--block-size", type=int, default=4096)
    p.add_argument(
        "--heartbeat-offset",
        type=int,
        metavar="BYTES",
        help="also write and re-read a block here (it is overwritten)",
    )
    return p


def _command(kinds: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = kinds.add_parser(
        "command", help="run a program and judge its exit code"
    )
    p.add_argument("argv", nargs="+", metavar="ARG")
    return p


def _table(args: argparse.Namespace) -> dict[str, Any]:
    """The probe's option table, as the configuration would give it."""
    table: dict[str, Any] = {"timeout": args.timeout}
    kind = args.kind
    if kind == "http":
        table.update(
            url=args.url,
            expect_status=args.expect_status or [],
            body_regex=args.body_regex,
            headers_required=dict(
                ([*h.split("=", 1), ""])[:2] for h in args.header_required
            ),
            method=args.method,
            follow_redirects=not args.no_follow_redirects,
            verify_tls=not args.insecure,
            ca_file=args.ca_file,
            client_cert=args.client_cert,
            client_key=args.client_key,
            ip_version=args.ip_version,
        )
    elif kind == "tcp":
        table.update(
            host=args.host,
            port=args.port,
            send=args.send,
            expect=args.expect,
            ip_version=args.ip_version,
        )
    elif kind in ("postgres", "mysql"):
        table.update(
            host=args.host,
            port=args.port,
            user=args.user,
            query=args.query,
            max_lag=args.max_lag,
            password_file=args.password_file,
            password_env=args.password_env,
            password_command=args.password_command,
        )
        if kind == "postgres":
            table.update(dbname=args.dbname, role=args.role)
        else:
            table.update(
                database=args.database,
                unix_socket=args.unix_socket,
                read_only=args.read_only,
            )
    elif kind == "multipath":
        table.update(
            source=args.source,
            input_file=args.input_file,
            maps=args.maps,
            min_active=args.min_active,
            fail_on_degraded=args.fail_on_degraded,
        )
    elif kind == "disk":
        table.update(
            path=args.path,
            offset=args.offset,
            block_size=args.block_size,
            heartbeat_offset=args.heartbeat_offset,
        )
    else:
        table.update(command=args.argv)
    return table


_POSITIONAL = {
    "http": ("url",),
    "tcp": ("host", "port"),
    "disk": ("path",),
    "command": ("command",),
}


def _option_name(kind: str, where: str) -> str:
    """The command-line spelling of option-table key ``where``."""
    key = where.split(".")[0]
    if key in _POSITIONAL.get(kind, ()):
        return key.upper()
    return "--" + key.replace("_", "-")


async def _once(probe: Any) -> Any:
    from fencekit.probes.base import close

    try:
        return await probe.run()
    finally:
        await close(probe)


def handle(args: argparse.Namespace) -> int:
    """Probe once; exit 0 when healthy, 1 when not."""
    from fencekit.errors import ConfigError
    from fencekit.probes import build

    try:
        probe = build(args.kind, _table(args))
    except ConfigError as exc:
        if exc.where:
            message = exc.message.removeprefix(f"{exc.where}: ")
            raise ConfigError(
                message, where=_option_name(args.kind, exc.where)
            ) from exc
        raise
    outcome = asyncio.run(_once(probe))

    if outcome.healthy:
        text = f"{outcome.target}: healthy ({outcome.duration:.3f} s)"
        _common.emit(outcome.to_dict(), text, args.json)
        return _common.EXIT_OK
    if args.json:
        _common.emit(outcome.to_dict(), "", True)
    _common.error(f"{outcome.target}: unhealthy: {outcome.reason}")
    return _common.EXIT_FAILED
