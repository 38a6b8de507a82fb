"""Finding third-party peers, and free ports on loopback.

With ``CI=true`` a missing peer fails its test; elsewhere it skips it.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable

import pytest

LOOPBACK = "127.0.0.1"


def in_ci() -> bool:
    """Whether the tests run under CI, where no peer may be missing."""
    return os.environ.get("CI", "").lower() == "true"


def require(binary: str) -> str:
    """Return the path of ``binary``, or fail (CI) or skip the test."""
    path = shutil.which(binary) or _sbin(binary)
    if path:
        return path
    message = f"peer {binary!r} is not installed"
    if in_ci():
        pytest.fail(message + " (CI=true: a missing peer is a failure)")
    pytest.skip(message)


def _sbin(binary: str) -> str | None:
    for folder in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        path = os.path.join(folder, binary)
        if os.access(path, os.X_OK):
            return path
    return None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 that nothing holds right now."""
    from fencekit.lab.process import free_tcp_port, free_udp_port

    if kind == socket.SOCK_DGRAM:
        return free_udp_port(LOOPBACK)
    return free_tcp_port(LOOPBACK)


def udp_port_bound(port: int) -> bool:
    """Whether some process has bound UDP ``port`` (see the lab's
    :func:`fencekit.lab.process.udp_bound`: no racing bind probe)."""
    from fencekit.lab.process import udp_bound

    return udp_bound(port)


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` every 10 ms until it holds, or fail the test."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.01)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")
