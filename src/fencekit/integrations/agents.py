"""fencekit's fence agents, and the small scripts that start them.

The table :data:`POWER_AGENTS` holds one entry per power driver; each
becomes an agent named ``fence_fencekit_<driver>``. Only drivers that
:mod:`fencekit.power.drivers` actually provides are offered; storage
fencing adds ``fence_fencekit_scsi``
(:mod:`fencekit.integrations.storage_agent`). The
executables in ``agents/`` and those ``fencekit install-agents`` writes
are rendered by :func:`render_script`: a few lines that call
:func:`run_fence_agent` with the agent's name.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

from fencekit.integrations.fence_agent import (
    AgentSpec,
    Parameter,
    Request,
    run,
)
from fencekit.integrations.power_agent import PowerAgent, power_spec

__all__ = [
    "MARKER",
    "POWER_AGENTS",
    "agent_names",
    "render_script",
    "run_fence_agent",
    "spec",
]

# Written into every script fencekit installs: install-agents replaces
# only files that carry it, never another package's agent.
MARKER: Final = "# fencekit-managed: written by fencekit install-agents"


def _ipmi_options(request: Request) -> dict[str, Any]:
    from fencekit.secrets import from_file

    options = request.options
    cipher = options.choice("cipher")
    result: dict[str, Any] = {
        "cipher": int(cipher) if cipher else None,
        "privilege": options.choice("privlvl") or "administrator",
        "allow_ipmi15": not options.boolean("lanplus"),
    }
    kg_file = options.string("kg_file")
    if kg_file:
        result["kg"] = from_file(kg_file)
    return result


IPMI = PowerAgent(
    driver="ipmi",
    shortdesc="Fence a node through its BMC with IPMI 2.0 (fencekit)",
    longdesc=(
        "fence_fencekit_ipmi switches a node's power through its BMC over"
        " IPMI 2.0 (RMCP+), in process: one session per BMC, no ipmitool"
        " child process, the password never on any command line."
    ),
    parameters=(
        Parameter(
            "cipher",
            "select",
            "RMCP+ cipher suite (default: 17, then 3 if the BMC refuses)",
            short="C",
            choices=("3", "17"),
        ),
        Parameter(
            "privlvl",
            "select",
            "Privilege level to ask the BMC for",
            default="administrator",
            short="L",
            choices=("administrator", "operator", "user"),
        ),
        Parameter(
            "lanplus",
            "boolean",
            "Require IPMI 2.0 (lanplus); 0 also accepts a BMC that offers"
            " only IPMI 1.5",
            default="1",
            short="P",
        ),
        Parameter(
            "kg_file",
            "string",
            "Read the BMC's Kg key (hexadecimal) from this file",
        ),
    ),
    options=_ipmi_options,
)


def _redfish_options(request: Request) -> dict[str, Any]:
    options = request.options
    result: dict[str, Any] = {
        "insecure": options.boolean("ssl_insecure"),
        "auth": options.choice("auth") or "auto",
    }
    for name, key in (("systems_uri", "system"), ("ssl_ca_file", "ca_file")):
        value = options.string(name)
        if value:
            result[key] = value
    return result


def _irmc_options(request: Request) -> dict[str, Any]:
    from fencekit.secrets import from_file

    options = request.options
    result = _redfish_options(request)
    if not options.boolean("ipmi_fallback"):
        return result
    result["ipmi_fallback"] = True
    port = options.integer("ipmi_port")
    if port is not None:
        result["ipmi_port"] = port
    user = options.string("ipmi_username")
    if user:
        result["ipmi_username"] = user
    password_file = options.string("ipmi_password_file")
    if password_file:
        result["ipmi_password"] = from_file(password_file)
    cipher = options.choice("ipmi_cipher")
    if cipher:
        result["ipmi_cipher"] = int(cipher)
    return result


_REDFISH_PARAMETERS = (
    Parameter(
        "systems_uri",
        "string",
        "The system to act on: its id, URI, UUID or serial number (default:"
        " the only system of the service)",
    ),
    Parameter(
        "ssl_ca_file",
        "string",
        "PEM file of the CA that signed the BMC's certificate (default: the"
        " system's trust store)",
    ),
    Parameter(
        "ssl_insecure",
        "boolean",
        "Do not verify the BMC's certificate (logged as a warning)",
        default="0",
    ),
    Parameter(
        "auth",
        "select",
        "Authentication: a Redfish session when offered (auto), always a"
        " session, or HTTP Basic",
        default="auto",
        choices=("auto", "session", "basic"),
    ),
)

REDFISH = PowerAgent(
    driver="redfish",
    shortdesc="Fence a node through its BMC with Redfish (fencekit)",
    longdesc=(
        "fence_fencekit_redfish switches a node's power with the Redfish"
        " ComputerSystem.Reset action over HTTPS, choosing a reset type"
        " the system allows, on one connection per BMC."
    ),
    parameters=_REDFISH_PARAMETERS,
    options=_redfish_options,
)

IRMC = PowerAgent(
    driver="irmc",
    shortdesc="Fence a Fujitsu PRIMERGY server through its iRMC (fencekit)",
    longdesc=(
        "fence_fencekit_irmc switches a PRIMERGY server's power through"
        " its iRMC: Redfish first (system 0 by default), and optionally"
        " IPMI when Redfish cannot be reached (iRMC S6 from firmware 2.00"
        " turns IPMI over LAN off by default)."
    ),
    parameters=(
        *_REDFISH_PARAMETERS,
        Parameter(
            "ipmi_fallback",
            "boolean",
            "Use IPMI when the iRMC's Redfish service cannot be reached",
            default="0",
        ),
        Parameter(
            "ipmi_port", "integer", "UDP port of the iRMC's IPMI service"
        ),
        Parameter(
            "ipmi_username",
            "string",
            "IPMI account, when it differs from username",
        ),
        Parameter(
            "ipmi_password_file",
            "string",
            "Read the IPMI account's password from this file, when it"
            " differs from the Redfish one",
        ),
        Parameter(
            "ipmi_cipher",
            "select",
            "Pin the IPMI cipher suite",
            choices=("3", "17"),
        ),
    ),
    options=_irmc_options,
)


def _snmp_options(request: Request) -> dict[str, Any]:
    from fencekit.secrets import Secret

    options = request.options
    result: dict[str, Any] = {
        "snmp_version": options.choice("snmp_version") or "2c",
        "auth_protocol": options.choice("snmp_auth_prot") or "sha",
        "priv_protocol": options.choice("snmp_priv_prot") or "aes",
    }
    secrets = (
        ("community", "community"),
        ("snmp_priv_passwd", "priv_key"),
    )
    for name, key in secrets:
        value = options.string(name)
        if value:
            result[key] = Secret(value, source="standard input")
        for suffix, to in (("_file", "_file"), ("_script", "_command")):
            source = options.string(name + suffix)
            if source:
                result[key + to] = source
    if request.spec.parameter("oper_status") is not None:
        result["oper_status"] = options.boolean("oper_status")
    return result


_SNMP_PARAMETERS = (
    Parameter(
        "snmp_version",
        "select",
        "SNMP version",
        default="2c",
        short="d",
        choices=("1", "2c", "3"),
    ),
    Parameter(
        "community",
        "string",
        "SNMPv1/v2c community (standard input only)",
        short="c",
        secret=True,
    ),
    Parameter(
        "community_file",
        "string",
        "Read the SNMPv1/v2c community from the first line of this file",
    ),
    Parameter(
        "community_script",
        "string",
        "Run this command (no shell) and read the SNMPv1/v2c community"
        " from the first line it prints",
    ),
    Parameter(
        "username",
        "string",
        "SNMPv3 user (security name)",
        short="l",
        replaces="login",
    ),
    Parameter(
        "password",
        "string",
        "SNMPv3 authentication key (standard input only)",
        short="p",
        replaces="passwd",
        secret=True,
    ),
    Parameter(
        "password_file",
        "string",
        "Read the SNMPv3 authentication key from this file",
    ),
    Parameter(
        "password_script",
        "string",
        "Run this command (no shell) and read the SNMPv3 authentication"
        " key from the first line it prints",
        short="S",
    ),
    Parameter(
        "snmp_auth_prot",
        "select",
        "SNMPv3 authentication protocol",
        default="sha",
        short="b",
        choices=("md5", "sha", "sha224", "sha256", "sha384", "sha512"),
    ),
    Parameter(
        "snmp_priv_prot",
        "select",
        "SNMPv3 privacy protocol",
        default="aes",
        short="B",
        choices=("des", "aes", "aes128", "aes192", "aes256"),
    ),
    Parameter(
        "snmp_priv_passwd",
        "string",
        "SNMPv3 privacy key (standard input only)",
        short="P",
        secret=True,
    ),
    Parameter(
        "snmp_priv_passwd_file",
        "string",
        "Read the SNMPv3 privacy key from this file",
    ),
    Parameter(
        "snmp_priv_passwd_script",
        "string",
        "Run this command (no shell) and read the SNMPv3 privacy key from"
        " the first line it prints",
        short="R",
    ),
)

SNMP_PDU = PowerAgent(
    driver="snmp-pdu",
    shortdesc="Fence a node by switching its PDU outlet over SNMP (fencekit)",
    longdesc=(
        "fence_fencekit_snmp_pdu switches an outlet of an APC-style PDU"
        " (PowerNet-MIB outlet control) over SNMP v1, v2c or v3. The plug"
        " is the outlet's number or name; map nodes to outlets with"
        " pcmk_host_map."
    ),
    parameters=_SNMP_PARAMETERS,
    options=_snmp_options,
    outlet=True,
)

SNMP_PORT = PowerAgent(
    driver="snmp-port",
    shortdesc="Fence a node by disabling its switch port over SNMP (fencekit)",
    longdesc=(
        "fence_fencekit_snmp_port cuts a node off the network (or the"
        " storage network) by setting its switch port administratively"
        " down (IF-MIB ifAdminStatus) over SNMP v1, v2c or v3. The plug is"
        " the port's ifIndex, ifName or ifDescr; map nodes to ports with"
        " pcmk_host_map."
    ),
    parameters=(
        *_SNMP_PARAMETERS,
        Parameter(
            "oper_status",
            "boolean",
            "Count the port as off only once its operational status is no"
            " longer up as well",
            default="0",
        ),
    ),
    options=_snmp_options,
    outlet=True,
)

POWER_AGENTS: Final[tuple[PowerAgent, ...]] = (
    IPMI,
    REDFISH,
    IRMC,
    SNMP_PDU,
    SNMP_PORT,
)


def _power_agents() -> dict[str, PowerAgent]:
    from fencekit.power.drivers import DRIVERS

    return {a.name: a for a in POWER_AGENTS if a.driver in DRIVERS}


def _has_storage() -> bool:
    import importlib.util

    return importlib.util.find_spec("fencekit.storage") is not None


def agent_names() -> list[str]:
    """The names of every fence agent this fencekit provides."""
    from fencekit.integrations.storage_agent import SCSI_AGENT

    names = list(_power_agents())
    if _has_storage():
        names.append(SCSI_AGENT)
    return sorted(names)


def spec(name: str) -> AgentSpec:
    """Return the agent called ``name``; only its own modules load.

    Raises:
        KeyError: no such agent.
    """
    from fencekit.integrations.storage_agent import SCSI_AGENT, scsi_spec

    if name == SCSI_AGENT and _has_storage():
        return scsi_spec()
    return power_spec(_power_agents()[name])


def render_script(name: str, interpreter: str) -> str:
    """Return the executable for agent ``name``, run by
    ``interpreter``."""
    return (
        f"#!{interpreter}\n"
        f"{MARKER}\n"
        f'"""Pacemaker fence agent {name}, from fencekit."""\n'
        "import sys\n\n"
        "from fencekit.integrations.agents import run_fence_agent\n\n"
        f'sys.exit(run_fence_agent("{name}"))\n'
    )


def run_fence_agent(
    name: str,
    argv: Sequence[str] | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run fence agent ``name`` once, as Pacemaker runs it; return its
    exit code."""
    args = sys.argv[1:] if argv is None else argv
    return run(spec(name), args, stdin or sys.stdin)
