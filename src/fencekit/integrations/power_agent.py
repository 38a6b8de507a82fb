"""Fence agents for power drivers: one agent per driver, one runner.

Each power driver of :mod:`fencekit.power.drivers` gets its own agent
(``fence_fencekit_ipmi`` for ``ipmi``...), so an operator picks the agent
by the kind of device, and ``pcs stonith describe`` shows only the
options that device has. The agents share the options every power
device needs, the timing options Pacemaker passes, and this runner.

Every action goes through :func:`fencekit.power.operate.attempt`: the
agent reports success only when the power state was read back.

One agent can serve several nodes with ``host_map`` (``node-a=10.0.0.1;
node-b=10.0.0.2:6230``): the target Pacemaker names with ``plug``
(``port``) or ``nodename`` selects the device's address.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from fencekit.errors import ConfigError, FencekitError
from fencekit.integrations.fence_agent import (
    EXIT_FAILED,
    EXIT_OFF,
    EXIT_OK,
    AgentSpec,
    Parameter,
    Recorder,
    Request,
)
from fencekit.outcome import Action, FenceOutcome, PowerState

if TYPE_CHECKING:
    from fencekit.power.base import PowerDriver
    from fencekit.secrets import Secret

T = TypeVar("T")

__all__ = [
    "COMMON_PARAMETERS",
    "POWER_ACTIONS",
    "Address",
    "PowerAgent",
    "parse_address",
    "parse_host_map",
    "power_spec",
]

POWER_ACTIONS = (
    "on",
    "off",
    "reboot",
    "status",
    "list",
    "list-status",
    "monitor",
    "validate-all",
)

COMMON_PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "action",
        "string",
        "Fencing action: on, off, reboot, status, list, list-status,"
        " monitor, metadata or validate-all",
        short="o",
    ),
    Parameter(
        "plug",
        "string",
        "The node to act on, as Pacemaker names it; looked up in"
        " host_map when one is given",
        short="n",
        replaces="port",
    ),
    Parameter(
        "nodename",
        "string",
        "The node to act on, used when neither plug nor port is given",
    ),
    Parameter(
        "delay",
        "second",
        "Seconds to wait before off or reboot, to settle fence races"
        " between two nodes",
        default="0",
    ),
    Parameter(
        "power_timeout",
        "second",
        "Seconds for one action, its verification included (each half of"
        " a reboot gets this long)",
        default="20",
    ),
    Parameter(
        "power_wait",
        "second",
        "Seconds to wait after the new power state was verified, before"
        " reporting success",
        default="0",
    ),
    Parameter(
        "stonith_status_sleep",
        "second",
        "Seconds between two readings of the power state while it is"
        " not yet the one asked for",
        default="0.25",
    ),
    Parameter(
        "settle",
        "integer",
        "Consecutive readings of the new power state required before an"
        " action counts as verified",
        default="2",
    ),
    Parameter(
        "retry_on",
        "integer",
        "Attempts at powering on (off is never repeated blindly)",
        default="1",
    ),
    Parameter(
        "login_timeout",
        "second",
        "Accepted for compatibility with other fence agents; fencekit"
        " bounds every exchange by power_timeout",
    ),
    Parameter(
        "shell_timeout",
        "second",
        "Accepted for compatibility with other fence agents; fencekit"
        " runs no shell",
    ),
    Parameter(
        "journal",
        "string",
        "Append a durable record of every on, off and reboot to this"
        " fencekit journal file",
    ),
    Parameter(
        "verbose",
        "boolean",
        "Log each step (debug level) to standard error",
        short="v",
    ),
    Parameter(
        "debug_file",
        "string",
        "Append the log to this file instead of standard error",
        short="D",
    ),
)

_DEVICE_PARAMETERS: tuple[Parameter, ...] = (
    Parameter(
        "ip",
        "string",
        "Address of the fence device; required unless host_map is given",
        short="a",
        replaces="ipaddr",
    ),
    Parameter(
        "ipport",
        "integer",
        "Port of the fence device (the driver's default when unset)",
        short="u",
    ),
    Parameter(
        "host_map",
        "string",
        "Node-to-device map for one agent serving several nodes:"
        " node=address[:port] pairs separated by ; , or spaces",
    ),
    Parameter(
        "username",
        "string",
        "Account on the fence device",
        required=True,
        short="l",
        replaces="login",
    ),
    Parameter(
        "password",
        "string",
        "Password of the account (standard input only)",
        short="p",
        replaces="passwd",
        secret=True,
    ),
    Parameter(
        "password_file",
        "string",
        "Read the password from the first line of this file",
    ),
    Parameter(
        "password_script",
        "string",
        "Run this command (no shell) and read the password from the"
        " first line it prints",
        short="S",
    ),
)

# Agents whose plug is an outlet or port of one shared device (a PDU, a
# switch) take the device's own credentials, not a user account, and
# leave node-to-outlet mapping to Pacemaker's pcmk_host_map.
_OUTLET_EXCLUDED = frozenset(
    {"host_map", "username", "password", "password_file", "password_script"}
)

OptionsBuilder = Callable[[Request], dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class PowerAgent:
    """One power driver's agent.

    Attributes:
        driver: the driver's name in :mod:`fencekit.power.drivers`.
        shortdesc: one line for the metadata.
        longdesc: a paragraph for the metadata.
        parameters: the driver's own options.
        options: turns the request into the driver's options.
        outlet: the plug names an outlet or port of one shared device
            and is handed to the driver; nodes are mapped to plugs by
            Pacemaker (``pcmk_host_map``), and ``host_map``, ``username``
            and the password options come from ``parameters`` instead.
    """

    driver: str
    shortdesc: str
    longdesc: str
    parameters: tuple[Parameter, ...]
    options: OptionsBuilder
    outlet: bool = False

    @property
    def name(self) -> str:
        """The agent's executable name."""
        return "fence_fencekit_" + self.driver.replace("-", "_")


