"""Every action of fence_fencekit_ipmi, run as Pacemaker runs it
(options on standard input), against OpenIPMI's ipmi_sim."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import peers
from tests.support.ipmisim import IpmiSim

AGENT = Path(__file__).resolve().parents[2] / "agents" / "fence_fencekit_ipmi"
CANARY = "Canary-7f3a9c"
FAST = "power_timeout=15\nstonith_status_sleep=0.05\n"

Start = Callable[..., IpmiSim]


def agent(
    stdin: str, *argv: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the agent in a process of its own, as the fencer does."""
    return subprocess.run(
        [sys.executable, str(AGENT), *argv],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def device(sim: IpmiSim, **extra: str) -> str:
    """The options of one stonith device for ``sim``."""
    lines = {
        "ip": f"{sim.host}:{sim.port}",
        "username": sim.user,
        "password": sim.password,
        **extra,
    }
    return FAST + "".join(f"{k}={v}\n" for k, v in lines.items())


def test_status_on_exits_0(ipmi_sim: IpmiSim) -> None:
    """status of a node that is on: 'Status: ON', exit 0."""
    done = agent("action=status\nport=node-b\n" + device(ipmi_sim))

    assert (done.returncode, done.stdout) == (0, "Status: ON\n")
    assert ipmi_sim.commands() == []


def test_status_off_exits_2(ipmi_sim: IpmiSim) -> None:
    """status of a node that is off: 'Status: OFF', exit 2."""
    ipmi_sim.set_power(False)

    done = agent("action=status\n" + device(ipmi_sim))

    assert (done.returncode, done.stdout) == (2, "Status: OFF\n")


def test_off_is_verified(ipmi_sim: IpmiSim) -> None:
    """off powers the BMC off, exit 0 once ipmitool also reads off."""
    done = agent("action=off\nport=node-b\n" + device(ipmi_sim))

    assert done.returncode == 0, done.stderr
    assert "off node-b verified" in done.stdout
    assert ipmi_sim.commands() == ["power=0"]
    assert ipmi_sim.ipmitool_status() == "off"


def test_off_when_off_sends_nothing(ipmi_sim: IpmiSim) -> None:
    """off on a node already off succeeds without a power command."""
    ipmi_sim.set_power(False)

    done = agent("action=off\n" + device(ipmi_sim))

    assert done.returncode == 0, done.stderr
    assert ipmi_sim.commands() == []


def test_on(ipmi_sim: IpmiSim) -> None:
    """on powers the node on and verifies it."""
    ipmi_sim.set_power(False)

    done = agent("action=on\nplug=node-b\n" + device(ipmi_sim))

    assert done.returncode == 0, done.stderr
    assert ipmi_sim.commands() == ["power=1"]
    assert ipmi_sim.power_is_on()


def test_reboot_is_off_then_on(ipmi_sim: IpmiSim) -> None:
    """reboot (the default action) is a verified off, then on."""
    done = agent(device(ipmi_sim))

    assert done.returncode == 0, done.stderr
    assert ipmi_sim.commands() == ["power=0", "power=1"]


def test_monitor_whatever_the_state(ipmi_sim: IpmiSim) -> None:
    """monitor exits 0 when the device answers, on or off."""
    ipmi_sim.set_power(False)

    done = agent("action=monitor\n" + device(ipmi_sim))

    assert (done.returncode, done.stdout) == (0, "")


def test_monitor_fails_when_device_silent(tmp_path: Path) -> None:
    """monitor exits 1, with the reason, when nothing answers."""
    port = peers.free_port()
    options = (
        f"action=monitor\nip=127.0.0.1:{port}\nusername=u\npassword=p\n"
        "power_timeout=2\n"
    )

    done = agent(options)

    assert done.returncode == 1
    assert "monitor failed" in done.stderr


def test_host_map_selects_the_device(ipmi_sim_factory: Start) -> None:
    """With host_map the plug picks the BMC; other nodes stay on."""
    node_a, node_b = ipmi_sim_factory("node-a"), ipmi_sim_factory("node-b")
    host_map = f"node-a={node_a.host}:{node_a.port};"
    host_map += f"node-b={node_b.host}:{node_b.port}"
    options = FAST + f"host_map={host_map}\nusername=admin\n"
    options += f"password={node_a.password}\n"

    done = agent("action=off\nport=node-b\n" + options)

    assert done.returncode == 0, done.stderr
    assert node_b.commands() == ["power=0"]
    assert node_a.commands() == []


def test_nodename_when_no_plug(ipmi_sim_factory: Start) -> None:
    """nodename names the target when neither plug nor port is given."""
    node_b = ipmi_sim_factory("node-b")
    options = FAST + f"host_map=node-b={node_b.host}:{node_b.port}\n"
    options += f"username=admin\npassword={node_b.password}\n"

    done = agent("action=off\nnodename=node-b\n" + options)

    assert done.returncode == 0, done.stderr
    assert not node_b.power_is_on()


def test_host_map_unknown_node_fails(ipmi_sim: IpmiSim) -> None:
    """A target missing from host_map fails and sends nothing."""
    options = FAST + f"host_map=node-a={ipmi_sim.host}:{ipmi_sim.port}\n"
    options += f"username=admin\npassword={ipmi_sim.password}\n"

    done = agent("action=off\nport=node-z\n" + options)

    assert done.returncode == 1
    assert "node-z" in done.stderr
    assert ipmi_sim.commands() == []


def test_list_and_list_status(ipmi_sim_factory: Start) -> None:
    """list prints node,address lines; list-status adds the state."""
    node_a, node_b = ipmi_sim_factory("node-a"), ipmi_sim_factory("node-b")
    node_b.set_power(False)
    addresses = {
        n: f"{s.host}:{s.port}"
        for n, s in (("node-a", node_a), ("node-b", node_b))
    }
    options = (
        FAST
        + "host_map="
        + ";".join(f"{n}={a}" for n, a in addresses.items())
        + f"\nusername=admin\npassword={node_a.password}\n"
    )

    listed = agent("action=list\n" + options)
    status = agent("action=list-status\n" + options)

    assert listed.returncode == 0
    assert listed.stdout.splitlines() == [
        f"node-a,{addresses['node-a']}",
        f"node-b,{addresses['node-b']}",
    ]
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines() == [
        f"node-a,{addresses['node-a']},ON",
        f"node-b,{addresses['node-b']},OFF",
    ]


def test_command_line_options(ipmi_sim: IpmiSim) -> None:
    """The same agent takes command-line options, password from a file."""
    done = agent(
        "",
        "-o",
        "status",
        "--ip",
        ipmi_sim.host,
        "--ipport",
        str(ipmi_sim.port),
        "-l",
        ipmi_sim.user,
        f"--password-file={ipmi_sim.password_file()}",
    )

    assert (done.returncode, done.stdout) == (0, "Status: ON\n")


def test_password_script(ipmi_sim: IpmiSim) -> None:
    """password_script's first line of output is the password."""
    script = f"cat {ipmi_sim.password_file()}"

    done = agent(
        "action=off\n"
        + device(ipmi_sim).replace(
            f"password={ipmi_sim.password}", f"password_script={script}"
        )
    )

    assert done.returncode == 0, done.stderr


def test_delay_before_off(ipmi_sim: IpmiSim) -> None:
    """delay is waited out before off."""
    started = time.monotonic()

    done = agent("action=off\ndelay=1.5\n" + device(ipmi_sim))

    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 1.5


def test_unknown_option_is_ignored_with_warning(ipmi_sim: IpmiSim) -> None:
    """An unknown option does not stop the action; it is logged."""
    done = agent("action=status\nfrobnicate=1\n" + device(ipmi_sim))

    assert done.returncode == 0
    assert "frobnicate" in done.stderr


def test_journal_records_the_fence(ipmi_sim: IpmiSim, tmp_path: Path) -> None:
    """With journal=PATH the fence is recorded: requested, attempt,
    outcome, sharing one operation id."""
    from fencekit.journal import read

    journal = tmp_path / "journal.jsonl"

    done = agent(
        f"action=off\nport=node-b\njournal={journal}\n" + device(ipmi_sim)
    )

    assert done.returncode == 0, done.stderr
    records = read(journal).records
    assert [r["event"] for r in records] == ["requested", "attempt", "outcome"]
    assert {r["op"] for r in records} == {records[0]["op"]}
    assert records[-1]["node"] == "node-b"
    assert records[-1]["success"] is True
    assert records[-1]["state"] == "off"
    assert records[-1]["source"] == "fence_fencekit_ipmi"
    history = subprocess.run(
        [str(Path(sys.executable).with_name("fencekit")), "history",
         "node-b", "--journal", str(journal)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert history.returncode == 0, history.stderr
    assert "node-b" in history.stdout
    assert "outcome" in history.stdout


def test_failing_fence_leaks_no_password(tmp_path: Path) -> None:
    """A fence refused by the BMC fails with a reason; the canary
    password is in no output, log, debug file or journal."""
    sim = IpmiSim(tmp_path / "bmc", password="right-password").start()
    journal, debug = tmp_path / "journal", tmp_path / "debug.log"
    try:
        done = agent(
            "action=off\nport=node-b\nverbose=1\n"
            f"journal={journal}\ndebug_file={debug}\n"
            + device(sim, password=CANARY, power_timeout="5")
        )
    finally:
        sim.stop()

    assert done.returncode == 1
    assert "node-b" in done.stderr
    assert sim.commands() == []
    captured = done.stdout + done.stderr + debug.read_text()
    captured += journal.read_text()
    assert CANARY not in captured
    assert json.loads(journal.read_text().splitlines()[-1])["success"] is False
