"""A busy or pipelining client cannot starve the others (issue 17).

A hog connection keeps the daemon busy without pause: it writes batches of 128
pipelined READs, keeping 16 batches in flight so that the daemon always has more
of its requests waiting, and reads the replies as they come (checking them byte
for byte rather than parsing them, so that it outpaces the daemon; never stalled
by the output bounds). Meanwhile a victim on another connection makes a few
hundred lock-step READs: each must be answered right, and its p99 latency must
stay bounded. A second hog never reads its replies: it must be stalled (the
daemon stops reading it), not slow the others down. Each runs with the hog on
dom0's socket and on a guest's.

The bound is generous, because CI runs this on a busy 2-CPU machine: 100 ms, or
20 times the median time one of the hog's batches took to be answered if that is
more (a fair daemon makes the victim wait about one turn of the hog's, about
what a batch waits; on a slow machine both grow). Measured here: the victim's
p99 12 to 95 ms against bounds of 100 to 435 ms in 20 runs (at most 0.44 of its
bound, also with a CPU burner beside it), where a daemon that reads one
connection until it has nothing more (a mutant of today's shell that tries recv
before waiting) gives p99 of 180 to 500 ms and time-outs. Each test also checks
that the hog really was busy while the victim ran, so that none can pass by the
hog having been idle.
"""

from __future__ import annotations

import collections
import os
import select
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from tests.conftest import OurDaemon
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

#: READs a hog writes at once, and batches it keeps unanswered (the reading hog).
BATCH = 128
WINDOW = 16
#: The victim's lock-step READs (at least that many, for at least that long), and
#: its p99 bound (seconds).
VICTIM_READS = 300
VICTIM_SECONDS = 1.0
P99_BOUND = 0.100
#: ...or this many times the median time the hog's batches took, if more (a slow machine).
HOG_TURNS = 20
#: Hog requests that must be answered while the victim runs (a reading hog), or
#: sent at least (a hog that never reads): far fewer than it manages on an idle
#: machine (tens of thousands a second), far more than an idle hog would.
HOG_ANSWERED_MIN = 20 * BATCH
HOG_SENT_MIN = 8 * BATCH
GUEST = 5
HOG_VALUE = b"hog-value"


@dataclass
class Hog:
    """A thread hammering the daemon with pipelined READs of ``path``."""

    sock: socket.socket
    path: str
    reads_replies: bool
    answered: int = 0
    #: READs handed to the socket whole, and those taken on (a batch may be half sent).
    sent: int = 0
    queued: int = 0
    #: Times the socket would take no more for a while (the daemon stopped reading it).
    blocked: int = 0
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="hog", daemon=True)
        self.batch = b"".join(encode(Packet(Op.READ, i, 0, join(self.path)))
                              for i in range(BATCH))
        # The replies to a batch, byte for byte: the hog checks what it reads against
        # them instead of parsing it, so that it outpaces the daemon by far.
        self.replies = b"".join(encode(Packet(Op.READ, i, 0, HOG_VALUE)) for i in range(BATCH))
        self.received = 0
        #: When each batch in flight was taken on, and how long each answered one took.
        self.queued_at: collections.deque[float] = collections.deque()
        self.batch_seconds: list[float] = []

    def __enter__(self) -> Hog:
        self.sock.setblocking(False)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the hog did not stop"
        self.sock.close()

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # shown by check(), in the test's thread
            self.error = exc

    def _loop(self) -> None:
        pending = b""  # what is left of the batch being written (a send may be partial)
        while not self.stop.is_set():
            in_flight = self.queued - self.answered
            want_write = bool(pending) or not self.reads_replies or in_flight < WINDOW * BATCH
            if want_write and not pending:
                pending = self.batch
                self.queued += BATCH
                self.queued_at.append(time.perf_counter())
            readable, writable, _ = select.select(
                [self.sock] if self.reads_replies else [],
                [self.sock] if want_write else [], [], 0.05)
            if want_write and not writable:
                self.blocked += 1
            if writable:
                pending = pending[self.sock.send(pending):]
                if not pending:
                    self.sent += BATCH
            if readable:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise AssertionError("the daemon closed the hog's connection")
                self._check_replies(data)

    def _check_replies(self, data: bytes) -> None:
        expected, size = self.replies, len(self.replies)
        while data:
            offset = self.received % size
            n = min(len(data), size - offset)
            if data[:n] != expected[offset:offset + n]:
                want = expected[offset:offset + n]
                raise AssertionError(f"the hog got {data[:n]!r} for {want!r}")
            data = data[n:]
            self.received += n
            if self.received % size == 0:  # a whole batch answered
                self.batch_seconds.append(time.perf_counter() - self.queued_at.popleft())
        self.answered = self.received * BATCH // size

    def check(self) -> None:
        if self.error is not None:
            raise self.error


