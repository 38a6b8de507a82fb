"""Hostile standard input and options for the fence agents.

Each agent runs in-process with its fence device replaced by an in-memory
one (:class:`fencekit.testing.FakePowerDriver`): what is fuzzed is the
option handling, not the wire. Every input must end in an exit code of
the fence-agent interface (0, 1 or 2) with at most one line per error on
standard error, no traceback, within a few seconds. Options that run a
command or write a file (``password_script``, ``journal``,
``debug_file``...) are never given a fuzzed value.
"""

from __future__ import annotations

import io
import threading
from typing import Any
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from fencekit.integrations.agents import spec
from fencekit.integrations.fence_agent import run
from fencekit.testing import FakePowerDriver
from tests.fuzz.budget import FUZZ

AGENTS = (
    "fence_fencekit_ipmi",
    "fence_fencekit_redfish",
    "fence_fencekit_snmp_pdu",
)
# Options that run programs, write files or wait: never fuzzed.
UNSAFE = {
    "password_script",
    "journal",
    "debug_file",
    "community_script",
    "priv_key_script",
    "auth_key_script",
    "priv_passwd_script",
    "snmp_priv_passwd_script",
    "delay",
}
SECONDS = ("0", "0.05", "1", "-1", "", "x", "1e999", "inf", "nan", "0x10")
EXIT_CODES = {0, 1, 2}
TIME_LIMIT = 10.0


def _names(agent: str) -> list[str]:
    names: list[str] = []
    for param in spec(agent).parameters:
        names += [param.name] + ([param.replaces] if param.replaces else [])
    return [n for n in names if n not in UNSAFE and not n.endswith("_script")]


def _value(agent: str) -> st.SearchStrategy[str]:
    del agent
    return st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "on",
                "off",
                "reboot",
                "status",
                "list",
                "monitor",
                "metadata",
                "validate-all",
                "list-status",
                "127.0.0.1",
                "node-a:127.0.0.1;node-b",
                "1",
                "0",
                "yes",
                "true",
                "3",
                "17",
                "=",
                "\x00",
                *SECONDS,
            ]
        ),
    )


def _line(agent: str) -> st.SearchStrategy[str]:
    names = st.one_of(st.sampled_from(_names(agent)), st.text(max_size=15))
    pair = st.tuples(names, _value(agent)).map(lambda nv: f"{nv[0]}={nv[1]}")
    return st.one_of(pair, st.text(max_size=30), st.just("#comment"))


def _timed_options(agent: str) -> st.SearchStrategy[list[str]]:
    # Bounded waits, so that a valid request finishes quickly.
    return st.just(["power_timeout=2", "power_wait=0", "login_timeout=1"])


def _fake_build(*args: Any, **kwargs: Any) -> FakePowerDriver:
    return FakePowerDriver(device=str(args[1]) if len(args) > 1 else "fake")


def _run_agent(
    agent: str, argv: list[str], stdin: str
) -> tuple[int | None, str, str, BaseException | None]:
    out, err = io.StringIO(), io.StringIO()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["code"] = run(
                spec(agent), argv, io.StringIO(stdin), out, err
            )
        except BaseException as exc:  # the failure being looked for
            result["error"] = exc

    with mock.patch("fencekit.power.drivers.build", _fake_build):
        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(TIME_LIMIT)
    assert not worker.is_alive(), f"{agent} hung on {argv!r} {stdin!r}"
    return (
        result.get("code"),
        out.getvalue(),
        err.getvalue(),
        result.get("error"),
    )


def _check(
    agent: str, code: int | None, err: str, error: BaseException | None
) -> None:
    assert error is None, f"{agent} raised {error!r}"
    assert code in EXIT_CODES, code
    assert "Traceback" not in err, err


@FUZZ
@given(
    agent=st.sampled_from(AGENTS),
    lines=st.data(),
)
def test_stdin_options_end_in_an_exit_code(agent: str, lines: Any) -> None:
    """Any stdin lines: exit 0, 1 or 2, no traceback, no hang."""
    body = lines.draw(st.lists(_line(agent), max_size=12))
    timed = lines.draw(_timed_options(agent))
    stdin = "\n".join([*timed, *body]) + "\n"
    code, _, err, error = _run_agent(agent, [], stdin)
    _check(agent, code, err, error)


@FUZZ
@given(agent=st.sampled_from(AGENTS), data=st.data())
def test_command_line_options_end_in_an_exit_code(
    agent: str, data: Any
) -> None:
    """Any argv: exit 0, 1 or 2, no traceback, no hang."""
    names = _names(agent)
    flag = st.one_of(
        st.sampled_from(names).map(lambda n: "--" + n.replace("_", "-")),
        st.sampled_from(names).map(lambda n: "--" + n + "="),
        st.text(max_size=12),
        st.sampled_from(["-o", "-a", "-n", "-p", "-S", "-v", "-h", "--"]),
    )
    argv = data.draw(
        st.lists(st.one_of(flag, _value(agent)), min_size=1, max_size=10)
    )
    argv = [a for a in argv if a] or ["-o"]
    argv += ["--power-timeout", "2", "--power-wait", "0"]
    code, _, err, error = _run_agent(agent, argv, "")
    _check(agent, code, err, error)


@FUZZ
@given(
    action=st.sampled_from(
        ["on", "off", "reboot", "status", "monitor", "list", "validate-all"]
    ),
    plug=st.text(max_size=20),
    host_map=st.text(max_size=40),
    port=st.one_of(st.text(max_size=8), st.just("99999999999999999999")),
)
def test_well_formed_requests_with_hostile_values(
    action: str, plug: str, host_map: str, port: str
) -> None:
    """Valid names, hostile values: a verified result or one error line."""
    stdin = "\n".join(
        [
            f"action={action}",
            "ip=127.0.0.1",
            f"ipport={port}",
            "username=admin",
            "password=fuzz-pw",
            f"plug={plug}",
            f"host_map={host_map}",
            "power_timeout=2",
            "power_wait=0",
        ]
    )
    code, _, err, error = _run_agent("fence_fencekit_ipmi", [], stdin)
    _check("fence_fencekit_ipmi", code, err, error)
    if code != 0:
        assert err.strip(), "a failure without a reason"
