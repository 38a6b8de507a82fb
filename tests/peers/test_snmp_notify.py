"""The SNMP notifier against net-snmp's snmptrapd on loopback."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fencekit import notify
from fencekit._snmp import SnmpCredentials
from fencekit.errors import (
    AuthenticationError,
    ConfigError,
    DeviceTimeoutError,
)
from fencekit.outcome import Action
from fencekit.secrets import Secret
from tests.support import peers
from tests.support import snmp as peer

ROOT = notify.DEFAULT_MIB_ROOT
CHECK_DOWN = rf"\.{ROOT}\.0\.3"


def _v2c(trapd: peer.SnmpTrapd, **kwargs: object) -> notify.Destination:
    return notify.Destination(
        host=trapd.host,
        port=trapd.port,
        credentials=SnmpCredentials(
            version="2c", community=Secret(peer.COMMUNITY)
        ),
        **kwargs,  # type: ignore[arg-type]
    )


def _v3_trap(trapd: peer.SnmpTrapd) -> notify.Destination:
    return notify.Destination(
        host=trapd.host,
        port=trapd.port,
        credentials=SnmpCredentials(
            version="3",
            user=peer.TRAP_USER,
            auth_key=Secret(peer.TRAP_AUTH),
            priv_key=Secret(peer.TRAP_PRIV),
            engine_id=peer.TRAP_ENGINE_ID,
        ),
    )


def _v3_inform(
    trapd: peer.SnmpTrapd,
    *,
    user: str = peer.INFORM_USER,
    auth: str = peer.INFORM_AUTH,
    auth_protocol: str = "sha",
    privacy: str = "aes",
    timeout: float = 5.0,
    retries: int = 1,
) -> notify.Destination:
    return notify.Destination(
        host=trapd.host,
        port=trapd.port,
        inform=True,
        timeout=timeout,
        retries=retries,
        credentials=SnmpCredentials(
            version="3",
            user=user,
            auth_protocol=auth_protocol,
            auth_key=Secret(auth),
            priv_protocol=privacy,
            priv_key=Secret(peer.INFORM_PRIV),
        ),
    )


@pytest.fixture
def snmptrapd(tmp_path: Path) -> Iterator[peer.SnmpTrapd]:
    """A running snmptrapd on a free loopback port."""
    yield from peer.serve(peer.SnmpTrapd(tmp_path / "snmptrapd"))


@pytest.fixture
async def notifiers() -> AsyncIterator[list[notify.Notifier]]:
    """Notifiers made by a test, closed after it."""
    made: list[notify.Notifier] = []
    yield made
    for notifier in made:
        await notifier.aclose()


def _notifier(
    made: list[notify.Notifier], *destinations: notify.Destination
) -> notify.Notifier:
    notifier = notify.Notifier(destinations)
    made.append(notifier)
    return notifier


def _assert_check_down(log: str, check: str, reason: str) -> None:
    """The log holds fencekitCheckDown with each of its objects."""
    line = next(
        (ln for ln in log.splitlines() if f'STRING: "{check}"' in ln), ""
    )
    assert f"OID: .{ROOT}.0.3" in line
    assert f'.{ROOT}.1.7.0 = STRING: "{check}"' in line
    assert f'.{ROOT}.1.1.0 = STRING: "node-b"' in line
    assert f".{ROOT}.1.8.0 = INTEGER: 2" in line
    assert f'.{ROOT}.1.5.0 = STRING: "{reason}"' in line


async def test_v2c_trap_is_logged_with_its_objects(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """A v2c trap reaches snmptrapd with the check-down objects."""
    notifier = _notifier(notifiers, _v2c(snmptrapd))

    deliveries = await notifier.send(
        notify.check_down("web-v2c", "node-b", "connect refused")
    )

    assert [d.ok for d in deliveries] == [True]
    log = snmptrapd.wait_for("web-v2c")
    _assert_check_down(log, "web-v2c", "connect refused")


async def test_v3_trap_authpriv_is_logged(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """An SNMPv3 authPriv trap from fencekit's engine ID is accepted."""
    notifier = _notifier(notifiers, _v3_trap(snmptrapd))

    deliveries = await notifier.send(
        notify.check_down("web-v3trap", "node-b", "timeout")
    )

    assert [d.ok for d in deliveries] == [True]
    _assert_check_down(
        snmptrapd.wait_for("web-v3trap"), "web-v3trap", "timeout"
    )


