"""``fencekit storage`` as a user runs it, against tgtd on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from fencekit.storage import operations, spc
from fencekit.storage.iscsi import IscsiTransport
from fencekit.storage.keys import format_key, key_for_node
from fencekit.storage.operations import LogicalUnit
from fencekit.storage.pr import PersistentReservations
from tests.support.tgtd import BLOCK_SIZE, Tgtd

pytestmark = pytest.mark.peer("tgtd")

IQN_A = "iqn.2024-01.io.fencekit:node-a"
IQN_B = "iqn.2024-01.io.fencekit:node-b"
KEY_A = key_for_node("shop", 1)
KEY_B = key_for_node("shop", 2)


def fencekit(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the fencekit command as a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "fencekit.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def node_b(tgtd: Tgtd) -> AsyncIterator[LogicalUnit]:
    """Node B on its own long-lived session, unfenced."""
    path = PersistentReservations(IscsiTransport(tgtd.url(), initiator=IQN_B))
    unit = LogicalUnit(tgtd.url(), (path,))
    assert (await operations.unfence([unit], KEY_B)).success
    try:
        yield unit
    finally:
        await path.transport.close()


async def test_cli_fence_refuses_the_victims_writes(
    tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """The acceptance command fences B on tgtd; B's writes conflict."""
    result = fencekit(
        "storage", "fence", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A), "--victim-key", str(KEY_B),
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "fence verified" in result.stdout
    with pytest.raises(spc.ReservationConflictError):
        await node_b.paths[0].send(
            "WRITE(10)", spc.write10_cdb(0, 1), data_out=b"b" * BLOCK_SIZE
        )
    assert tgtd.read_block(0) == bytes(BLOCK_SIZE)


async def test_cli_keys_json_and_status_of_a_fenced_node(
    tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """keys --json lists B; after the fence, B's status exits 1."""
    listed = fencekit(
        "storage", "keys", tgtd.url(), "--initiator", IQN_A, "--json"
    )
    assert listed.returncode == 0, listed.stderr
    unit = json.loads(listed.stdout)["units"][0]
    assert unit["keys"] == [format_key(KEY_B)]
    assert unit["reservation"]["key"] == format_key(KEY_B)

    fenced = fencekit(
        "storage", "fence", tgtd.url(), "--initiator", IQN_A,
        "--cluster", "shop", "--node-id", "1",
        "--victim-key", format_key(KEY_B),
    )  # fmt: skip
    assert fenced.returncode == 0, fenced.stderr
    status = fencekit(
        "storage", "status", tgtd.url(), "--initiator", IQN_B,
        "--key", format_key(KEY_B),
    )  # fmt: skip

    assert status.returncode == 1
    assert "not registered" in status.stderr
    last = status.stderr.strip().splitlines()[-1]
    assert last.startswith("fencekit: error: ") and "Traceback" not in (
        status.stderr
    )


def test_cli_self_check_fails_closed_on_a_dead_target(tgtd: Tgtd) -> None:
    """self-check exits 1 with a reason when the target is gone."""
    tgtd.kill()

    result = fencekit(
        "storage", "self-check", tgtd.url(), "--initiator", IQN_A,
        "--key", "0x1",
    )  # fmt: skip

    assert result.returncode == 1
    assert "login" in result.stderr and "Traceback" not in result.stderr


def test_cli_unfence_then_status(tgtd: Tgtd) -> None:
    """unfence registers; status and self-check then see the key."""
    unfenced = fencekit(
        "storage", "unfence", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A),
    )  # fmt: skip
    status = fencekit(
        "storage", "status", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A),
    )  # fmt: skip

    check = fencekit(
        "storage", "self-check", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A),
    )  # fmt: skip

    assert unfenced.returncode == 0, unfenced.stderr
    assert "reserved by " + format_key(KEY_A) in unfenced.stdout
    assert status.returncode == 0, status.stderr
    assert check.returncode == 0, check.stderr
    assert "key registered on 1/1 path(s)" in check.stdout


async def test_cli_fence_of_an_unknown_key_is_not_a_success(
    tgtd: Tgtd, node_b: LogicalUnit
) -> None:
    """A mistyped victim key fails, naming the keys still registered."""
    wrong = key_for_node("shop", 3)

    result = fencekit(
        "storage", "fence", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A), "--victim-key", format_key(wrong),
    )  # fmt: skip
    absent_ok = fencekit(
        "storage", "fence", tgtd.url(), "--initiator", IQN_A,
        "--key", format_key(KEY_A), "--victim-key", format_key(wrong),
        "--absent-ok",
    )  # fmt: skip

    assert result.returncode == 1
    assert "is not registered: nothing was fenced" in result.stderr
    assert format_key(KEY_B) in result.stderr
    assert absent_ok.returncode == 0, absent_ok.stderr
    keys = (await operations.keys([node_b])).units[0].keys
    assert KEY_B in keys, "node B was not touched"
