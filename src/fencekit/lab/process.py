"""What every lab peer needs: free loopback ports and stopping by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

__all__ = [
    "LOOPBACK",
    "free_tcp_port",
    "free_udp_port",
    "stop_process",
    "udp_bound",
]

LOOPBACK = "127.0.0.1"


def free_udp_port(address: str = LOOPBACK) -> int:
    """A UDP port on ``address`` that nothing holds right now."""
    return _free(socket.SOCK_DGRAM, address)


def free_tcp_port(address: str = LOOPBACK) -> int:
    """A TCP port on ``address`` that nothing holds right now."""
    return _free(socket.SOCK_STREAM, address)


def _free(kind: int, address: str) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def udp_bound(port: int, address: str = LOOPBACK) -> bool:
    """Whether some process has bound UDP ``port`` (on any address).

    Read from the kernel's socket tables, not by trying to bind the port
    ourselves: a probe that holds the port for an instant can make the
    peer's own bind fail, and some peers then run on without listening.
    """
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as lines:
                next(lines, None)
                for line in lines:
                    local = line.split()[1]
                    if local.endswith(wanted):
                        return True
        except OSError:
            continue
    return False


def stop_process(
    proc: subprocess.Popen[bytes] | None, grace: float = 3.0
) -> None:
    """SIGTERM ``proc`` by its PID, SIGKILL it after ``grace`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
