"""HTTP(S) probe over requests.

Expectations: status codes, a body regular expression, required
headers. TLS is verified against the system store or a given CA file;
the server certificate's expiry is reported as a detail. The address
family can be pinned to IPv4 or IPv6.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from fencekit._hosts import check_hostname
from fencekit._log import get_logger
from fencekit.probes._options import Options
from fencekit.probes.base import (
    Detail,
    ProbeOutcome,
    ProbeTimeoutError,
    in_thread,
    outcome,
)

__all__ = ["HttpProbe", "from_options"]

# Enough to judge a health page; a larger body is not read further.
_BODY_LIMIT = 1 << 20


class HttpProbe:
    """One HTTP(S) request judged against expectations.

    Args:
        url: ``http://`` or ``https://`` address (no credentials in it).
        timeout: deadline in seconds for the whole probe.
        expect_status: accepted status codes; 200-399 when empty.
        body_regex: a pattern the body must contain.
        headers_required: header name to a pattern its value must match.
        method: the HTTP method.
        headers: headers to send.
        follow_redirects: follow redirects (else a 3xx is the answer).
        verify_tls: check the server certificate.
        ca_file: CA bundle to check it against (else the system's).
        client_cert: client certificate file (PEM).
        client_key: its key file, when not in ``client_cert``.
        ip_version: 4 or 6 to pin the address family, else either.

    Raises:
        ConfigError: the URL or a pattern is invalid.
    """

    kind = "http"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 10.0,
        expect_status: tuple[int, ...] = (),
        body_regex: str | None = None,
        headers_required: Mapping[str, str] | None = None,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = True,
        verify_tls: bool = True,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        ip_version: int | None = None,
    ) -> None:
        from fencekit.errors import ConfigError

        try:
            parts = urlsplit(url)
            hostname, _ = parts.hostname, parts.port
        except ValueError as exc:
            raise ConfigError(f"not a URL: {exc}", where="url") from exc
        if parts.scheme not in ("http", "https") or not hostname:
            raise ConfigError(f"not an http(s) URL: {url!r}", where="url")
        check_hostname(hostname, "url")
        _check_request(method, url)
        if parts.username or parts.password:
            raise ConfigError(
                "credentials do not belong in a URL", where="url"
            )
        self.url = url
        self.target = url
        self.timeout = timeout
        self.expect_status = expect_status
        self.body_regex = _compile(body_regex, "body_regex")
        self.headers_required = {
            name: _compile(pattern, f"headers_required.{name}")
            for name, pattern in (headers_required or {}).items()
        }
        self.method = method.upper()
        self.headers = dict(headers or {})
        self.follow_redirects = follow_redirects
        self.verify: bool | str = (ca_file or True) if verify_tls else False
        self.cert: str | tuple[str, str] | None = (
            (client_cert, client_key)
            if client_cert and client_key
            else client_cert
        )
        self.ip_version = ip_version
        self._session: Any = None
        self._prepared: Any = None
        if not verify_tls:
            _quiet_insecure_warning()
            get_logger(__name__).warning(
                "tls_verification_disabled", target=url
            )

    async def run(self) -> ProbeOutcome:
        """Send the request and judge the answer; never raises."""
        started = time.monotonic()
        try:
            status, headers, body, expiry = await in_thread(
                self._request, self.timeout
            )
        except ProbeTimeoutError as exc:
            return outcome(self, started, False, str(exc))
        except _RequestFailedError as exc:
            return outcome(self, started, False, str(exc))

        details: dict[str, Detail] = {"status_code": status}
        if expiry is not None:
            details["tls_expiry_timestamp"] = expiry
        reason = self._judge(status, headers, body)
        return outcome(self, started, not reason, reason, details)

    async def close(self) -> None:
        """Close the kept-alive connections."""
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _judge(self, status: int, headers: Any, body: str) -> str:
        if self.expect_status:
            if status not in self.expect_status:
                return f"status {status} not in expected {self.expect_status}"
        elif not 200 <= status < 400:
            return f"status {status}"
        for name, pattern in self.headers_required.items():
            value = headers.get(name)
            if value is None:
                return f"header {name} missing"
            if pattern is not None and not pattern.search(value):
                return f"header {name} does not match"
        if self.body_regex is not None and not self.body_regex.search(body):
            return "body does not match"
        return ""

    def _request(self) -> tuple[int, Any, str, float | None]:
        import requests

        session = self._session or self._new_session()
        try:
            response = session.send(
                self._prepared.copy(),
                timeout=self.timeout,
                allow_redirects=self.follow_redirects,
                verify=self.verify,
                cert=self.cert,
                proxies={},
                stream=True,
            )
        except requests.exceptions.SSLError as exc:
            raise _RequestFailedError(f"TLS: {_root(exc)}") from exc
        except requests.exceptions.Timeout as exc:
            raise _RequestFailedError(
                f"no answer within {self.timeout:g} s"
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise _RequestFailedError(f"connect: {_root(exc)}") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            raise _RequestFailedError(f"request: {_root(exc)}") from exc
        except (ValueError, UnicodeError, LookupError) as exc:
            # What the server sent made urllib3 fail outside its own
            # error tree (a redirect to a host name it cannot encode).
            raise _RequestFailedError(
                f"request: {type(exc).__name__}: {exc}"
            ) from exc

        with response:
            expiry = _certificate_expiry(response)
            try:
                raw = response.raw.read(_BODY_LIMIT, decode_content=True)
            except Exception as exc:
                raise _RequestFailedError(f"body: {_root(exc)}") from exc
        try:
            body = raw.decode(response.encoding or "utf-8", "replace")
        except LookupError:
            # The server named a charset Python does not know.
            body = raw.decode("utf-8", "replace")
        return response.status_code, response.headers, body, expiry

    def _new_session(self) -> Any:
        import requests

        session = requests.Session()
        # This machine's REQUESTS_CA_BUNDLE (and proxies) would override
        # the CA the probe was configured with: requests reads the
        # environment before the per-request value.
        session.trust_env = False
        if self.ip_version is not None:
            adapter = _family_adapter(self.ip_version)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        # The request is prepared once: Session.request would prepare it
        # and merge settings anew on every run, which doubles the CPU
        # time of a probe on a keep-alive connection.
        self._prepared = session.prepare_request(
            requests.Request(self.method, self.url, headers=self.headers)
        )
        self._session = session
        return session


def _quiet_insecure_warning() -> None:
    """Drop urllib3's per-request InsecureRequestWarning.

    The probe logs one WARNING when it is built instead. The filter is
    process-wide: ``warnings.catch_warnings`` is not thread-safe, and
    requests run in the probe threads.
    """
    import warnings

    from urllib3.exceptions import InsecureRequestWarning

    warnings.filterwarnings("ignore", category=InsecureRequestWarning)


class _RequestFailedError(Exception):
    """The request got no HTTP answer (internal)."""


def _compile(pattern: str | None, where: str) -> re.Pattern[str] | None:
    from fencekit.errors import ConfigError

    if pattern is None or pattern == "":
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"bad regular expression: {exc}", where=where
        ) from exc


def _root(exc: BaseException) -> str:
    """The innermost cause's text, which names what really failed."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]


def _certificate_expiry(response: Any) -> float | None:
    """The server certificate's notAfter, as a Unix time.

    The certificate is taken from the socket while the response is
    still open (once the body is read the connection returns to the
    pool), in its DER form: the parsed form is empty when verification
    is off, and an expiring certificate matters most there.
    """
    from cryptography import x509

    connection = getattr(response.raw, "connection", None)
    sock = getattr(connection, "sock", None)
    if not isinstance(sock, ssl.SSLSocket):
        return None
    der = sock.getpeercert(binary_form=True)
    if not der:
        return None
    certificate = x509.load_der_x509_certificate(der)
    return certificate.not_valid_after_utc.timestamp()


def _family_adapter(version: int) -> Any:
    """A requests adapter whose connections use one address family."""
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
    from urllib3.exceptions import NewConnectionError

    family = socket.AF_INET if version == 4 else socket.AF_INET6

    def new_conn(self: Any) -> socket.socket:
        # urllib3 picks the family process-wide (allowed_gai_family); a
        # probe pinned to one family resolves and connects by itself.
        try:
            infos = socket.getaddrinfo(
                self._dns_host, self.port, family, socket.SOCK_STREAM
            )
            fam, kind, proto, _, address = infos[0]
            sock = socket.socket(fam, kind, proto)
            sock.settimeout(self.timeout)
            try:
                sock.connect(address)
            except OSError:
                sock.close()
                raise
        except OSError as exc:
            raise NewConnectionError(self, f"IPv{version}: {exc}") from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    http_conn = type("_HttpConn", (HTTPConnection,), {"_new_conn": new_conn})
    https_conn = type(
        "_HttpsConn", (HTTPSConnection,), {"_new_conn": new_conn}
    )
    http_pool = type(
        "_HttpPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}
    )
    https_pool = type(
        "_HttpsPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}
    )

    class _Adapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {
                "http": http_pool,
                "https": https_pool,
            }

    return _Adapter()


def _status_codes(values: list[Any], opts: Options) -> tuple[int, ...]:
    codes: list[int] = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise opts.fail("expect_status", "must be a list of codes")
        if not 100 <= value <= 599:
            raise opts.fail("expect_status", f"{value} is not a status")
        codes.append(value)
    return tuple(codes)


def _check_request(method: str, url: str) -> None:
    """Let requests build the request once, so that a URL or method it
    cannot send is a configuration error now, not at the first run.

    Raises:
        ConfigError: requests refuses the URL or the method.
    """
    import requests

    from fencekit.errors import ConfigError

    # RFC 9110 5.6.2: a method is a token.
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", method):
        raise ConfigError(f"not an HTTP method: {method!r}", where="method")
    try:
        requests.Request(method.upper(), url).prepare()
    except (requests.exceptions.RequestException, ValueError) as exc:
        where = "method" if "Method" in str(exc) else "url"
        raise ConfigError(str(exc).split("\n")[0], where=where) from exc


def from_options(table: Mapping[str, Any], where: str = "") -> HttpProbe:
    """Build an :class:`HttpProbe` from an option table.

    Raises:
        ConfigError: an option is missing, unknown or invalid.
    """
    opts = Options(table, where)
    expect = opts.value("expect_status", [])
    if not isinstance(expect, list):
        raise opts.fail("expect_status", "must be a list of codes")
    headers = opts.value("headers", {})
    required = opts.value("headers_required", {})
    for key, value in (("headers", headers), ("headers_required", required)):
        if not isinstance(value, dict) or not all(
            isinstance(v, str) for v in value.values()
        ):
            raise opts.fail(key, "must be a table of strings")
    with opts.located():
        probe = HttpProbe(
            opts.text("url"),
            timeout=opts.number("timeout", 10.0, minimum=0.001),
            expect_status=_status_codes(expect, opts),
            body_regex=opts.text("body_regex", None),
            headers_required=required,
            method=opts.text("method", "GET"),
            headers=headers,
            follow_redirects=opts.flag("follow_redirects", True),
            verify_tls=opts.flag("verify_tls", True),
            ca_file=opts.text("ca_file", None),
            client_cert=opts.text("client_cert", None),
            client_key=opts.text("client_key", None),
            ip_version=opts.choice("ip_version", (4, 6, None), None),
        )
    opts.finish()
    return probe
