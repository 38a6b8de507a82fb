"""The OCF resource agent ``ocf:fencekit:check``: a fencekit check as a
Pacemaker resource.

Pacemaker runs the agent with the action as its only argument and the
parameters in ``OCF_RESKEY_<name>`` variables. The resource is the
watching of one service: ``start`` probes once and starts watching if
the service is healthy, ``monitor`` probes again (0 healthy, 1 not, 7
not watched), ``stop`` stops watching. Pacemaker then recovers a failed
service the way it recovers any failed resource (restart, move, fence).

The check is either named in a fencekit agent configuration
(``config`` and ``check``), or given here: ``probe`` is the kind and
``options`` its option table, written as TOML ``key = value`` pairs
separated by commas, e.g. ``host = "127.0.0.1", port = 5432``.

Exit codes follow the OCF resource-agent API (resource-agents'
``ocf-returncodes``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TextIO
from xml.etree import ElementTree

from fencekit.errors import ConfigError, FencekitError

if TYPE_CHECKING:
    from fencekit.probes import Probe

__all__ = [
    "AGENT",
    "OCF_ERR_CONFIGURED",
    "OCF_ERR_GENERIC",
    "OCF_ERR_UNIMPLEMENTED",
    "OCF_NOT_RUNNING",
    "OCF_SUCCESS",
    "PROVIDER",
    "metadata",
    "render_script",
    "run",
]

PROVIDER: Final = "fencekit"
AGENT: Final = "check"

OCF_SUCCESS: Final = 0
OCF_ERR_GENERIC: Final = 1
OCF_ERR_ARGS: Final = 2
OCF_ERR_UNIMPLEMENTED: Final = 3
OCF_ERR_CONFIGURED: Final = 6
OCF_NOT_RUNNING: Final = 7

_STATE_DIR: Final = "/run/resource-agents"


@dataclasses.dataclass(frozen=True)
class _Param:
    name: str
    shortdesc: str
    longdesc: str
    default: str = ""
    kind: str = "string"


PARAMETERS: Final = (
    _Param(
        "config",
        "fencekit agent configuration",
        "The fencekit agent configuration (TOML) that defines the check"
        " named by the check parameter.",
    ),
    _Param(
        "check",
        "Name of a check in config",
        "The check to run, by its name under [checks] in config. Give"
        " either config and check, or probe and options.",
    ),
    _Param(
        "probe",
        "Probe kind",
        "The kind of probe to run when no named check is given: http,"
        " tcp, postgres, mysql, multipath, disk, command or snmp.",
    ),
    _Param(
        "options",
        "Probe options (TOML pairs)",
        "The probe's options as TOML key = value pairs separated by"
        ' commas, for example: host = "127.0.0.1", port = 5432, timeout'
        " = 3. Credentials belong in password_file or password_env"
        " options, never here.",
    ),
    _Param(
        "state_dir",
        "Where the watching state is kept",
        "Directory for the state file that marks the resource started;"
        " by default HA_RSCTMP, else /run/resource-agents.",
    ),
)

_ACTIONS: Final = (
    ("start", {"timeout": "30s"}),
    ("stop", {"timeout": "10s"}),
    ("monitor", {"timeout": "30s", "interval": "10s", "depth": "0"}),
    ("meta-data", {"timeout": "5s"}),
    ("validate-all", {"timeout": "10s"}),
)


def metadata() -> str:
    """Return the agent's metadata, in the shape of ra-api-1.dtd."""
    root = ElementTree.Element("resource-agent", name=AGENT, version="1.0")
    ElementTree.SubElement(root, "version").text = "1.0"
    _texts(
        root,
        "Runs one fencekit check (a probe of a service: HTTP, TCP,"
        " PostgreSQL, MariaDB, multipath, disk I/O, a command, SNMP) as a"
        " Pacemaker resource: monitor fails when the service is unhealthy,"
        " and Pacemaker recovers it.",
        "Monitor a service through a fencekit check",
    )
    params = ElementTree.SubElement(root, "parameters")
    for param in PARAMETERS:
        node = ElementTree.SubElement(
            params, "parameter", name=param.name, unique="0", required="0"
        )
        _texts(node, param.longdesc, param.shortdesc)
        ElementTree.SubElement(
            node, "content", type=param.kind, default=param.default
        )
    actions = ElementTree.SubElement(root, "actions")
    for name, attrs in _ACTIONS:
        ElementTree.SubElement(actions, "action", {"name": name, **attrs})
    ElementTree.indent(root)
    body = ElementTree.tostring(root, encoding="unicode")
    return (
        '<?xml version="1.0"?>\n'
        '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">\n' + body + "\n"
    )


def _texts(parent: ElementTree.Element, longdesc: str, short: str) -> None:
    ElementTree.SubElement(parent, "longdesc", lang="en").text = longdesc
    ElementTree.SubElement(parent, "shortdesc", lang="en").text = short


@dataclasses.dataclass
class _Context:
    env: Mapping[str, str]
    err: TextIO

    def param(self, name: str) -> str:
        return self.env.get(f"OCF_RESKEY_{name}", "").strip()

    def fail(self, code: int, message: str) -> int:
        text = " ".join(message.split())
        print(f"ocf:fencekit:check: error: {text}", file=self.err)
        return code

    @property
    def state_file(self) -> Path:
        folder = (
            self.param("state_dir")
            or self.env.get("HA_RSCTMP", "")
            or _STATE_DIR
        )
        instance = self.env.get("OCF_RESOURCE_INSTANCE", "default")
        safe = "".join(
            c if c.isalnum() or c in "-_." else "_" for c in instance
        )
        return Path(folder) / f"fencekit-check-{safe}.state"