@pytest.mark.parametrize(
    ("user", "protocol", "privacy"),
    [
        (peer.INFORM_USER, "sha", "aes"),
        (peer.INFORM_USER + "256", "sha256", "aes"),
        (peer.INFORM_USER + "512", "sha512", "aes256"),
    ],
)
async def test_v3_inform_authpriv_is_acknowledged_and_logged(
    snmptrapd: peer.SnmpTrapd,
    notifiers: list[notify.Notifier],
    user: str,
    protocol: str,
    privacy: str,
) -> None:
    """v3 authPriv informs (SHA-1/256/512, AES) are acknowledged."""
    notifier = _notifier(
        notifiers,
        _v3_inform(
            snmptrapd, user=user, auth_protocol=protocol, privacy=privacy
        ),
    )
    check = f"web-inform-{protocol}"

    deliveries = await notifier.send(
        notify.check_down(check, "node-b", "status 503")
    )

    assert [d.error for d in deliveries] == [None]
    _assert_check_down(snmptrapd.wait_for(check), check, "status 503")


async def test_each_notification_kind_reaches_every_destination(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """All five notifications reach a v2c and a v3 destination."""
    notifier = _notifier(notifiers, _v2c(snmptrapd), _v3_inform(snmptrapd))
    sent = [
        notify.node_fenced("node-b", "10.0.0.12", "ipmi", Action.OFF, 1.5),
        notify.fence_failed(
            "node-c", "10.0.0.13", "ipmi", Action.OFF, 20.0, "not confirmed"
        ),
        notify.check_down("all-kinds", "node-b", "down"),
        notify.check_up("all-kinds", "node-b"),
        notify.device_unreachable("node-d", "pdu-1", "snmp-pdu", "no reply"),
    ]

    for notification in sent:
        deliveries = await notifier.send(notification)
        assert [d.ok for d in deliveries] == [True, True]

    for number in range(1, 6):
        snmptrapd.wait_for(rf"(?s)(OID: \.{ROOT}\.0\.{number}\b.*){{2}}")
    log = snmptrapd.log_text()
    assert f".{ROOT}.1.6.0 = Gauge32: 1500" in log
    assert f".{ROOT}.1.4.0 = INTEGER: 3" in log
    assert f'.{ROOT}.1.5.0 = STRING: "not confirmed"' in log


async def test_wrong_v3_key_is_an_error_and_logged_by_snmptrapd(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """A wrong v3 key: AuthenticationError, snmptrapd logs the failure."""
    notifier = _notifier(
        notifiers, _v3_inform(snmptrapd, auth="not-the-key-1")
    )

    (delivery,) = await notifier.send(
        notify.check_down("wrong-key", "node-b", "x")
    )

    assert isinstance(delivery.error, AuthenticationError)
    assert peer.INFORM_USER in str(delivery.error)
    snmptrapd.wait_for(f"Authentication failed for {peer.INFORM_USER}")
    assert "wrong-key" not in snmptrapd.log_text()


async def test_unanswered_inform_fails_within_its_budget(
    tmp_path: Path, notifiers: list[notify.Notifier]
) -> None:
    """An unanswered inform fails as a timeout within its budget."""
    import socket

    destination = notify.Destination(
        host=peers.LOOPBACK,
        port=peers.free_port(socket.SOCK_DGRAM),
        inform=True,
        timeout=0.5,
        retries=1,
        credentials=SnmpCredentials(
            version="2c", community=Secret(peer.COMMUNITY)
        ),
    )
    notifier = _notifier(notifiers, destination)
    started = time.monotonic()

    (delivery,) = await notifier.send(notify.check_up("quiet", None))

    assert isinstance(delivery.error, DeviceTimeoutError)
    assert time.monotonic() - started < destination.budget + 2.0


async def test_fencer_hook_returns_at_once_and_sends_later(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """The fencer hook returns at once; the inform arrives later."""
    notifier = _notifier(notifiers, _v3_inform(snmptrapd))
    record = {
        "event": "outcome",
        "node": "node-hook",
        "action": "off",
        "success": True,
        "device": "bmc-b",
        "method": "ipmi",
        "duration": 0.25,
    }

    started = time.monotonic()
    notifier.on_fence_record(record)
    notifier.on_fence_record({"event": "requested", "node": "node-hook"})
    elapsed = time.monotonic() - started
    await notifier.aclose()

    assert elapsed < 0.05
    log = snmptrapd.wait_for("node-hook")
    assert log.count(f"OID: .{ROOT}.0.1") >= 1
    assert f".{ROOT}.1.6.0 = Gauge32: 250" in log


async def test_monitor_check_down_makes_snmptrapd_log_it(
    snmptrapd: peer.SnmpTrapd, notifiers: list[notify.Notifier]
) -> None:
    """A failing monitor check makes snmptrapd log fencekitCheckDown."""
    import socket

    from fencekit.monitor import CheckSpec, Monitor
    from fencekit.probes.tcp import TcpProbe

    closed = peers.free_port(socket.SOCK_STREAM)
    spec = CheckSpec(
        name="db-port",
        kind="tcp",
        probe=TcpProbe(peers.LOOPBACK, closed, timeout=2.0),
        interval=0.2,
        timeout=2.0,
        down_after=2,
        node="node-b",
    )
    notifier = _notifier(notifiers, _v2c(snmptrapd))
    monitor = Monitor([spec])
    monitor.subscribe(notifier.on_check_event)

    monitor.start()
    try:
        log = await asyncio.to_thread(snmptrapd.wait_for, "db-port", 30.0)
    finally:
        await monitor.close()

    line = next(ln for ln in log.splitlines() if "db-port" in ln)
    assert f"OID: .{ROOT}.0.3" in line
    assert f'.{ROOT}.1.1.0 = STRING: "node-b"' in line
    assert f'.{ROOT}.1.5.0 = STRING: "connect:' in line


async def test_configured_notifier_sends_and_keeps_secrets_out(
    snmptrapd: peer.SnmpTrapd,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A configured notifier delivers; a canary key is never printed."""
    from fencekit.logging import configure

    canary = "CANARY-snmp-7f3a9"
    keys = tmp_path / "keys"
    table = {
        "destinations": {
            "noc": {
                "host": snmptrapd.host,
                "port": snmptrapd.port,
                "community_file": str(
                    peer.secret_file(keys, "community", peer.COMMUNITY)
                ),
            },
            "bad": {
                "host": snmptrapd.host,
                "port": snmptrapd.port,
                "version": "3",
                "mode": "inform",
                "timeout": 2,
                "retries": 0,
                "user": peer.INFORM_USER,
                "auth_key_file": str(peer.secret_file(keys, "auth", canary)),
                "priv_key_file": str(
                    peer.secret_file(keys, "priv", peer.INFORM_PRIV)
                ),
            },
        }
    }
    stream = io.StringIO()
    configure(verbosity=2, json=True, stream=stream)
    notifier = notify.parse_config(table)

    try:
        deliveries = await notifier.send(
            notify.check_down("configured", "node-b", "x")
        )
    finally:
        await notifier.aclose()

    assert [d.destination for d in deliveries] == ["noc", "bad"]
    assert deliveries[0].ok
    assert isinstance(deliveries[1].error, AuthenticationError)
    snmptrapd.wait_for("configured")
    logged = stream.getvalue()
    assert "notification_failed" in logged
    for line in logged.splitlines():
        json.loads(line)
    captured = capsys.readouterr()
    everything = " ".join(
        [
            logged,
            captured.out,
            captured.err,
            repr(notifier),
            repr(notifier.destinations),
            str(deliveries),
            repr(deliveries[1].error),
        ]
    )
    assert canary not in everything


def test_config_errors_name_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bad notification settings give one ConfigError naming the key."""
    monkeypatch.setenv("FK_AUTH_7", "long-enough-key")
    community = peer.secret_file(tmp_path, "c", peer.COMMUNITY)
    base = {"host": "127.0.0.1", "community_file": str(community)}
    cases = [
        ({"community": "public"}, "destinations.d.community"),
        ({"mode": "shout"}, "destinations.d.mode"),
        ({"version": "3", "user": "u"}, "destinations.d.engine_id"),
        ({"colour": "red"}, "destinations.d.colour"),
        (
            {
                "version": "3",
                "user": "u",
                "mode": "inform",
                "auth_key_env": "FK_AUTH_7",
                "priv_protocol": "rot13",
            },
            "destinations.d.priv_protocol",
        ),
    ]

    for extra, where in cases:
        with pytest.raises(ConfigError) as caught:
            notify.parse_config({"destinations": {"d": {**base, **extra}}})
        assert caught.value.where == f"notifications.{where}", extra

    with pytest.raises(ConfigError, match="mib_root"):
        notify.parse_config(
            {"mib_root": "enterprises", "destinations": {"d": base}}
        )
    with pytest.raises(ConfigError, match="destinations"):
        notify.parse_config({})


def test_short_v3_key_is_refused() -> None:
    """An SNMPv3 key under 8 characters is refused before any packet."""
    with pytest.raises(ConfigError, match="auth_key"):
        SnmpCredentials(version="3", user="u", auth_key=Secret("short"))
