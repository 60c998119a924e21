"""Shared pieces of the hostile-client tests: a verbose daemon, its memory, raw clients.

Every attack here runs against ``python -m xenstore.daemon -V`` as a subprocess
(:class:`tests.conftest.OurDaemon`), so what is measured is the daemon a host
would run: its resident memory from ``/proc/PID/status`` and its log on stderr.
Every wait has a deadline of seconds, so a daemon that misbehaves fails the test
instead of hanging it.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import OurDaemon
from tests.domains.test_guest_sockets import Host
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op

#: A well-behaved client must be answered within this while an attack goes on:
#: a liveness bound for a slow shared machine, not a benchmark.
LIVENESS = 5.0
#: The most the daemon's resident memory may grow under a flood.
RSS_GROWTH_MAX_MIB = 50.0


@contextmanager
def daemon(*flags: str | None) -> Iterator[OurDaemon]:
    """A verbose daemon (``-V``: INFO lines too) for the block, stopped by its PID after."""
    started = OurDaemon("-V", *flags)
    try:
        yield started
    finally:
        started.stop()


@contextmanager
def guest_host(*flags: str) -> Iterator[Host]:
    """A verbose daemon serving guests on sockets in its own directory, and a dom0 client."""
    with daemon("--domain-dir", None, *flags) as started, \
            Client(started.socket_path, timeout=10) as dom0:
        yield Host(started, dom0)


def rss_mib(pid: int) -> float:
    """The resident memory of process ``pid``, in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class Peak:
    """The highest RSS of a process seen by :meth:`sample`, against where it started."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = rss_mib(pid)
        self.peak = self.start

    def sample(self) -> None:
        self.peak = max(self.peak, rss_mib(self.pid))

    @property
    def growth(self) -> float:
        self.sample()
        return self.peak - self.start

    def check(self, what: str) -> float:
        """Assert the growth is within :data:`RSS_GROWTH_MAX_MIB`; print and return it."""
        growth = self.growth
        print(f"{what}: daemon RSS {self.start:.1f} -> peak {self.peak:.1f} MiB "
              f"(+{growth:.1f} MiB)")
        assert growth <= RSS_GROWTH_MAX_MIB, f"{what}: the daemon grew by {growth:.1f} MiB"
        return growth


def probe(socket_path: str, path: str = "/") -> float:
    """Answer time of a READ on a fresh connection; fails past :data:`LIVENESS`.

    The time includes waiting to be accepted: while the daemon's accept queue is
    full, a non-blocking connect is refused with EAGAIN, and a patient client
    (libxenstore connects blocking) tries again.
    """
    start = time.monotonic()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(LIVENESS)
    while True:
        try:
            sock.connect(socket_path)
            break
        except BlockingIOError:
            assert time.monotonic() - start < LIVENESS, "not accepted in time"
            time.sleep(0.005)
    with Client(stream=sock) as client:
        client.read(path)
    elapsed = time.monotonic() - start
    assert elapsed < LIVENESS, f"a well-behaved client waited {elapsed:.1f} s"
    return elapsed


def wait_for_log(started: OurDaemon, pattern: str, timeout: float = 10.0) -> re.Match[str]:
    """The first match of ``pattern`` in the daemon's log, waiting for it to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.search(pattern, started.stderr())
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line matching {pattern!r} in:\n{started.stderr()}")
        time.sleep(0.05)


class RawClient:
    """A client that writes whatever packets it is told and reads only when asked."""

    def __init__(self, socket_path: str, *, sndbuf: int | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if sndbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.sock.connect(socket_path)
        self.framer = Framer()
        self.received: list[Packet] = []

    def send(self, op: Op, *fields: str | bytes, req_id: int = 0, tx_id: int = 0) -> None:
        self.sock.sendall(encode(Packet(op, req_id, tx_id, join(*fields))))

    def send_nowait(self, data: bytes) -> int:
        """Send what the socket takes without blocking; the count of bytes sent."""
        try:
            return self.sock.send(data, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return 0

    def packets(self, count: int, timeout: float = 10.0) -> list[Packet]:
        """The next ``count`` packets the daemon sent, waiting at most ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{len(self.received)} of {count} packets in {timeout} s")
            self.sock.settimeout(remaining)
            data = self.sock.recv(1 << 16)
            if not data:
                raise EOFError(f"the daemon hung up after {len(self.received)} packets")
            self.received += self.framer.feed(data)
        got, self.received = self.received[:count], self.received[count:]
        return got

    def nothing_within(self, seconds: float) -> bool:
        """Whether the daemon sends nothing for ``seconds``."""
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(1 << 16)
        except TimeoutError:
            return True
        self.received += self.framer.feed(data)
        return False

    def drain_to_eof(self, timeout: float = 10.0) -> int:
        """Read until the daemon hangs up; the bytes read (fails if it never does)."""
        self.sock.settimeout(timeout)
        total = 0
        try:
            while chunk := self.sock.recv(1 << 16):
                total += len(chunk)
        except ConnectionResetError:
            pass
        return total

    def close(self) -> None:
        self.sock.close()


@contextmanager
def open_files(wanted: int) -> Iterator[None]:
    """This process's soft RLIMIT_NOFILE raised to ``wanted`` for the block (restored
    after), or the test skipped saying why."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-files limit ({hard}) is below the {wanted} this test needs")
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        yield
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def owned_nodes(dom0: Client, domid: int) -> int:
    """How many nodes domain ``domid`` owns, as CONTROL quota tells dom0."""
    text = dom0.control("quota", str(domid)).decode()
    found = re.search(r"^nodes\s*:\s*(\d+)$", text, re.MULTILINE)
    assert found, text
    return int(found[1])


def guest_socket(host: Host, domid: int) -> str:
    """Introduce ``domid`` as a toolstack does; the path of its socket."""
    path = host.introduce(domid)
    deadline = time.monotonic() + 10
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no socket for domain {domid}"
        time.sleep(0.01)
    return path
