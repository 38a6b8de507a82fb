"""TCP connect probe, with an optional send and expected reply."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from fencekit._hosts import check_hostname
from fencekit.probes._options import Options
from fencekit.probes.base import ProbeOutcome, outcome

__all__ = ["TcpProbe", "from_options"]

_READ_LIMIT = 64 * 1024


class TcpProbe:
    """Connect to a port; optionally send bytes and expect a reply.

    Args:
        host: name or address.
        port: TCP port.
        timeout: deadline in seconds for the whole probe.
        send: text sent once connected (``\\n`` escapes are kept as is).
        expect: a pattern the reply must contain before the deadline.
        ip_version: 4 or 6 to pin the address family, else either.

    Raises:
        ConfigError: the port or pattern is invalid.
    """

    kind = "tcp"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 5.0,
        send: str | None = None,
        expect: str | None = None,
        ip_version: int | None = None,
    ) -> None:
        from fencekit.errors import ConfigError

        if not 0 < port < 65536:
            raise ConfigError(f"not a port: {port}", where="port")
        try:
            self.expect = (
                re.compile(expect.encode("utf-8", "surrogateescape"))
                if expect
                else None
            )
        except re.error as exc:
            raise ConfigError(
                f"bad regular expression: {exc}", where="expect"
            ) from exc
        check_hostname(host, "host")
        self.host = host
        self.port = port
        self.target = (
            f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        )
        self.timeout = timeout
        # Bytes that are not UTF-8 on the command line arrive as
        # surrogate escapes: send them as they were typed.
        self.send = send.encode("utf-8", "surrogateescape") if send else None
        self.family = {4: socket.AF_INET, 6: socket.AF_INET6}.get(
            ip_version or 0, socket.AF_UNSPEC
        )

    async def run(self) -> ProbeOutcome:
        """Connect (and converse) within the deadline; never raises."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                reason = await self._converse()
        except TimeoutError:
            phase = "reply" if self.expect else "connect"
            reason = f"{phase}: no answer within {self.timeout:g} s"
        except OSError as exc:
            reason = f"connect: {exc.strerror or exc}"
        except (UnicodeError, ValueError) as exc:
            reason = f"connect: {type(exc).__name__}: {exc}"
        return outcome(self, started, not reason, reason)

    async def _converse(self) -> str:
        reader, writer = await asyncio.open_connection(
            self.host, self.port, family=self.family
        )
        try:
            if self.send:
                writer.write(self.send)
                await writer.drain()
            if self.expect:
                return await self._expect(reader)
            return ""
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _expect(self, reader: asyncio.StreamReader) -> str:
        assert self.expect is not None
        seen = b""
        while len(seen) < _READ_LIMIT:
            chunk = await reader.read(4096)
            if not chunk:
                return "reply: closed before the expected text"
            seen += chunk
            if self.expect.search(seen):
                return ""
        return "reply: expected text not in the first 64 KiB"


def from_options(table: Mapping[str, Any], where: str = "") -> TcpProbe:
    """Build a :class:`TcpProbe` from an option table.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
    """
    opts = Options(table, where)
    with opts.located():
        probe = TcpProbe(
            opts.text("host"),
            opts.integer("port", minimum=1),
            timeout=opts.number("timeout", 5.0, minimum=0.001),
            send=opts.text("send", None),
            expect=opts.text("expect", None),
            ip_version=opts.choice("ip_version", (4, 6, None), None),
        )
    opts.finish()
    return probe