def _probe(ctx: _Context) -> Probe:
    """Build the probe the parameters describe.

    Raises:
        ConfigError: the parameters name no valid check.
        SecretError: a probe's credential source gave no secret.
    """
    config, check = ctx.param("config"), ctx.param("check")
    kind, options = ctx.param("probe"), ctx.param("options")
    if (config or check) and (kind or options):
        raise ConfigError("give config and check, or probe and options")
    if config or check:
        return _named(config, check)
    if not kind:
        raise ConfigError("required (or config and check)", where="probe")
    from fencekit.probes import build

    return build(kind, _toml_pairs(options), "options")


def _named(config: str, check: str) -> Probe:
    if not config:
        raise ConfigError("required with check", where="config")
    if not check:
        raise ConfigError("required with config", where="check")
    from fencekit.monitor import load_config

    for spec in load_config(config).checks:
        if spec.name == check:
            return spec.probe
    raise ConfigError(f"no check named {check!r} in {config}", where="check")


def _toml_pairs(text: str) -> dict[str, object]:
    """Read ``key = value, key = value`` as one TOML inline table.

    Raises:
        ConfigError: the text is not valid TOML pairs.
    """
    import tomllib

    try:
        return dict(tomllib.loads(f"options = {{{text}}}")["options"])
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"not TOML key = value pairs: {exc}", where="options"
        ) from exc


async def _healthy(probe: Probe) -> tuple[bool, str]:
    outcome = await probe.run()
    return outcome.healthy, outcome.reason


def _start(ctx: _Context) -> int:
    probe = _probe(ctx)
    healthy, reason = asyncio.run(_healthy(probe))
    if not healthy:
        return ctx.fail(OCF_ERR_GENERIC, f"{probe.target}: {reason}")
    ctx.state_file.parent.mkdir(parents=True, exist_ok=True)
    ctx.state_file.write_text(f"{probe.kind} {probe.target}\n")
    return OCF_SUCCESS


def _stop(ctx: _Context) -> int:
    ctx.state_file.unlink(missing_ok=True)
    return OCF_SUCCESS


def _monitor(ctx: _Context) -> int:
    if not ctx.state_file.exists():
        return OCF_NOT_RUNNING
    probe = _probe(ctx)
    healthy, reason = asyncio.run(_healthy(probe))
    if healthy:
        return OCF_SUCCESS
    return ctx.fail(OCF_ERR_GENERIC, f"{probe.target}: {reason}")


def _validate(ctx: _Context) -> int:
    _probe(ctx)
    return OCF_SUCCESS


_HANDLERS: Final = {
    "start": _start,
    "stop": _stop,
    "monitor": _monitor,
    "status": _monitor,
    "validate-all": _validate,
}


def run(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run one OCF action; return its OCF exit code.

    A monitor that finds the resource stopped returns 7 before reading
    any parameter, so Pacemaker's probes work on nodes where the check
    is misconfigured or its libraries are missing.
    """
    out = out or sys.stdout
    ctx = _Context(os.environ if env is None else env, err or sys.stderr)
    action = argv[0] if argv else ""
    if action in ("meta-data", "metadata"):
        out.write(metadata())
        return OCF_SUCCESS
    handler = _HANDLERS.get(action)
    if handler is None:
        names = ", ".join(["meta-data", *_HANDLERS])
        return ctx.fail(
            OCF_ERR_UNIMPLEMENTED if action else OCF_ERR_ARGS,
            f"unknown action {action!r} (known: {names})",
        )

    _configure_logging()
    try:
        return handler(ctx)
    except ConfigError as exc:
        return ctx.fail(OCF_ERR_CONFIGURED, str(exc))
    except FencekitError as exc:
        return ctx.fail(OCF_ERR_GENERIC, str(exc))
    except OSError as exc:
        return ctx.fail(OCF_ERR_GENERIC, f"state file: {exc.strerror}")


def _configure_logging() -> None:
    from fencekit.logging import configure

    configure(json=True)


def render_script(interpreter: str) -> str:
    """Return the executable of ``ocf:fencekit:check``, run by
    ``interpreter``.

    It is a shell script: ``meta-data`` is answered from the text kept
    in it, so any account can read it without reaching the interpreter
    (ocf-tester asks as ``nobody``, and a virtualenv may sit where that
    account cannot go); every other action runs this module.
    """
    import shlex

    from fencekit.integrations.agents import MARKER

    return (
        "#!/bin/sh\n"
        f"{MARKER}\n"
        "# OCF resource agent ocf:fencekit:check: a fencekit check.\n"
        'case "$1" in\n'
        "meta-data | metadata)\n"
        "    cat <<'FENCEKIT_METADATA'\n"
        f"{metadata()}"
        "FENCEKIT_METADATA\n"
        "    exit 0\n"
        "    ;;\n"
        "esac\n"
        f'exec {shlex.quote(interpreter)} -m fencekit.integrations.ocf "$@"\n'
    )


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