def power_spec(agent: PowerAgent) -> AgentSpec:
    """Return the fence-agent spec of a power driver's agent."""
    return AgentSpec(
        name=agent.name,
        shortdesc=agent.shortdesc,
        longdesc=agent.longdesc + _LONGDESC_TAIL,
        parameters=(
            *COMMON_PARAMETERS[:3],
            *_device_parameters(agent),
            *agent.parameters,
            *COMMON_PARAMETERS[3:],
        ),
        actions=POWER_ACTIONS,
        default_action="reboot",
        handler=lambda request: _handle(agent, request),
        checker=lambda request: _check(agent, request),
    )


def _device_parameters(agent: PowerAgent) -> tuple[Parameter, ...]:
    if not agent.outlet:
        return _DEVICE_PARAMETERS
    return tuple(
        p for p in _DEVICE_PARAMETERS if p.name not in _OUTLET_EXCLUDED
    )


def _has(request: Request, name: str) -> bool:
    """Whether the agent has option ``name`` and it was given."""
    if request.spec.parameter(name) is None:
        return False
    return request.options.string(name) is not None


_LONGDESC_TAIL = (
    " An action succeeds only when the power state was read back from the"
    " device; a command the device accepted is not enough. The password"
    " comes from standard input, password_file or password_script, never"
    " from the command line."
)


