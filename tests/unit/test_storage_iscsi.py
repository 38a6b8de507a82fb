"""iSCSI transport: URL parsing, the libiscsi task layout, no target."""

from __future__ import annotations

import pytest

from fencekit.errors import ConfigError, UnreachableError
from fencekit.storage.iscsi import IscsiTransport, _Task, parse_url
from tests.support import peers


def test_parse_url_with_port() -> None:
    """Host, port, target name and LUN."""
    url = parse_url("iscsi://10.0.0.5:3261/iqn.2024-01.com.example:disks/3")

    assert url.portal == "10.0.0.5:3261"
    assert url.target == "iqn.2024-01.com.example:disks"
    assert url.lun == 3


def test_parse_url_defaults_and_ipv6() -> None:
    """Port 3260 by default; IPv6 literals in brackets."""
    url = parse_url("iscsi://[::1]/iqn.2024-01.x:t/0")

    assert url.portal == "[::1]:3260" and url.lun == 0


@pytest.mark.parametrize(
    "text",
    [
        "iscsi://host/iqn.x:t",
        "iscsi://host:0/iqn.x:t/1",
        "iscsi://host:70000/iqn.x:t/1",
        "iscsi://host/iqn.x:t/99999",
        "http://host/iqn.x:t/1",
    ],
)
def test_parse_url_rejects(text: str) -> None:
    """A missing LUN, a port or LUN out of range, another scheme."""
    with pytest.raises(ConfigError):
        parse_url(text)


def test_task_layout_matches_libiscsi() -> None:
    """struct scsi_task on LP64: status at 0, the data-in buffer at 64."""
    assert _Task.status.offset == 0
    assert _Task.cdb.offset == 16
    assert _Task.datain.offset == 64


async def test_nothing_listening_is_unreachable() -> None:
    """A login to a closed loopback port fails as unreachable."""
    port = peers.free_port()
    transport = IscsiTransport(
        f"iscsi://127.0.0.1:{port}/iqn.2024-01.x:t/1",
        initiator="iqn.2024-01.io.fencekit:node-a",
    )
    try:
        with pytest.raises(UnreachableError, match="login"):
            await transport.execute(b"\x00" * 6, timeout=5)
    finally:
        await transport.close()
