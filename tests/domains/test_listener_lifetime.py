"""A guest's listening socket lives and dies with its accept task.

The sequence that once ended the daemon for everyone (issue: INTRODUCE 100,
INTRODUCE 101, RELEASE 101, pipelined or one at a time) and its relatives:
release before anyone connected, re-introduce in the same read, release of a
domain whose listener is busy accepting, shutdown with listeners open.
"""

from __future__ import annotations

import contextlib
import os
import socket

from tests.conftest import OurDaemon
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op


def pipelined(socket_path: str, requests: list[tuple[Op, str]]) -> list[Packet]:
    """Send every request in one write; return the replies (watch events left out)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(socket_path)
        sock.sendall(b"".join(encode(Packet(op, n, 0, join(*args.split())))
                              for n, (op, args) in enumerate(requests, 1)))
        framer, replies = Framer(), []
        while len(replies) < len(requests):
            data = sock.recv(65536)
            assert data, "the daemon closed the connection"
            replies += [p for p in framer.feed(data) if p.op != Op.WATCH_EVENT]
        return replies


def guest_sockets(daemon: OurDaemon) -> set[str]:
    return {name for name in os.listdir(daemon.directory) if name.isdigit()}


def alive(daemon: OurDaemon) -> None:
    assert daemon.process.poll() is None, daemon.stderr()
    with Client(daemon.socket_path, timeout=10) as dom0:
        assert dom0.read("/tool/xenstored") == b""


def test_introduce_introduce_release_pipelined(daemon: OurDaemon) -> None:
    for _ in range(20):
        replies = pipelined(daemon.socket_path, [
            (Op.INTRODUCE, "100 4096 9"), (Op.INTRODUCE, "101 4096 9"), (Op.RELEASE, "101")])
        assert [r.payload for r in replies] == [b"OK\0", b"OK\0", b"OK\0"]
        replies = pipelined(daemon.socket_path, [(Op.RELEASE, "100")])
        assert replies[0].payload == b"OK\0"
    alive(daemon)
    assert guest_sockets(daemon) == set()
    assert "Traceback" not in daemon.stderr()


def test_introduce_introduce_release_one_at_a_time(daemon: OurDaemon) -> None:
    with Client(daemon.socket_path, timeout=10) as dom0:
        for _ in range(30):
            dom0.request(Op.INTRODUCE, join("100", "4096", "9"))
            dom0.request(Op.INTRODUCE, join("101", "4096", "9"))
            dom0.request(Op.RELEASE, join("101"))
            dom0.request(Op.RELEASE, join("100"))
    alive(daemon)
    assert guest_sockets(daemon) == set()


def test_reintroduce_in_the_same_read_leaves_a_usable_socket(daemon: OurDaemon) -> None:
    replies = pipelined(daemon.socket_path, [
        (Op.INTRODUCE, "7 4096 1"), (Op.RELEASE, "7"), (Op.INTRODUCE, "7 4096 1"),
        (Op.RELEASE, "7"), (Op.INTRODUCE, "7 4096 1")])
    assert all(r.payload == b"OK\0" for r in replies)
    assert guest_sockets(daemon) == {"7"}
    with Client(os.path.join(daemon.directory, "7"), timeout=10) as guest:
        assert guest.request(Op.GET_DOMAIN_PATH, join("7")) == b"/local/domain/7\0"
    alive(daemon)


def test_release_while_the_guest_is_connected_and_connecting(daemon: OurDaemon) -> None:
    with Client(daemon.socket_path, timeout=10) as dom0:
        for _ in range(10):
            dom0.request(Op.INTRODUCE, join("5", "4096", "1"))
            path = os.path.join(daemon.directory, "5")
            guest = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            guest.connect(path)  # connected, perhaps not accepted yet
            dom0.request(Op.RELEASE, join("5"))
            guest.settimeout(10)
            # Closed by the daemon: accepted, it reads EOF; still in the listener's
            # queue when the listener closed, the kernel resets it.
            with contextlib.suppress(ConnectionResetError):
                assert guest.recv(100) == b""
            guest.close()
    alive(daemon)
    assert guest_sockets(daemon) == set()


def test_shutdown_with_listeners_open_removes_their_files() -> None:
    daemon = OurDaemon("--domain-dir", None)
    directory = daemon.directory
    try:
        pipelined(daemon.socket_path, [(Op.INTRODUCE, f"{d} 4096 1") for d in range(1, 6)])
        assert guest_sockets(daemon) == {"1", "2", "3", "4", "5"}
        daemon.process.terminate()
        assert daemon.process.wait(10) == 0
        assert not [n for n in os.listdir(directory) if n.isdigit() or n == "socket"]
    finally:
        daemon.stop()
