"""Redfish services for tests: sushy-tools' emulator and a fault service.

:class:`SushyEmulator` runs sushy-tools' emulator with its fake driver
over HTTPS (a certificate from a throw-away CA) with Basic authentication,
on a free loopback port, stopped by its PID. Its fake driver applies a
power change up to 11 s late at random; the launcher pins that delay to
zero so every change shows on the next read.

:class:`FaultyRedfish` is a small Redfish service of our own, in a thread,
for what the emulator cannot do: sessions whose tokens expire, refused
resets with ExtendedInfo, ActionInfo, tasks, lagging PowerState, 5xx
answers, and a service that never answers. It speaks HTTP/1.1 keep-alive
and counts connections.
"""

from __future__ import annotations

import base64
import dataclasses
import http.server
import importlib.util
import json
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fencekit.lab.process import stop_process
from tests.support import peers

SYSTEM_IDS = (
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
)

# Runs sushy-emulator with the fake driver's random delay replaced by 0:
# sushy-tools 2.2 FakeDriver.set_power_state() schedules the new state at
# now + random.randint(1, 11) s, and only this module's random is touched.
_LAUNCHER = """\
import sys, types
from sushy_tools.emulator.resources.systems import fakedriver
fakedriver.random = types.SimpleNamespace(randint=lambda a, b: 0)
from sushy_tools.emulator import main
sys.exit(main.main())
"""

_CONF = """\
SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'
SUSHY_EMULATOR_LISTEN_PORT = {port}
SUSHY_EMULATOR_SSL_CERT = {cert!r}
SUSHY_EMULATOR_SSL_KEY = {key!r}
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_STATE_DIR = {state!r}
SUSHY_EMULATOR_AUTH_FILE = {htpasswd!r}
SUSHY_EMULATOR_FAKE_SYSTEMS = [
    {{'uuid': {one!r}, 'name': 'node1', 'power_state': 'On',
      'external_notifier': False, 'nics': []}},
    {{'uuid': {two!r}, 'name': 'node2', 'power_state': 'On',
      'external_notifier': False, 'nics': []}},
]
"""


def require_module(name: str) -> None:
    """Fail (CI) or skip when Python package ``name`` is missing."""
    if importlib.util.find_spec(name) is not None:
        return
    message = f"peer package {name!r} is not installed"
    if peers.in_ci():
        pytest.fail(message + " (CI=true: a missing peer is a failure)")
    pytest.skip(message)


