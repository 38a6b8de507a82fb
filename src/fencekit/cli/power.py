"""``fencekit power``: one power action on one fence device."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fencekit.cli import _common
from fencekit.outcome import Action, FenceOutcome
from fencekit.power.drivers import DRIVERS

_ACTIONS = ("status", "on", "off", "reboot")


def register(sub: Any) -> None:
    """Add ``power`` to the subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "power",
        help="read or switch a node's power through its fence device",
        description=(
            "Carry out one power action and verify it: 'off' succeeds only"
            " once the device reads the power back as off."
        ),
    )
    parser.add_argument("action", choices=_ACTIONS)
    parser.add_argument("--driver", choices=sorted(DRIVERS), required=True)
    parser.add_argument("--host", required=True, help="the BMC's address")
    parser.add_argument(
        "--port", type=_common.port_number, help="the BMC's port (IPMI 623)"
    )
    parser.add_argument(
        "--username", help="the account (SNMPv3: the user name)"
    )
    _common.add_password_options(parser, required=False)
    parser.add_argument(
        "--cipher",
        type=int,
        choices=(3, 17),
        help="pin the IPMI cipher suite (default: 17, then 3)",
    )
    parser.add_argument(
        "--privilege",
        choices=("administrator", "operator", "user"),
        default="administrator",
    )
    parser.add_argument(
        "--kg-file", metavar="FILE", help="read the IPMI Kg key from FILE"
    )
    parser.add_argument(
        "--ipmi15",
        action="store_true",
        help="accept a BMC that offers only IPMI 1.5",
    )
    parser.add_argument(
        "--system",
        metavar="ID",
        help="Redfish system: id, URI, UUID or serial number",
    )
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument(
        "--ca-file", metavar="FILE", help="CA that signed the BMC's cert"
    )
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="do not verify the BMC's TLS certificate (logged)",
    )
    _add_snmp_options(parser)
    parser.add_argument(
        "--timeout",
        type=_common.positive_float,
        default=20.0,
        metavar="SECONDS",
        help="deadline for the action, verification included (20)",
    )
    parser.add_argument(
        "--settle",
        type=_common.positive_int,
        default=2,
        help="consecutive readings of the new state required (2)",
    )
    parser.add_argument(
        "--settle-interval",
        type=_common.non_negative_float,
        default=0.1,
        metavar="SECONDS",
        help="seconds between those readings (0.1)",
    )
    parser.add_argument(
        "--off-time",
        type=_common.non_negative_float,
        default=1.0,
        metavar="SECONDS",
        help="reboot: seconds the power stays off before it is turned on (1)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=handle)


def _add_snmp_options(parser: argparse.ArgumentParser) -> None:
    snmp = parser.add_argument_group(
        "SNMP (snmp-port, snmp-pdu)",
        "SNMPv3 takes the user from --username and the authentication"
        " key from the --password-* options.",
    )
    snmp.add_argument(
        "--plug", help="switch port (ifIndex, ifName or ifDescr) or outlet"
    )
    snmp.add_argument("--snmp-version", choices=("1", "2c", "3"), default="2c")
    community = snmp.add_mutually_exclusive_group()
    community.add_argument(
        "--community-file", metavar="FILE", help="read the community from FILE"
    )
    community.add_argument(
        "--community-env", metavar="VAR", help="read it from variable VAR"
    )
    snmp.add_argument("--auth-protocol", default="sha", help="SNMPv3 (sha)")
    snmp.add_argument("--priv-protocol", default="aes", help="SNMPv3 (aes)")
    snmp.add_argument(
        "--priv-key-file", metavar="FILE", help="SNMPv3 privacy key file"
    )
    snmp.add_argument(
        "--oper-status",
        action="store_true",
        help="snmp-port: a port is off only once ifOperStatus is not up",
    )


def _password(args: argparse.Namespace) -> Any:
    """The password, required except by SNMP drivers (community)."""
    from fencekit.errors import ConfigError
    from fencekit.secrets import Secret

    given = args.password_file or args.password_env or args.password_command
    if args.driver.startswith("snmp-"):
        return _common.password(args) if given else Secret("", source="none")
    if not args.username:
        raise ConfigError(
            f"is required by driver {args.driver}", where="--username"
        )
    if not given:
        raise ConfigError(
            f"driver {args.driver} needs --password-file, --password-env"
            " or --password-command"
        )
    return _common.password(args)


def handle(args: argparse.Namespace) -> int:
    """Run the action; exit 0 only when it was verified."""
    from fencekit.power.drivers import build
    from fencekit.power.operate import Verification

    if (args.settle - 1) * args.settle_interval >= args.timeout:
        from fencekit.errors import ConfigError

        raise ConfigError(
            f"{args.settle} readings {args.settle_interval:g} s apart do"
            f" not fit in the {args.timeout:g} s timeout",
            where="--settle",
        )
    options = _driver_options(args)
    driver = build(
        args.driver,
        args.host,
        port=args.port,
        username=args.username or "",
        password=_password(args),
        options=options,
    )
    verification = Verification(
        timeout=args.timeout,
        settle=args.settle,
        settle_interval=args.settle_interval,
        off_time=args.off_time,
    )
    outcome = asyncio.run(
        _run(driver, Action.parse(args.action), verification)
    )
    return _report(outcome, args.json)


# Options that belong to some drivers only; given to another, they are a
# mistake worth saying (`--system` does nothing for IPMI).
_OWN_OPTIONS = {
    "ipmi": ("cipher", "kg_file", "ipmi15"),
    "redfish": ("system", "ca_file", "insecure"),
    "irmc": ("system", "ca_file", "insecure"),
    "snmp-port": ("plug", "community_file", "community_env", "oper_status"),
    "snmp-pdu": ("plug", "community_file", "community_env"),
}


def _refuse_foreign(args: argparse.Namespace) -> None:
    """Refuse an option that does nothing for the chosen driver.

    Raises:
        ConfigError: such an option was given.
    """
    from fencekit.errors import ConfigError

    own = set(_OWN_OPTIONS.get(args.driver, ()))
    for options in _OWN_OPTIONS.values():
        for name in options:
            if name not in own and getattr(args, name, None) not in (
                None,
                False,
            ):
                flag = "--" + name.replace("_", "-")
                raise ConfigError(
                    f"does not apply to driver {args.driver}", where=flag
                )


def _driver_options(args: argparse.Namespace) -> dict[str, Any]:
    """The driver-specific options the command line gave."""
    from fencekit.secrets import from_file

    _refuse_foreign(args)
    if args.driver in ("redfish", "irmc"):
        return {
            "system": args.system,
            "ca_file": args.ca_file,
            "insecure": args.insecure,
        }
    if args.driver.startswith("snmp-"):
        return _snmp_options(args)
    if args.driver != "ipmi":
        return {}
    options: dict[str, Any] = {
        "cipher": args.cipher,
        "privilege": args.privilege,
        "allow_ipmi15": args.ipmi15,
    }
    if args.kg_file:
        options["kg"] = from_file(args.kg_file)
    return options


def _snmp_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {
        "plug": args.plug,
        "snmp_version": args.snmp_version,
        "community_file": args.community_file,
        "community_env": args.community_env,
    }
    if args.snmp_version == "3":
        options.update(
            auth_protocol=args.auth_protocol,
            priv_protocol=args.priv_protocol,
            priv_key_file=args.priv_key_file,
        )
    if args.driver == "snmp-port":
        options["oper_status"] = args.oper_status
    return {k: v for k, v in options.items() if v is not None}


async def _run(driver: Any, action: Action, verification: Any) -> FenceOutcome:
    from fencekit.power.operate import attempt

    try:
        return await attempt(driver, action, verification=verification)
    finally:
        await driver.close()


def _report(outcome: FenceOutcome, as_json: bool) -> int:
    if outcome.success:
        _common.emit(outcome.to_dict(), _describe(outcome), as_json)
        return _common.EXIT_OK
    if as_json:
        _common.emit(outcome.to_dict(), "", True)
    _common.error(
        f"{outcome.device}: {outcome.action.value}: {outcome.reason}"
    )
    return _common.EXIT_FAILED


def _describe(outcome: FenceOutcome) -> str:
    if outcome.action is Action.STATUS:
        return f"{outcome.device}: power is {outcome.state.value}"
    sent = outcome.commands_sent
    commands = "no command needed" if sent == 0 else f"{sent} command(s)"
    text = (
        f"{outcome.device}: {outcome.action.value} verified,"
        f" power is {outcome.state.value}"
        f" ({commands}, {outcome.duration:.3f} s)"
    )
    if outcome.power_on_failed:
        text += f"; warning: {outcome.reason}"
    return text