@dataclasses.dataclass(frozen=True)
class Address:
    """A fence device's address: host and optional port."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        if self.port is None:
            return self.host
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_address(text: str, where: str) -> Address:
    """Parse ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``.

    Raises:
        ConfigError: an empty host or a port that is not 1-65535.
    """
    text = text.strip()
    port_text = ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"cannot read address {text!r}", where=where)
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    if not host:
        raise ConfigError(f"no host in {text!r}", where=where)
    if not port_text:
        return Address(host)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"bad port in {text!r}", where=where)
    return Address(host, int(port_text))


def parse_host_map(text: str) -> dict[str, Address]:
    """Parse ``node=address[:port]`` pairs separated by ``;`` ``,`` or
    white space.

    Raises:
        ConfigError: an entry without ``=``, a bad address, or a node
            named twice.
    """
    entries: dict[str, Address] = {}
    for item in text.replace(";", " ").replace(",", " ").split():
        node, sep, address = item.partition("=")
        if not sep or not node:
            raise ConfigError(
                f"expected node=address, got {item!r}", where="host_map"
            )
        if node in entries:
            raise ConfigError(f"node {node!r} twice", where="host_map")
        entries[node] = parse_address(address, "host_map")
    return entries


def _check(agent: PowerAgent, request: Request) -> None:
    """Validate what every action needs, without touching the device."""
    options = request.options
    if not _has(request, "host_map") and not options.string("ip"):
        raise ConfigError("required (or give host_map)", where="ip")
    devices = _devices(request)
    if not agent.outlet:
        if not options.string("username"):
            raise ConfigError("required", where="username")
        _password_source(request)
    if _has(request, "password_file"):
        _password(request)
    for name in ("settle", "retry_on"):
        value = options.integer(name)
        if value is not None and value < 1:
            raise ConfigError("must be at least 1", where=name)
    timeout = options.seconds("power_timeout")
    if timeout is not None and timeout <= 0:
        raise ConfigError("must be above zero", where="power_timeout")

    from fencekit.secrets import Secret

    # Building a driver checks its own options (an IPMI user name of at
    # most 16 bytes...) without talking to the device.
    for address in devices.values():
        _build(agent, request, address, Secret("", source="validation"))


def _outlet(request: Request) -> str:
    """The plug of an outlet agent; monitor without one reads outlet 1.

    Raises:
        ConfigError: no plug was given for an action that needs one.
    """
    plug = request.options.string("plug")
    if plug is not None:
        return plug
    if request.action in ("monitor", "validate-all", "list", "list-status"):
        return "1"
    raise ConfigError("required: the outlet or port", where="plug")


def _password_source(request: Request) -> str:
    given = [
        name
        for name in ("password", "password_file", "password_script")
        if request.options.string(name)
    ]
    if not given:
        raise ConfigError(
            "required: password, password_file or password_script",
            where="password",
        )
    if len(given) > 1:
        raise ConfigError(f"give only one of {', '.join(given)}")
    return given[0]


def _password(request: Request, *, required: bool = True) -> Secret:
    from fencekit.secrets import Secret, from_command, from_file

    options = request.options
    if not required and not any(
        _has(request, name)
        for name in ("password", "password_file", "password_script")
    ):
        return Secret("", source="none")
    source = _password_source(request)
    if source == "password_file":
        return from_file(options.text("password_file") or "")
    if source == "password_script":
        return from_command(options.text("password_script") or "")
    return Secret(options.text("password") or "", source="standard input")


def _target(request: Request) -> str | None:
    options = request.options
    return options.string("plug") or options.string("nodename")


def _node(request: Request) -> str | None:
    """The node acted on, for outcomes and the journal."""
    return request.options.string("nodename") or _target(request)


def _devices(request: Request) -> dict[str, Address]:
    """Every device the agent knows: the host map, or ``ip`` alone."""
    options = request.options
    if _has(request, "host_map"):
        return parse_host_map(options.text("host_map") or "")
    address = parse_address(options.text("ip") or "", "ip")
    node = _target(request) or address.host
    return {node: address}


def _device_for(request: Request, target: str | None) -> Address:
    """The address of the device that powers ``target``.

    Raises:
        ConfigError: no target was named, or the host map lacks it.
    """
    options = request.options
    if not _has(request, "host_map"):
        return parse_address(options.text("ip") or "", "ip")
    if target is None:
        raise ConfigError("required with host_map", where="plug")
    devices = parse_host_map(options.text("host_map") or "")
    if target not in devices:
        raise ConfigError(f"node {target!r} is not in host_map", where="plug")
    return devices[target]


def _build(
    agent: PowerAgent, request: Request, address: Address, password: Secret
) -> PowerDriver:
    from fencekit.power.drivers import build

    port = address.port
    if port is None:
        port = request.options.integer("ipport")
    options = agent.options(request)
    if agent.outlet:
        options["plug"] = _outlet(request)
    return build(
        agent.driver,
        address.host,
        port=port,
        username=request.options.string("username") or "",
        password=password,
        options=options,
    )


def _handle(agent: PowerAgent, request: Request) -> int:
    """Run one action; every fencekit error becomes exit code 1."""
    try:
        return asyncio.run(_dispatch(agent, request))
    except FencekitError as exc:
        return request.fail(str(exc))


async def _dispatch(agent: PowerAgent, request: Request) -> int:
    password = _password(request, required=not agent.outlet)
    action = request.action
    if action in ("list", "list-status"):
        return await _list(agent, request, password)
    if action == "monitor":
        return await _monitor(agent, request, password)

    address = _device_for(request, _target(request))
    driver = _build(agent, request, address, password)
    try:
        return await _act(request, driver, _node(request))
    finally:
        await driver.close()


async def _act(
    request: Request, driver: PowerDriver, target: str | None
) -> int:
    from fencekit.power.operate import attempt

    action = Action.parse(request.action)
    verification = _verification(request)
    options = request.options
    node = target or driver.device
    record = Recorder(
        request, node, action.value, enabled=action is not Action.STATUS
    )
    delay = options.seconds("delay") or 0.0
    await record("requested", delay=delay)
    if action in (Action.OFF, Action.REBOOT) and delay > 0:
        await record("delay", seconds=delay)
        await asyncio.sleep(delay)

    tries = _or(options.integer("retry_on"), 1) if action is Action.ON else 1
    for _ in range(tries):
        outcome = await attempt(
            driver, action, node=target, verification=verification
        )
        await record("attempt", **_attempt_fields(outcome))
        if outcome.success:
            break

    await record("outcome", **_outcome_fields(outcome))
    return await _report(request, outcome)


def _verification(request: Request) -> Any:
    from fencekit.power.operate import Verification

    options = request.options
    return Verification(
        timeout=_or(options.seconds("power_timeout"), 20.0),
        settle=_or(options.integer("settle"), 2),
        interval=_or(options.seconds("stonith_status_sleep"), 0.25),
    )


def _or(value: T | None, default: T) -> T:
    return default if value is None else value


async def _report(request: Request, outcome: FenceOutcome) -> int:
    """Print the result the way fence agents do; return the exit code."""
    if not outcome.success:
        return request.fail(
            f"{outcome.action.value} {outcome.node}"
            f" via {outcome.device}: {outcome.reason}"
        )
    if outcome.action is Action.STATUS:
        on = outcome.state is PowerState.ON
        request.say(f"Status: {outcome.state.value.upper()}")
        return EXIT_OK if on else EXIT_OFF

    wait = request.options.seconds("power_wait") or 0.0
    if wait > 0:
        await asyncio.sleep(wait)
    note = f"; {outcome.reason}" if outcome.power_on_failed else ""
    request.say(
        f"Success: {outcome.action.value} {outcome.node} verified,"
        f" power is {outcome.state.value}{note}"
    )
    return EXIT_OK


async def _list(agent: PowerAgent, request: Request, password: Secret) -> int:
    """``list``: one ``node,address`` line per mapped node;
    ``list-status`` adds the power state read from each device."""
    if not _has(request, "host_map"):
        return EXIT_OK
    devices = _devices(request)
    if request.action == "list":
        for node, address in devices.items():
            request.say(f"{node},{address}")
        return EXIT_OK

    states = await _read_all(agent, request, devices, password)
    failed = False
    for node, address in devices.items():
        outcome = states[node]
        state = outcome.state.value.upper() if outcome.success else "UNKNOWN"
        failed = failed or not outcome.success
        request.say(f"{node},{address},{state}")
    return EXIT_FAILED if failed else EXIT_OK


async def _monitor(
    agent: PowerAgent, request: Request, password: Secret
) -> int:
    """``monitor``: every device answers with the credentials, whatever
    the power state."""
    devices = _devices(request)
    states = await _read_all(agent, request, devices, password)
    failures = [
        f"{node} via {outcome.device}: {outcome.reason}"
        for node, outcome in states.items()
        if not outcome.success
    ]
    if failures:
        return request.fail("monitor failed: " + "; ".join(failures))
    return EXIT_OK


async def _read_all(
    agent: PowerAgent,
    request: Request,
    devices: Mapping[str, Address],
    password: Secret,
) -> dict[str, FenceOutcome]:
    """Read the power state behind every device, concurrently."""
    from fencekit.power.operate import attempt

    verification = _verification(request)

    async def read(node: str, address: Address) -> FenceOutcome:
        driver = _build(agent, request, address, password)
        try:
            return await attempt(
                driver, Action.STATUS, node=node, verification=verification
            )
        finally:
            await driver.close()

    results = await asyncio.gather(
        *(read(node, address) for node, address in devices.items())
    )
    return dict(zip(devices, results, strict=True))


def _attempt_fields(outcome: FenceOutcome) -> dict[str, Any]:
    return {
        "address": outcome.device,
        "method": outcome.method,
        "device_action": outcome.action.value,
        "verified": outcome.verified,
        "state": outcome.state.value,
        "commands_sent": outcome.commands_sent,
        "duration": round(outcome.duration, 6),
        "reason": outcome.reason,
    }


def _outcome_fields(outcome: FenceOutcome) -> dict[str, Any]:
    data = outcome.to_dict()
    del data["node"], data["action"]
    return data
