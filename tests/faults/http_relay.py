"""A loopback HTTPS relay in front of a Redfish service, with faults.

The relay ends TLS with a certificate from the test's CA, reads each
request, and either forwards it to the real service (sushy-tools'
emulator) over a new TLS connection and relays the answer, or does one of
these instead, drawn per request at the rates of :class:`HttpFaults`:

- answer 503 (or another 5xx) with a Redfish error body, without
  forwarding;
- reset the connection (TCP RST) before forwarding, or *after*
  forwarding, so the service carried the request out but the client
  never hears of it;
- stall: send nothing at all for ``stall`` seconds, or send the headers
  and half the body and then stall;
- answer the service's status and headers with a malformed JSON body.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import json
import random
import socket
import socketserver
import ssl
import struct
import threading
from typing import Any

from tests.support import peers

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "proxy-connection",
    "upgrade",
}


@dataclasses.dataclass
class HttpFaults:
    """Per-request fault rates; at most one fault hits one request.

    Attributes:
        status_5xx: rate of requests answered ``status`` unforwarded.
        status: the 5xx status to answer.
        reset_before: rate of connections reset before forwarding.
        reset_after: rate of requests forwarded, then reset unanswered.
        stall_headers: rate of requests that get no byte back.
        stall_body: rate of answers cut after the headers and half the
            body.
        malformed: rate of answers whose JSON body is garbled.
        stall: seconds a stall lasts (ends early when the relay stops).
        only: apply faults only to requests whose method is in this set
            (all methods when empty).
        seed: seed of the generator that draws the faults.
    """

    status_5xx: float = 0.0
    status: int = 503
    reset_before: float = 0.0
    reset_after: float = 0.0
    stall_headers: float = 0.0
    stall_body: float = 0.0
    malformed: float = 0.0
    stall: float = 30.0
    only: frozenset[str] = frozenset()
    seed: int = 0


@dataclasses.dataclass
class HttpStats:
    """What the relay did to how many requests."""

    requests: int = 0
    forwarded: int = 0
    faults: dict[str, int] = dataclasses.field(default_factory=dict)


class _Reset(Exception):
    """Close the client's connection with a TCP reset."""


class HttpsRelay:
    """Relay HTTPS requests to ``target`` with faults.

    Args:
        target: the real service's (host, port).
        server_context: TLS context serving the relay's certificate.
        client_context: TLS context trusting the real service.
        faults: what to do to requests.
    """

    def __init__(
        self,
        target: tuple[str, int],
        *,
        server_context: ssl.SSLContext,
        client_context: ssl.SSLContext,
        faults: HttpFaults | None = None,
    ) -> None:
        self.target = target
        self.server_context = server_context
        self.client_context = client_context
        self.faults = faults or HttpFaults()
        self.stats = HttpStats()
        self.released = threading.Event()
        self._random = random.Random(self.faults.seed)
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    def start(self) -> HttpsRelay:
        """Listen on a free loopback port until :meth:`stop`."""
        relay = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                relay._connection(self.request)

        server = socketserver.ThreadingTCPServer((peers.LOOPBACK, 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="https-relay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end every stall."""
        self.released.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HttpsRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_faults(self, faults: HttpFaults) -> None:
        """Apply new rates from the next request on."""
        with self._lock:
            self.faults = faults
            self._random = random.Random(faults.seed)

    # -- one client connection ----------------------------------------------

    def _connection(self, raw: socket.socket) -> None:
        try:
            tls = self.server_context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            return
        stream = tls.makefile("rb")
        try:
            while not self.released.is_set():
                request = _read_request(stream)
                if request is None:
                    return
                if not self._one(tls, *request):
                    return
        except _Reset:
            _reset(tls)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            stream.close()
            tls.close()

    def _draw(self, method: str) -> str | None:
        with self._lock:
            f, rnd = self.faults, self._random
            self.stats.requests += 1
            if f.only and method not in f.only:
                return None
            rates = [
                ("5xx", f.status_5xx),
                ("reset_before", f.reset_before),
                ("reset_after", f.reset_after),
                ("stall_headers", f.stall_headers),
                ("stall_body", f.stall_body),
                ("malformed", f.malformed),
            ]
            roll = rnd.random()
            for name, rate in rates:
                if roll < rate:
                    self.stats.faults[name] = (
                        self.stats.faults.get(name, 0) + 1
                    )
                    return name
                roll -= rate
            return None

    def _one(
        self,
        tls: ssl.SSLSocket,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> bool:
        """Serve one request; False when the connection must end."""
        fault = self._draw(method)
        if fault == "reset_before":
            raise _Reset
        if fault == "stall_headers":
            self.released.wait(self.faults.stall)
            return False
        if fault == "5xx":
            doc = {
                "error": {
                    "code": "Base.1.0.ServiceTemporarilyUnavailable",
                    "message": "The service is temporarily unavailable.",
                }
            }
            payload = json.dumps(doc).encode()
            _answer(tls, self.faults.status, [], payload)
            return True
        status, answer_headers, payload = self._forward(
            method, path, headers, body
        )
        if fault == "reset_after":
            raise _Reset
        if fault == "malformed":
            payload = _garble(payload)
        if fault == "stall_body":
            _answer(tls, status, answer_headers, payload, cut=True)
            self.released.wait(self.faults.stall)
            return False
        _answer(tls, status, answer_headers, payload)
        return True

    def _forward(
        self,
        method: str,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPSConnection(
            *self.target, context=self.client_context, timeout=30
        )
        try:
            conn.putrequest(
                method, path, skip_host=True, skip_accept_encoding=True
            )
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            payload = response.read()
            kept = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP
            ]
            with self._lock:
                self.stats.forwarded += 1
            return response.status, kept, payload
        finally:
            conn.close()


def _read_request(
    stream: Any,
) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    line = stream.readline(65537)
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: list[tuple[str, str]] = []
    length = 0
    while True:
        raw = stream.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))
        if name.strip().lower() == "content-length":
            length = int(value)
    body = stream.read(length) if length else b""
    return method, path, headers, body


def _answer(
    tls: ssl.SSLSocket,
    status: int,
    headers: list[tuple[str, str]],
    payload: bytes,
    *,
    cut: bool = False,
) -> None:
    reason = http.client.responses.get(status, "Status")
    head = [f"HTTP/1.1 {status} {reason}"]
    head += [f"{k}: {v}" for k, v in headers]
    if payload and not any(k.lower() == "content-type" for k, _ in headers):
        head.append("Content-Type: application/json")
    head.append(f"Content-Length: {len(payload)}")
    data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    tls.sendall(data + (payload[: len(payload) // 2] if cut else payload))


def _garble(payload: bytes) -> bytes:
    if not payload:
        return b"{"
    # Cut in the middle and add a stray byte: no JSON parser takes it.
    return payload[: max(1, len(payload) // 2)] + b"\x00{"


def _reset(tls: ssl.SSLSocket) -> None:
    with contextlib.suppress(OSError):
        tls.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )
    tls.close()
