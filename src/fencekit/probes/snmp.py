"""SNMP probe: GET one or more OIDs and compare each with what is expected.

For storage arrays, UPSes, PDUs and BMCs that report their health over
SNMP. Each expectation names an OID and one comparison: ``equals`` (a
number or a text), ``min`` and/or ``max`` (a number range, inclusive),
or ``matches`` (a regular expression searched in the value's text)::

    [checks.ups-battery]
    kind = "snmp"
    host = "192.0.2.40"
    community_file = "/etc/fencekit/ups-community"
    expect = [
        # UPS-MIB upsBatteryStatus: batteryNormal(2)
        { oid = "1.3.6.1.2.1.33.1.2.1.0", equals = 2, name = "battery" },
        # upsEstimatedChargeRemaining, percent
        { oid = "1.3.6.1.2.1.33.1.2.4.0", min = 50, name = "charge" },
    ]

SNMPv3 takes ``version = "3"``, ``user``, ``auth_protocol``,
``auth_key_file`` (or ``_env``, ``_command``), ``priv_protocol`` and
``priv_key_file``. All OIDs are read in one request; every value read is
in the outcome's details (under ``name``, else the OID).
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from fencekit._snmp import (
    AUTH_PROTOCOLS,
    PRIV_PROTOCOLS,
    SnmpClient,
    SnmpCredentials,
    Value,
    check_oid,
)
from fencekit.errors import ConfigError, FencekitError
from fencekit.probes._options import Options
from fencekit.probes.base import Detail, ProbeOutcome, outcome

__all__ = ["Expectation", "SnmpProbe", "from_options"]


@dataclasses.dataclass(frozen=True)
class Expectation:
    """What one OID must hold.

    Attributes:
        oid: the numeric OID, instance included (``...1.0``).
        name: the name in the outcome's details; the OID when empty.
        equals: the exact value (a number, or a text).
        minimum: the lowest number allowed.
        maximum: the highest number allowed.
        matches: a regular expression searched in the value's text.

    Raises:
        ConfigError: no comparison, or a bad OID or pattern.
    """

    oid: str
    name: str = ""
    equals: int | str | None = None
    minimum: float | None = None
    maximum: float | None = None
    matches: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "oid", check_oid(self.oid, "oid"))
        given = [
            self.equals is not None,
            self.minimum is not None or self.maximum is not None,
            self.matches is not None,
        ]
        if sum(given) != 1:
            raise ConfigError(
                "give exactly one of equals, min/max or matches",
                where="equals",
            )
        if self.matches is not None:
            try:
                re.compile(self.matches)
            except re.error as exc:
                raise ConfigError(
                    f"bad regular expression: {exc}", where="matches"
                ) from exc

    @property
    def label(self) -> str:
        """The name in details and reasons."""
        return self.name or self.oid

    def judge(self, value: Value | None) -> str:
        """Why ``value`` fails the expectation; empty when it holds."""
        if value is None:
            return f"{self.label}: no such object"
        if self.matches is not None:
            if re.search(self.matches, str(value)):
                return ""
            return f"{self.label}: {value!r} does not match {self.matches!r}"
        if self.equals is not None:
            if _same(value, self.equals):
                return ""
            return f"{self.label}: {value!r}, expected {self.equals!r}"
        return self._in_range(value)

    def _in_range(self, value: Value) -> str:
        number = _number(value)
        if number is None:
            return f"{self.label}: {value!r} is not a number"
        if self.minimum is not None and number < self.minimum:
            return f"{self.label}: {number:g} below {self.minimum:g}"
        if self.maximum is not None and number > self.maximum:
            return f"{self.label}: {number:g} above {self.maximum:g}"
        return ""


def _number(value: Value) -> float | None:
    if isinstance(value, int):
        return float(value)
    try:
        return float(value.strip())
    except ValueError:
        return None


def _same(value: Value, wanted: int | str) -> bool:
    if isinstance(wanted, int):
        return _number(value) == float(wanted)
    return str(value) == wanted


class SnmpProbe:
    """GET OIDs from one agent and judge each against its expectation.

    Args:
        host: the agent's address.
        expectations: what each OID must hold.
        credentials: how to authenticate.
        port: the agent's UDP port (161).
        timeout: deadline in seconds for the whole probe.
        retries: resends of an unanswered request within the deadline.

    Raises:
        ConfigError: no expectations.
    """

    kind = "snmp"

    def __init__(
        self,
        host: str,
        expectations: Sequence[Expectation],
        *,
        credentials: SnmpCredentials,
        port: int = 161,
        timeout: float = 5.0,
        retries: int = 1,
    ) -> None:
        if not expectations:
            raise ConfigError("needs at least one OID", where="expect")
        self.host = host
        self.port = port
        self.expectations = tuple(expectations)
        self.credentials = credentials
        self.timeout = timeout
        self.retries = retries
        self.target = host if port == 161 else f"{host}:{port}"
        self._snmp: SnmpClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SnmpProbe({self.target!r}, {self.credentials.describe()!r})"

    async def run(self) -> ProbeOutcome:
        """Read every OID in one GET and judge them; never raises."""
        started = time.monotonic()
        client = await self._client()
        try:
            values = await client.get(
                [e.oid for e in self.expectations], self.timeout
            )
        except FencekitError as exc:
            return outcome(self, started, False, str(exc))

        details: dict[str, Detail] = {}
        failures: list[str] = []
        for expectation in self.expectations:
            value = values.get(expectation.oid)
            if value is not None:
                details[expectation.label] = value
            failure = expectation.judge(value)
            if failure:
                failures.append(failure)
        return outcome(
            self, started, not failures, "; ".join(failures), details
        )

    async def _client(self) -> SnmpClient:
        """The client, kept between runs on the same event loop.

        A pysnmp engine costs a few hundred milliseconds of CPU to build
        (it loads its MIB modules), so it is kept; but it is bound to
        the loop that first used it, so a new loop gets a new one.
        """
        loop = asyncio.get_running_loop()
        if self._snmp is not None and self._loop is not loop:
            await self.close()
        if self._snmp is None:
            self._snmp = SnmpClient(
                self.host,
                credentials=self.credentials,
                port=self.port,
                retries=self.retries,
            )
            self._loop = loop
        return self._snmp

    async def close(self) -> None:
        """Close the SNMP engine kept between runs; safe to call twice."""
        client, self._snmp = self._snmp, None
        self._loop = None
        if client is not None:
            await client.close()


def from_options(table: Mapping[str, Any], where: str = "") -> SnmpProbe:
    """Build an :class:`SnmpProbe` from an option table.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
        SecretError: a credential source gave no secret.
    """
    opts = Options(table, where)
    # Options.fail already names the key in full: only the errors of
    # the constructors below need the table's location added.
    values = {
        "version": opts.choice("version", ("1", "2c", "3"), "2c"),
        "community": opts.secret("community"),
        "user": opts.text("user", None),
        "auth_protocol": opts.choice("auth_protocol", AUTH_PROTOCOLS, "sha"),
        "auth_key": opts.secret("auth_key"),
        "priv_protocol": opts.choice("priv_protocol", PRIV_PROTOCOLS, "aes"),
        "priv_key": opts.secret("priv_key"),
    }
    host = opts.text("host")
    expectations = _expectations(opts)
    port = opts.integer("port", 161, minimum=1)
    timeout = opts.number("timeout", 5.0, minimum=0.001)
    retries = opts.integer("retries", 1)
    with opts.located():
        probe = SnmpProbe(
            host,
            expectations,
            credentials=SnmpCredentials(**values),
            port=port,
            timeout=timeout,
            retries=retries,
        )
    opts.finish()
    return probe


def _expectations(opts: Options) -> list[Expectation]:
    entries = opts.value("expect")
    if not isinstance(entries, list) or not entries:
        raise opts.fail("expect", "must be a list of tables, one per OID")
    built = []
    for index, entry in enumerate(entries):
        at = f"expect[{index}]"
        if not isinstance(entry, Mapping):
            raise opts.fail(at, "must be a table")
        inner = Options(entry, opts.where(at))
        values = {
            "oid": inner.text("oid"),
            "name": inner.text("name", ""),
            "equals": _scalar(inner, "equals"),
            "minimum": inner.number("min", None, minimum=-1e18),
            "maximum": inner.number("max", None, minimum=-1e18),
            "matches": inner.text("matches", None),
        }
        with inner.located():
            built.append(Expectation(**values))
        inner.finish()
    return built


def _scalar(opts: Options, key: str) -> int | str | None:
    value = opts.value(key, None)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise opts.fail(key, "must be a whole number or a text")
    return value