class Pki:
    """A throw-away CA and a certificate for 127.0.0.1, as PEM files."""

    def __init__(self, folder: Path) -> None:
        require_module("trustme")
        import trustme

        folder.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        issued = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = folder / "ca.pem"
        self.cert = folder / "cert.pem"
        self.key = folder / "key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        issued.private_key_pem.write_to_path(str(self.key))
        with open(self.cert, "wb") as out:
            for pem in issued.cert_chain_pems:
                out.write(pem.bytes())

    def server_context(self) -> ssl.SSLContext:
        """An SSL context that serves the certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


class SushyEmulator:
    """sushy-emulator (fake driver) on HTTPS; stop it with :meth:`stop`."""

    def __init__(
        self, workdir: Path, *, user: str = "admin", password: str = "fk-pw"
    ) -> None:
        require_module("sushy_tools")
        require_module("bcrypt")
        self.workdir = workdir
        self.user = user
        self.password = password
        self.port = 0
        self.pki = Pki(workdir / "pki")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    @property
    def ca_file(self) -> Path:
        return self.pki.ca_file

    def password_file(self, password: str | None = None) -> Path:
        """A 0600 file holding the password (or another one)."""
        path = self.workdir / f"password-{uuid.uuid4().hex[:6]}"
        path.write_text((password or self.password) + "\n")
        path.chmod(0o600)
        return path

    def start(self) -> SushyEmulator:
        """Start the emulator; return once it answers over HTTPS."""
        import bcrypt

        self.port = peers.free_port()
        digest = bcrypt.hashpw(
            self.password.encode(), bcrypt.gensalt(rounds=4)
        )
        htpasswd = self.workdir / "htpasswd"
        htpasswd.write_text(f"{self.user}:{digest.decode()}\n")
        state = self.workdir / "state"
        state.mkdir(exist_ok=True)
        conf = self.workdir / "sushy.conf"
        conf.write_text(
            _CONF.format(
                port=self.port,
                cert=str(self.pki.cert),
                key=str(self.pki.key),
                state=str(state),
                htpasswd=str(htpasswd),
                one=SYSTEM_IDS[0],
                two=SYSTEM_IDS[1],
            )
        )
        log = open(self.workdir / "sushy.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, "--config", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        peers.wait_until(self._answers, 30.0, "sushy-emulator over HTTPS")
        return self

    def stop(self) -> None:
        """Stop the emulator by the PID it was started with."""
        proc, self.proc = self.proc, None
        stop_process(proc, grace=5.0)

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.workdir / "sushy.log").read_text(errors="replace")
            pytest.fail(f"sushy-emulator exited:\n{log[-2000:]}")
        try:
            return self._get("/redfish/v1/").status_code == 200
        except OSError:
            return False

    def _get(self, path: str) -> Any:
        import requests

        with requests.Session() as http:
            http.trust_env = False
            return http.get(
                f"https://{self.host}:{self.port}{path}",
                auth=(self.user, self.password),
                verify=str(self.ca_file),
                timeout=5,
            )

    def power_state(self, system: str = SYSTEM_IDS[0]) -> str:
        """PowerState as the emulator reports it, read without fencekit."""
        response = self._get(f"/redfish/v1/Systems/{system}")
        response.raise_for_status()
        return str(response.json()["PowerState"])

    def set_power(self, state: str, system: str = SYSTEM_IDS[0]) -> None:
        """Force the emulated system ``On`` or ``Off``, without fencekit."""
        import requests

        with requests.Session() as http:
            http.trust_env = False
            response = http.post(
                f"https://{self.host}:{self.port}/redfish/v1/Systems/"
                f"{system}/Actions/ComputerSystem.Reset",
                json={"ResetType": "On" if state == "On" else "ForceOff"},
                auth=(self.user, self.password),
                verify=str(self.ca_file),
                timeout=5,
            )
        response.raise_for_status()


@pytest.fixture
def sushy(tmp_path: Path) -> Iterator[SushyEmulator]:
    """A running sushy-emulator, two systems, both on."""
    emulator = SushyEmulator(tmp_path / "sushy").start()
    try:
        yield emulator
    finally:
        emulator.stop()


# -- a fault service of our own ---------------------------------------------

ALL_RESET_TYPES = [
    "On",
    "ForceOff",
    "GracefulShutdown",
    "GracefulRestart",
    "ForceRestart",
    "Nmi",
    "ForceOn",
    "PushPowerButton",
]


@dataclasses.dataclass
class Behaviour:
    """What the fault service does; tests change it between calls.

    Attributes:
        power: the system's PowerState.
        allowed: ResetType values allowed; None lists none.
        action_info: list them through an ActionInfo resource instead.
        sessions: offer a SessionService.
        token_uses: a session token expires after this many requests.
        lag_reads: reads that still show the old state after a reset.
        refuse: status and error body answered to resets.
        refuse_times: refuse only this many resets (None: all).
        task_polls: answer resets with 202 and a task that runs for this
            many polls (0: no task).
        task_fails: the task ends in Exception.
        fail_reads: the next this many system reads answer 503.
        hang: every request is read and never answered.
        hang_reads: the next this many system reads are never answered.
        irmc: look like a Fujitsu iRMC (system 0, OEM reset).
        refuse_standard: status for the standard reset (iRMC quirk).
    """

    power: str = "On"
    allowed: list[str] | None = dataclasses.field(
        default_factory=lambda: list(ALL_RESET_TYPES)
    )
    action_info: bool = False
    sessions: bool = True
    token_uses: int | None = None
    lag_reads: int = 0
    refuse: tuple[int, dict[str, Any]] | None = None
    refuse_times: int | None = None
    task_polls: int = 0
    task_fails: bool = False
    fail_reads: int = 0
    hang: bool = False
    hang_reads: int = 0
    irmc: bool = False
    refuse_standard: int | None = None


@dataclasses.dataclass
class Seen:
    """One request as the fault service received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FaultyRedfish:
    """A Redfish service in a thread, over HTTPS, for fault tests."""

    def __init__(
        self, pki: Pki, *, user: str = "admin", password: str = "fk-pw"
    ) -> None:
        self.pki = pki
        self.user = user
        self.password = password
        self.behaviour = Behaviour()
        self.seen: list[Seen] = []
        self.connections = 0
        self.tokens: dict[str, int] = {}
        self.session_ids: dict[str, str] = {}
        self.deleted: list[str] = []
        self.resets: list[Any] = []
        self.released = threading.Event()
        self._pending: tuple[str, int] | None = None
        self._task_left = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def system_id(self) -> str:
        return "0" if self.behaviour.irmc else "node1"

    def start(self) -> FaultyRedfish:
        """Serve on a free loopback port until :meth:`stop`."""
        handler = _handler_for(self)
        server = http.server.ThreadingHTTPServer((peers.LOOPBACK, 0), handler)
        server.daemon_threads = True
        server.socket = self.pki.server_context().wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="faulty-redfish", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release hanging requests."""
        self.released.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def stall(self, path: str) -> bool:
        """Whether this request is one of the reads to leave unanswered."""
        with self._lock:
            is_read = path.rstrip("/").endswith(f"/Systems/{self.system_id}")
            if is_read and self.behaviour.hang_reads > 0:
                self.behaviour.hang_reads -= 1
                return True
            return False

    def paths(self, method: str | None = None) -> list[str]:
        """The paths requested, in order (of one method if given)."""
        return [s.path for s in self.seen if method in (None, s.method)]

    # -- the service ----------------------------------------------------------

    def answer(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        """Status, extra headers and JSON body for one request."""
        with self._lock:
            self.seen.append(Seen(method, path, headers, body))
            return self._route(method, path.rstrip("/") or "/", headers, body)

    def _route(
        self, method: str, path: str, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, str], Any]:
        b = self.behaviour
        sessions = "/redfish/v1/SessionService/Sessions"
        if method == "GET" and path == "/redfish/v1":
            return 200, {}, self._root()
        if method == "POST" and path == sessions and b.sessions:
            return self._login(body)
        if not self._authorised(headers):
            return 401, {}, _error("Base.1.0.NoValidSession", "Log in first")
        if method == "DELETE" and path.startswith(sessions + "/"):
            token = self.session_ids.pop(path.rsplit("/", 1)[-1], "")
            self.deleted.append(token)
            self.tokens.pop(token, None)
            return 204, {}, None
        system = f"/redfish/v1/Systems/{self.system_id}"
        if method == "GET" and path == "/redfish/v1/Systems":
            return 200, {}, _collection([system])
        if method == "GET" and path == system:
            return self._system(system)
        if method == "GET" and path == f"{system}/ResetActionInfo":
            return 200, {}, _action_info(b.allowed)
        if method == "POST" and path.startswith(f"{system}/Actions/"):
            return self._reset(path, body)
        if method == "GET" and path == "/redfish/v1/TaskService/Tasks/1":
            return self._task()
        return 404, {}, _error("Base.1.0.ResourceMissingAtURI", path)

    def _root(self) -> dict[str, Any]:
        root: dict[str, Any] = {
            "@odata.id": "/redfish/v1/",
            "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
            "Id": "RootService",
            "RedfishVersion": "1.6.0",
            "Systems": {"@odata.id": "/redfish/v1/Systems"},
        }
        if self.behaviour.sessions:
            root["SessionService"] = {
                "@odata.id": "/redfish/v1/SessionService"
            }
            root["Links"] = {
                "Sessions": {
                    "@odata.id": "/redfish/v1/SessionService/Sessions"
                }
            }
        if self.behaviour.irmc:
            root["Vendor"] = "Fujitsu"
            root["Oem"] = {"ts_fujitsu": {"FirmwareVersion": "2.10P"}}
        return root

    def _login(self, body: Any) -> tuple[int, dict[str, str], Any]:
        ok = isinstance(body, dict) and (
            body.get("UserName") == self.user
            and body.get("Password") == self.password
        )
        if not ok:
            return 401, {}, _error("Base.1.0.GeneralError", "Login failed")
        # As on real services, the session's id is not its token.
        token, ident = uuid.uuid4().hex, uuid.uuid4().hex[:8]
        self.tokens[token] = 0
        self.session_ids[ident] = token
        uri = f"/redfish/v1/SessionService/Sessions/{ident}"
        headers = {"X-Auth-Token": token, "Location": uri}
        return 201, headers, {"@odata.id": uri, "Id": ident}

    def _authorised(self, headers: dict[str, str]) -> bool:
        token = headers.get("x-auth-token")
        if token is not None:
            if token not in self.tokens:
                return False
            self.tokens[token] += 1
            limit = self.behaviour.token_uses
            if limit is not None and self.tokens[token] > limit:
                del self.tokens[token]
                return False
            return True
        basic = headers.get("authorization", "")
        expected = base64.b64encode(
            f"{self.user}:{self.password}".encode()
        ).decode()
        return basic == f"Basic {expected}"

    def _system(self, uri: str) -> tuple[int, dict[str, str], Any]:
        b = self.behaviour
        if b.fail_reads > 0:
            b.fail_reads -= 1
            return 503, {}, _error("Base.1.0.ServiceTemporarilyUnavailable")
        if self._pending is not None:
            state, left = self._pending
            if left <= 0:
                b.power, self._pending = state, None
            else:
                self._pending = (state, left - 1)
        reset: dict[str, Any] = {
            "target": f"{uri}/Actions/ComputerSystem.Reset"
        }
        if b.action_info:
            reset["@Redfish.ActionInfo"] = f"{uri}/ResetActionInfo"
        elif b.allowed is not None:
            reset["ResetType@Redfish.AllowableValues"] = b.allowed
        actions: dict[str, Any] = {"#ComputerSystem.Reset": reset}
        if b.irmc:
            key = (
                "http://ts.fujitsu.com/redfish-schemas/v1/"
                "FTSSchema.v1_0_0#FTSComputerSystem.Reset"
            )
            actions["Oem"] = {
                key: {
                    "target": f"{uri}/Actions/Oem/FTSComputerSystem.Reset",
                    "FTSResetType@Redfish.AllowableValues": [
                        "PowerOn",
                        "PowerOff",
                        "PowerCycle",
                        "PulseNmi",
                    ],
                }
            }
        doc = {
            "@odata.id": uri,
            "Id": self.system_id,
            "UUID": "8e1f0a52-0000-4d1c-9c1e-2b6f9b0c1a77",
            "SerialNumber": "FKSN0001",
            "PowerState": b.power,
            "Actions": actions,
        }
        return 200, {}, doc

    def _reset(self, path: str, body: Any) -> tuple[int, dict[str, str], Any]:
        b = self.behaviour
        self.resets.append((path.rsplit("/", 1)[-1], body))
        oem = path.endswith("/Oem/FTSComputerSystem.Reset")
        if not oem and b.refuse_standard is not None:
            return (
                b.refuse_standard,
                {},
                _error(
                    "Base.1.0.ActionNotSupported",
                    "The action ComputerSystem.Reset is not supported.",
                ),
            )
        if b.refuse is not None and b.refuse_times != 0:
            if b.refuse_times is not None:
                b.refuse_times -= 1
            return b.refuse[0], {}, b.refuse[1]
        value = (body or {}).get("FTSResetType" if oem else "ResetType")
        new = {
            "ForceOff": "Off",
            "PowerOff": "Off",
            "On": "On",
            "ForceOn": "On",
            "PowerOn": "On",
            "PushPowerButton": "On",
        }.get(value)
        if new is None:
            return (
                400,
                {},
                _error(
                    "Base.1.0.PropertyValueNotInList",
                    f"The value {value} for ResetType is not in the list.",
                ),
            )
        self._pending = (new, b.lag_reads)
        if b.task_polls:
            self._task_left = b.task_polls
            task = "/redfish/v1/TaskService/Tasks/1"
            return 202, {"Location": task}, {"@odata.id": task}
        return 204, {}, None

    def _task(self) -> tuple[int, dict[str, str], Any]:
        uri = "/redfish/v1/TaskService/Tasks/1"
        if self._task_left > 0:
            self._task_left -= 1
            return 202, {"Location": uri}, {"TaskState": "Running"}
        if self.behaviour.task_fails:
            self._pending = None
            return (
                200,
                {},
                {
                    "@odata.id": uri,
                    "TaskState": "Exception",
                    "TaskStatus": "Critical",
                    "Messages": [{"Message": "Power control timed out."}],
                },
            )
        return (
            200,
            {},
            {
                "@odata.id": uri,
                "TaskState": "Completed",
                "TaskStatus": "OK",
            },
        )


def _collection(members: list[str]) -> dict[str, Any]:
    return {
        "@odata.id": "/redfish/v1/Systems",
        "Members": [{"@odata.id": m} for m in members],
        "Members@odata.count": len(members),
    }


def _action_info(allowed: list[str] | None) -> dict[str, Any]:
    param: dict[str, Any] = {"Name": "ResetType", "Required": True}
    if allowed is not None:
        param["AllowableValues"] = allowed
    return {"@odata.id": "ResetActionInfo", "Parameters": [param]}


def _error(message_id: str, message: str = "") -> dict[str, Any]:
    info: dict[str, Any] = {"MessageId": message_id}
    if message:
        info["Message"] = message
    return {
        "error": {
            "code": message_id,
            "message": "A general error has occurred. See ExtendedInfo.",
            "@Message.ExtendedInfo": [info],
        }
    }


def _handler_for(service: FaultyRedfish) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in two writes; without TCP_NODELAY the
        # second waits for the client's delayed ACK (about 40 ms).
        disable_nagle_algorithm = True

        def setup(self) -> None:
            service.connections += 1
            super().setup()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            if service.behaviour.hang or service.stall(self.path):
                service.released.wait(60)
                self.close_connection = True
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, doc = service.answer(
                self.command, self.path, headers, body
            )
            payload = json.dumps(doc).encode() if doc is not None else b""
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            if payload:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_DELETE = do_PATCH = _serve

    return Handler


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """A throw-away CA and a certificate for 127.0.0.1."""
    return Pki(tmp_path / "pki")


@pytest.fixture
def faulty(pki: Pki) -> Iterator[FaultyRedfish]:
    """The fault service, running, with sessions and power on."""
    service = FaultyRedfish(pki).start()
    try:
        yield service
    finally:
        service.stop()


def silent_listener() -> tuple[socket.socket, int]:
    """A loopback socket that accepts connections and never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((peers.LOOPBACK, 0))
    sock.listen(16)
    return sock, int(sock.getsockname()[1])
