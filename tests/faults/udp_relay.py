"""A loopback UDP relay that drops, delays, duplicates and reorders.

It sits between a client (fencekit) and a UDP peer (``ipmi_sim``,
``snmpsim``): the client talks to :attr:`UdpRelay.port` and each client
address gets its own socket towards the peer, so replies find their way
back. Faults apply in both directions at the rates set on
:class:`UdpFaults`, drawn from a seeded generator so a run can be
repeated. :meth:`UdpRelay.go_silent` drops everything from then on;
``silent_after`` does it by itself after that many forwarded datagrams,
to cut a conversation in the middle of an operation.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import selectors
import socket
import threading
import time

from tests.support import peers

_MAX_DATAGRAM = 65535


@dataclasses.dataclass
class UdpFaults:
    """What the relay does to each datagram.

    Attributes:
        drop: probability a datagram is dropped.
        delay: seconds every datagram is held back.
        jitter: extra random delay, up to this many seconds.
        duplicate: probability a datagram is sent twice.
        reorder: probability a datagram is held until the next one in
            the same direction has gone (or ``hold`` seconds passed).
        hold: the longest a reordered datagram waits.
        silent_after: forward this many datagrams, then drop all.
        seed: seed of the generator that draws the faults.
    """

    drop: float = 0.0
    delay: float = 0.0
    jitter: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    hold: float = 0.2
    silent_after: int | None = None
    seed: int = 0


@dataclasses.dataclass
class UdpStats:
    """What the relay did, for assertions and the report."""

    received: int = 0
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0


class UdpRelay:
    """Relay datagrams between clients and ``target`` with faults."""

    def __init__(
        self, target: tuple[str, int], faults: UdpFaults | None = None
    ) -> None:
        self.target = target
        self.faults = faults or UdpFaults()
        self.stats = UdpStats()
        self.port = 0
        self._random = random.Random(self.faults.seed)
        self._silent = False
        self._lock = threading.Lock()
        self._front: socket.socket | None = None
        self._backs: dict[tuple[str, int], socket.socket] = {}
        self._clients: dict[socket.socket, tuple[str, int]] = {}
        self._queue: list[
            tuple[float, int, socket.socket, bytes, tuple[str, int]]
        ] = []
        self._held: dict[str, tuple[socket.socket, bytes, tuple[str, int]]]
        self._held = {}
        self._held_at: dict[str, float] = {}
        self._order = itertools.count()
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        return peers.LOOPBACK

    def start(self) -> UdpRelay:
        """Bind a free loopback port and relay until :meth:`stop`."""
        front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        front.bind((peers.LOOPBACK, 0))
        front.setblocking(False)
        self.port = int(front.getsockname()[1])
        self._front = front
        self._selector.register(front, selectors.EVENT_READ, "front")
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(
            target=self._run, name="udp-relay", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop relaying and close every socket."""
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        for sock in [self._front, *self._backs.values()]:
            if sock is not None:
                sock.close()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> UdpRelay:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def go_silent(self) -> None:
        """Drop every datagram from now on, in both directions."""
        with self._lock:
            self._silent = True

    def speak(self, faults: UdpFaults | None = None) -> None:
        """Relay again, with new fault rates if given."""
        with self._lock:
            self._silent = False
            if faults is not None:
                self.faults = faults
                self._random = random.Random(faults.seed)
                self.stats.forwarded = 0

    # -- the relay thread -----------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            timeout = self._next_timeout()
            for key, _ in self._selector.select(timeout):
                if key.data == "wake":
                    self._wake_r.recv(64)
                elif key.data == "front":
                    self._from_client()
                else:
                    self._from_peer(key.fileobj)  # type: ignore[arg-type]
            self._flush()

    def _next_timeout(self) -> float:
        now = time.monotonic()
        times = [item[0] for item in self._queue[:1]]
        times += [at + self.faults.hold for at in self._held_at.values()]
        if not times:
            return 0.5
        return max(0.0, min(times) - now)

    def _from_client(self) -> None:
        assert self._front is not None
        try:
            data, client = self._front.recvfrom(_MAX_DATAGRAM)
        except BlockingIOError:
            return
        back = self._backs.get(client)
        if back is None:
            back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            back.bind((peers.LOOPBACK, 0))
            back.connect(self.target)
            back.setblocking(False)
            self._backs[client] = back
            self._clients[back] = client
            self._selector.register(back, selectors.EVENT_READ, "back")
        self._pass("up", back, data, self.target)

    def _from_peer(self, back: socket.socket) -> None:
        assert self._front is not None
        try:
            data = back.recv(_MAX_DATAGRAM)
        except (BlockingIOError, ConnectionRefusedError):
            # A refused send earlier shows as an error on the next read:
            # the peer is down, and the client's datagrams are lost.
            return
        self._pass("down", self._front, data, self._clients[back])

    def _pass(
        self,
        direction: str,
        sock: socket.socket,
        data: bytes,
        to: tuple[str, int],
    ) -> None:
        with self._lock:
            faults, rnd = self.faults, self._random
            self.stats.received += 1
            silent = self._silent or (
                faults.silent_after is not None
                and self.stats.forwarded >= faults.silent_after
            )
            if silent or rnd.random() < faults.drop:
                self.stats.dropped += 1
                return
            self.stats.forwarded += 1
            copies = 1
            if rnd.random() < faults.duplicate:
                copies = 2
                self.stats.duplicated += 1
            hold = rnd.random() < faults.reorder
            delay = faults.delay + rnd.random() * faults.jitter
        if hold and direction not in self._held:
            self.stats.reordered += 1
            self._held[direction] = (sock, data, to)
            self._held_at[direction] = time.monotonic()
            return
        due = time.monotonic() + delay
        for _ in range(copies):
            heapq.heappush(
                self._queue, (due, next(self._order), sock, data, to)
            )
        # The held datagram goes out after this one: the two swap places.
        held = self._held.pop(direction, None)
        if held is not None:
            del self._held_at[direction]
            heapq.heappush(self._queue, (due, next(self._order), *held))

    def _flush(self) -> None:
        now = time.monotonic()
        for direction, at in list(self._held_at.items()):
            if now - at >= self.faults.hold:
                sock, data, to = self._held.pop(direction)
                del self._held_at[direction]
                heapq.heappush(
                    self._queue, (now, next(self._order), sock, data, to)
                )
        while self._queue and self._queue[0][0] <= now:
            _, _, sock, data, to = heapq.heappop(self._queue)
            try:
                if sock is self._front:
                    sock.sendto(data, to)
                else:
                    sock.send(data)
            except OSError:
                pass
