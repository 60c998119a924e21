"""INTRODUCE of a domain already introduced, over real guest sockets.

cxenstored 4.17 answers OK whatever the page (it ignores it) and resets the
domain's ring: its watches, transactions and unsent output go, and the guest
goes on talking. Our guest sockets are reset the same way; the connection stays.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.conftest import OurDaemon
from tests.domains.test_guest_sockets import Host
from xenstore import errors
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op


@pytest.fixture
def host() -> Iterator[Host]:
    daemon = OurDaemon("--domain-dir", None)  # None: the daemon's own directory
    try:
        yield Host(daemon, Client(daemon.socket_path, timeout=10))
    finally:
        daemon.stop()


def quiet(client: Client, seconds: float = 0.3) -> bool:
    """No watch event reaches ``client`` within ``seconds``."""
    try:
        client.read_watch(timeout=seconds)
    except TimeoutError:
        return True
    return False


def pipelined(socket_path: str, requests: list[Packet]) -> None:
    """Send ``requests`` in one write on a new dom0 connection; wait for every reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dom0:
        dom0.settimeout(10)
        dom0.connect(socket_path)
        dom0.sendall(b"".join(encode(r) for r in requests))
        framer, replies = Framer(), 0
        while replies < len(requests):
            data = dom0.recv(65536)
            assert data
            replies += len([p for p in framer.feed(data) if p.op == Op.WRITE])


def test_reintroduce_with_another_page_resets_the_guest(host: Host) -> None:
    guest = Client(host.introduce(5), timeout=10)
    guest.write("name", "five")
    guest.watch("name", "old")
    assert guest.read_watch() == ("name", "old")
    tx = guest.transaction_start()
    guest.write("in-tx", "x", tx=tx)
    watcher = Client(host.daemon.socket_path, timeout=10)
    watcher.watch("@introduceDomain", "i")
    assert watcher.read_watch() == ("@introduceDomain", "i")

    assert host.dom0.request(Op.INTRODUCE, join("5", "8192", "2")) == b"OK\0"

    with pytest.raises(errors.ENOENT):
        guest.read("in-tx", tx=tx)
    assert not host.dom0.exists("/local/domain/5/in-tx")
    host.dom0.write("/local/domain/5/name", "changed")
    assert quiet(guest)  # the old watch is gone
    assert quiet(watcher)  # and @introduceDomain did not fire again
    assert guest.read("name") == b"changed"  # the connection goes on
    guest.watch("name", "new")
    assert guest.read_watch() == ("name", "new")
    with guest.transaction() as again:
        again.write("in-tx", "y")
    assert host.dom0.read("/local/domain/5/in-tx") == b"y"
    assert "domain 5 introduced again" not in host.daemon.stderr()  # INFO: not by default


def test_reintroduce_drops_unsent_events_and_keeps_the_stream_whole(host: Host) -> None:
    """The guest does not read while dom0 makes it ~600 KB of events: what the kernel
    would not take waits in the daemon, and goes at the reset, all but the rest of
    a packet the kernel took part of, so the guest still reads whole packets."""
    guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    guest.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    guest.connect(host.introduce(5))
    guest.settimeout(10)
    token = b"t" * 2990  # with the path, events of 3022 bytes: the kernel cuts one
    guest.sendall(encode(Packet(Op.WATCH, 1, 0, join("home", token))))
    framer = Framer()
    got: list[Packet] = []
    while len(got) < 2:  # the reply, then the first event
        got += framer.feed(guest.recv(65536))
    # Pipelined, so that the daemon sends many events at once and the kernel takes
    # part of one of them.
    writes = 200
    pipelined(host.daemon.socket_path, [
        Packet(Op.WRITE, n, 0, b"/local/domain/5/home\0%d" % n) for n in range(writes)])
    host.dom0.request(Op.INTRODUCE, join("5", "1", "1"))
    host.dom0.write("/local/domain/5/home", "after")  # the old watch: no event
    guest.sendall(encode(Packet(Op.READ, 2, 0, join("home"))))

    while not any(p.op == Op.READ for p in got):
        data = guest.recv(65536)
        assert data, "the daemon closed the guest"
        got += framer.feed(data)
    events = [p for p in got if p.op == Op.WATCH_EVENT]
    assert [p.op for p in got] == [Op.WATCH, Op.WATCH_EVENT] + [Op.WATCH_EVENT] * (
        len(events) - 1) + [Op.READ]
    assert all(p.payload == join("home", token) for p in events)
    assert 1 < len(events) < writes  # some were in the kernel already; the rest went
    assert got[-1].payload == b"after"
    guest.close()
