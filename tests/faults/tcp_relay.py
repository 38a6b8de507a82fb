"""A loopback TCP relay that delays, stalls or cuts connections.

Between fencekit and a TCP peer (tgtd's iSCSI port): every accepted
connection gets its own connection to the peer and two pumps. Faults:
``delay`` holds each chunk back; ``cut_after`` resets both sides once
that many bytes went towards the peer (counted over all connections, so
a cut can land in a login or in the middle of a command); ``stall``
stops forwarding without closing anything (a hung path).
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import struct
import threading
import time

from tests.support import peers


@dataclasses.dataclass
class TcpFaults:
    """What the relay does.

    Attributes:
        delay: seconds each chunk is held back, both directions.
        cut_after: reset every connection once this many bytes went up.
        stall_after: stop forwarding once this many bytes went up.
    """

    delay: float = 0.0
    cut_after: int | None = None
    stall_after: int | None = None


class TcpRelay:
    """Relay TCP connections to ``target`` with faults."""

    def __init__(
        self, target: tuple[str, int], faults: TcpFaults | None = None
    ) -> None:
        self.target = target
        self.faults = faults or TcpFaults()
        self.up_bytes = 0
        self.cuts = 0
        self.port = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    def start(self) -> TcpRelay:
        """Listen on a free loopback port until :meth:`stop`."""
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind((peers.LOOPBACK, 0))
        server.listen(16)
        server.settimeout(0.2)
        self.port = int(server.getsockname()[1])
        self._server = server
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._server is not None:
            self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def __enter__(self) -> TcpRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _reset(client)
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst, up in ((client, upstream, True),
                                 (upstream, client, False)):  # fmt: skip
                threading.Thread(
                    target=self._pump, args=(src, dst, up), daemon=True
                ).start()

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool) -> None:
        while not self._stop.is_set():
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            faults = self.faults
            if up:
                with self._lock:
                    self.up_bytes += len(data)
                    total = self.up_bytes
                if faults.cut_after is not None and total > faults.cut_after:
                    self.cuts += 1
                    _reset(src)
                    _reset(dst)
                    return
                if (
                    faults.stall_after is not None
                    and total > faults.stall_after
                ):
                    self._stop.wait(60)
                    return
            if faults.delay:
                time.sleep(faults.delay)
            try:
                dst.sendall(data)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    with contextlib.suppress(OSError):
        sock.close()