def victim_reads(victim: Client, hog: Hog,
                 until: Callable[[], bool] = lambda: True) -> list[float]:
    """Lock-step READs of known values, at least VICTIM_READS for VICTIM_SECONDS, and
    on until ``until()`` holds (10 s at most); each one's latency, seconds."""
    latencies: list[float] = []
    now = time.monotonic()
    enough, deadline = now + VICTIM_SECONDS, now + 10
    while len(latencies) < VICTIM_READS or time.monotonic() < enough or not until():
        assert time.monotonic() < deadline, "the hog never got where it should"
        key = len(latencies) % 10
        start = time.perf_counter()
        got = victim.read(f"/victim/k{key}")
        latencies.append(time.perf_counter() - start)
        assert got == f"value-{key}".encode(), f"read {len(latencies)}: {got!r}"
        hog.check()
    return latencies


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


@dataclass
class Setup:
    daemon: OurDaemon
    dom0: Client
    hog_socket: Callable[[], tuple[socket.socket, str]]


@pytest.fixture(params=["dom0", "guest"])
def setup(request: pytest.FixtureRequest) -> Iterator[Setup]:
    """Our daemon with the victim's keys, and a way to open the hog's connection:
    on dom0's socket, or as guest 5 on its own socket."""
    daemon = OurDaemon("--domain-dir", None)
    try:
        dom0 = Client(daemon.socket_path, timeout=10)
        for key in range(10):
            dom0.write(f"/victim/k{key}", f"value-{key}")
        if request.param == "dom0":
            dom0.write("/hog/key", HOG_VALUE)

            def open_dom0() -> tuple[socket.socket, str]:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(daemon.socket_path)
                return sock, "/hog/key"

            opener = open_dom0
        else:
            home = f"/local/domain/{GUEST}"
            dom0.write(home, "")
            dom0.set_perms(home, [f"n{GUEST}", "r0"])
            dom0.write(f"{home}/data/key", HOG_VALUE)
            dom0.request(Op.INTRODUCE, join(str(GUEST), "4096", "1"))

            def open_guest() -> tuple[socket.socket, str]:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(os.path.join(daemon.directory, str(GUEST)))
                return sock, "data/key"  # relative: the guest's own home

            opener = open_guest
        yield Setup(daemon, dom0, opener)
        dom0.close()
    finally:
        daemon.stop()


def wait_until(condition: Callable[[], bool], hog: Hog, what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        hog.check()
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_a_pipelining_hog_does_not_starve_a_lock_step_reader(setup: Setup) -> None:
    sock, path = setup.hog_socket()
    victim = Client(setup.daemon.socket_path, timeout=10)
    with Hog(sock, path, reads_replies=True) as hog:
        wait_until(lambda: hog.answered >= 4 * BATCH, hog, "the hog got no replies")
        answered_before = hog.answered
        latencies = victim_reads(victim, hog)
        answered_during = hog.answered - answered_before
        hog.check()
    victim.close()
    worst = p99(latencies)
    hog_batch = statistics.median(hog.batch_seconds)
    # A fair daemon makes the victim wait about one turn of the hog's (a read of its
    # requests, about what a batch waits for): the bound grows on a slow machine.
    bound = max(P99_BOUND, HOG_TURNS * hog_batch)
    shown = (f"victim p99 {worst * 1e3:.1f} ms (bound {bound * 1e3:.0f} ms), median "
             f"{statistics.median(latencies) * 1e3:.2f} ms over {len(latencies)} READs; the hog "
             f"had {answered_during} READs answered meanwhile, a batch in "
             f"{hog_batch * 1e3:.1f} ms (median)")
    print(shown)
    assert worst < bound, shown
    assert answered_during >= HOG_ANSWERED_MIN, f"the hog was not busy: {shown}"


def test_a_hog_that_never_reads_is_stalled_not_the_others(setup: Setup) -> None:
    sock, path = setup.hog_socket()
    # Small buffers: the hog's unread replies fill them sooner.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    victim = Client(setup.daemon.socket_path, timeout=10)
    with Hog(sock, path, reads_replies=False) as hog:
        # While the hog's requests pour in and its replies pile up, until it is held back...
        filling = victim_reads(victim, hog, until=lambda: hog.blocked > 0)
        sent_filling = hog.sent
        # ...and once it is: the daemon reads no more of it, and serves everyone else.
        stalled = victim_reads(victim, hog)
        sent_stalled = hog.sent - sent_filling
        hog.check()
    victim.close()
    shown = (f"victim p99 {p99(filling) * 1e3:.1f} ms over {len(filling)} READs while the "
             f"hog filled up ({sent_filling} READs sent), then {p99(stalled) * 1e3:.1f} ms "
             f"while it was stalled ({sent_stalled} READs more)")
    print(shown)
    assert p99(filling) < P99_BOUND, shown
    assert p99(stalled) < P99_BOUND, shown
    assert sent_filling >= HOG_SENT_MIN, f"the hog was not busy: {shown}"
    # Stalled, not served without end: once its buffers were full, hardly a batch more went.
    assert sent_stalled <= 2 * BATCH, shown
    # And the daemon is well: everybody else is still served.
    assert setup.dom0.read("/victim/k3") == b"value-3"
