"""HTTP(S) and TCP probes against real servers on loopback."""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit.errors import ConfigError
from fencekit.probes import Probe, ProbeOutcome, build
from fencekit.probes.base import close
from fencekit.probes.http import HttpProbe
from tests.support.http import HttpServer
from tests.support.peers import LOOPBACK, free_port

Factory = Callable[..., HttpServer]


async def once(probe: Probe) -> ProbeOutcome:
    """Run ``probe`` once and release its connections."""
    try:
        return await probe.run()
    finally:
        await close(probe)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Factory]:
    """Start HTTP(S) server processes; stop them all afterwards."""
    started: list[HttpServer] = []

    def start(**kwargs: Any) -> HttpServer:
        server = HttpServer(tmp_path / f"s{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def web(server_factory: Factory) -> HttpServer:
    """A plain HTTP server."""
    return server_factory()


async def test_healthy_page_reports_status_code(web: HttpServer) -> None:
    """A 200 with the expected body is healthy, with the status code."""
    probe = HttpProbe(web.url + "health", body_regex="fencekit-ok")

    outcome = await once(probe)

    assert outcome.healthy, outcome.reason
    assert outcome.details["status_code"] == 200
    assert 0 < outcome.duration < 5


async def test_unexpected_status_is_unhealthy(web: HttpServer) -> None:
    """A 503 is unhealthy by default and names the code."""
    outcome = await once(HttpProbe(web.url + "status/503"))

    assert not outcome.healthy
    assert "503" in outcome.reason
    assert outcome.details["status_code"] == 503


async def test_expected_status_list(web: HttpServer) -> None:
    """A code listed in expect_status is healthy even if not 2xx."""
    probe = HttpProbe(web.url + "status/418", expect_status=(418,))

    assert (await once(probe)).healthy


async def test_body_mismatch(web: HttpServer) -> None:
    """A body that lacks the pattern is unhealthy."""
    outcome = await once(HttpProbe(web.url, body_regex="^nope$"))

    assert not outcome.healthy
    assert outcome.reason == "body does not match"


async def test_required_header(web: HttpServer) -> None:
    """Required headers are checked by name and by pattern."""
    present = HttpProbe(web.url, headers_required={"X-Fencekit": "^1$"})
    missing = HttpProbe(web.url, headers_required={"X-Other": ""})

    assert (await once(present)).healthy
    outcome = await once(missing)
    assert not outcome.healthy
    assert "X-Other missing" in outcome.reason


async def test_redirects_followed_or_not(web: HttpServer) -> None:
    """Redirects are followed by default; else the 302 is judged."""
    followed = await once(HttpProbe(web.url + "redirect"))
    kept = await once(
        HttpProbe(
            web.url + "redirect", follow_redirects=False, expect_status=(200,)
        )
    )

    assert followed.details["status_code"] == 200
    assert kept.details["status_code"] == 302
    assert not kept.healthy


async def test_refused_connection_is_unhealthy() -> None:
    """Nothing listening: unhealthy with a connect reason, quickly."""
    probe = HttpProbe(f"http://{LOOPBACK}:{free_port()}/", timeout=5)

    outcome = await once(probe)

    assert not outcome.healthy
    assert outcome.reason.startswith("connect:")
    assert outcome.duration < 5


async def test_deadline_holds_against_silent_server(
    server_factory: Factory,
) -> None:
    """A server that accepts and never answers fails at the deadline."""
    silent = server_factory(mode="hang")
    probe = HttpProbe(silent.url, timeout=0.5)

    started = time.monotonic()
    outcome = await once(probe)
    elapsed = time.monotonic() - started

    assert not outcome.healthy
    assert "0.5 s" in outcome.reason
    assert elapsed < 3


async def test_https_with_ca_reports_expiry(server_factory: Factory) -> None:
    """HTTPS verified against the test CA exports the cert's expiry."""
    soon = datetime.timedelta(days=3)
    server = server_factory(tls=True, expires_in=soon)
    probe = HttpProbe(server.url + "health", ca_file=str(server.ca_file))

    outcome = await once(probe)

    assert outcome.healthy, outcome.reason
    assert server.not_after is not None
    expiry = outcome.details["tls_expiry_timestamp"]
    assert expiry == server.not_after.timestamp()


async def test_https_unknown_ca_fails(server_factory: Factory) -> None:
    """Without the CA the certificate is refused, with a TLS reason."""
    server = server_factory(tls=True)

    outcome = await once(HttpProbe(server.url))

    assert not outcome.healthy
    assert outcome.reason.startswith("TLS:")


async def test_https_insecure_still_reports_expiry(
    server_factory: Factory,
) -> None:
    """With verification off the expiry is still read from the cert."""
    server = server_factory(tls=True, expires_in=datetime.timedelta(days=1))

    outcome = await once(HttpProbe(server.url, verify_tls=False))

    assert outcome.healthy, outcome.reason
    assert "tls_expiry_timestamp" in outcome.details


async def test_ipv4_pinned(web: HttpServer) -> None:
    """ip_version 4 resolves localhost to 127.0.0.1 and connects."""
    url = f"http://localhost:{web.port}/health"

    assert (await once(HttpProbe(url, ip_version=4))).healthy
    outcome = await once(HttpProbe(url, ip_version=6, timeout=2))
    assert not outcome.healthy
    assert outcome.reason.startswith("connect:")


def test_bad_options_name_the_key() -> None:
    """Bad option tables fail with the location and key."""
    with pytest.raises(ConfigError, match=r"^a.toml: checks.w.url: "):
        build("http", {"url": "ftp://x"}, "a.toml: checks.w")
    with pytest.raises(ConfigError, match=r"checks.w.body_regex: bad"):
        build("http", {"url": "http://x/", "body_regex": "("}, "checks.w")
    with pytest.raises(ConfigError, match=r"checks.w.colour: unknown"):
        build("http", {"url": "http://x/", "colour": 1}, "checks.w")


async def test_tcp_connect_send_expect(web: HttpServer) -> None:
    """TCP: connect, send a request line, expect the status line."""
    probe = build(
        "tcp",
        {
            "host": LOOPBACK,
            "port": web.port,
            "send": "GET /health HTTP/1.0\r\n\r\n",
            "expect": "^HTTP/1.[01] 200",
        },
    )

    outcome = await once(probe)

    assert outcome.healthy, outcome.reason


async def test_tcp_refused_and_silent(server_factory: Factory) -> None:
    """TCP: a closed port fails fast; a silent server at the deadline."""
    silent = server_factory(mode="hang")
    refused = build("tcp", {"host": LOOPBACK, "port": free_port()})
    quiet = build(
        "tcp",
        {"host": LOOPBACK, "port": silent.port, "expect": "x", "timeout": 0.3},
    )

    assert not (await once(refused)).healthy
    outcome = await once(quiet)
    assert not outcome.healthy
    assert outcome.reason.startswith("reply: no answer")


async def test_ipv6_pinned(server_factory: Factory) -> None:
    """A server on ::1 answers a probe pinned to IPv6, not one pinned to 4."""
    server = server_factory(host="::1")
    url = server.url + "health"

    six = await once(HttpProbe(url, ip_version=6))
    four = await once(HttpProbe(url, ip_version=4, timeout=2))
    tcp = await once(
        build("tcp", {"host": "::1", "port": server.port, "ip_version": 6})
    )

    assert six.healthy, six.reason
    assert not four.healthy
    assert tcp.healthy, tcp.reason
    assert tcp.target == f"[::1]:{server.port}"


async def test_client_certificate(server_factory: Factory) -> None:
    """A server that demands a client certificate accepts the probe's."""
    server = server_factory(tls=True, client_auth=True)
    ca = str(server.ca_file)

    with_cert = await once(
        HttpProbe(server.url, ca_file=ca, client_cert=str(server.client_cert))
    )
    without = await once(HttpProbe(server.url, ca_file=ca))

    assert with_cert.healthy, with_cert.reason
    assert not without.healthy
