"""HTTP(S) servers on loopback for the probe and agent tests.

Each server is a separate process (``python -m tests.support.http``),
so a test can kill it by PID mid-run. Modes:

- ``ok``: ``/health`` answers 200 ``fencekit-ok`` with ``X-Fencekit: 1``;
  ``/status/NNN`` answers with that code; ``/redirect`` answers 302 to
  ``/health``;
- ``hang``: accepts connections and never answers.

HTTPS uses certificates made by trustme.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import os
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

from tests.support.peers import LOOPBACK, free_port, wait_until

_ROOT = Path(__file__).resolve().parents[2]


class HttpServer:
    """A server process on a free loopback port.

    Args:
        folder: scratch folder for certificates and logs.
        mode: ``ok`` or ``hang``.
        tls: serve HTTPS with a certificate from a fresh trustme CA.
        expires_in: the server certificate's remaining validity.
        port: the port (a restarted service); a free one by default.
        host: the address to bind, ``::1`` for IPv6.
        client_auth: require a client certificate from the same CA;
            ``client_cert`` then holds one (key and certificate, PEM).
    """

    def __init__(
        self,
        folder: Path,
        *,
        mode: str = "ok",
        tls: bool = False,
        expires_in: datetime.timedelta | None = None,
        port: int | None = None,
        host: str = LOOPBACK,
        client_auth: bool = False,
    ) -> None:
        self.folder = folder
        self.mode = mode
        self.tls = tls
        self.expires_in = expires_in
        self.host = host
        self.client_auth = client_auth
        self.client_cert: Path | None = None
        self.port = port or free_port()
        self.ca_file: Path | None = None
        self.not_after: datetime.datetime | None = None
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, ending with ``/``."""
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/"

    def start(self) -> HttpServer:
        """Start the process; return once it accepts connections."""
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [
            sys.executable,
            "-m",
            "tests.support.http",
            "--port",
            str(self.port),
            "--mode",
            self.mode,
            "--host",
            self.host,
        ]
        if self.tls:
            argv += self._certificates()
        with (self.folder / f"http-{self.port}.log").open("wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=_ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._accepts, 20, f"HTTP server on port {self.port}")
        return self

    def _certificates(self) -> list[str]:
        import trustme

        ca = trustme.CA()
        if self.expires_in is not None:
            self.not_after = (
                datetime.datetime.now(datetime.UTC) + self.expires_in
            ).replace(microsecond=0)
            cert = ca.issue_cert(LOOPBACK, not_after=self.not_after)
        else:
            cert = ca.issue_cert(LOOPBACK)
        self.ca_file = self.folder / "ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        chain = self.folder / "server.pem"
        cert.private_key_and_cert_chain_pem.write_to_path(str(chain))
        if not self.client_auth:
            return ["--cert", str(chain)]
        self.client_cert = self.folder / "client.pem"
        client = ca.issue_cert("fencekit-probe@example.org")
        client.private_key_and_cert_chain_pem.write_to_path(
            str(self.client_cert)
        )
        return ["--cert", str(chain), "--client-ca", str(self.ca_file)]

    def _accepts(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"HTTP server exited {self.process.returncode}")
        try:
            socket.create_connection((self.host, self.port), 0.2).close()
        except OSError:
            return False
        return True

    def kill(self) -> None:
        """Kill the process (a crashed service)."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """Stop the process by its PID."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.startswith("/status/"):
            self._answer(int(self.path.rsplit("/", 1)[1]), b"status\n")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/health")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._answer(200, b"fencekit-ok\n")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("X-Fencekit", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _serve(
    host: str, port: int, mode: str, cert: str | None, client_ca: str | None
) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if mode == "hang":
        listener = socket.create_server((host, port), family=family)
        held = []
        while True:
            connection, _ = listener.accept()
            held.append(connection)
    server_class = (
        _Server6
        if family == socket.AF_INET6
        else http.server.ThreadingHTTPServer
    )
    server = server_class((host, port), _Handler)
    server.daemon_threads = True
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert)
        if client_ca:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(client_ca)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", default="ok")
    parser.add_argument("--cert")
    parser.add_argument("--client-ca")
    parser.add_argument("--host", default=LOOPBACK)
    args = parser.parse_args()
    _serve(args.host, args.port, args.mode, args.cert, args.client_ca)
