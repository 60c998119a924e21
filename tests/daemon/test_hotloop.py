"""The hot loop: every ready connection served per wake-up, in place while trio is idle.

The loop's speed comes from blocking in its own epoll instead of trio's; these
tests check that it really does so on the trio this project runs on (or the
fast path would be lost without a failure), that it hands back to trio whenever
trio has work (timers, other tasks, signals), and that it serves correctly both
ways.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from tests.conftest import OurDaemon, short_tempdir
from xenstore.client import Client
from xenstore.daemon import runloop
from xenstore.daemon.core import Server
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op


def test_trio_run_loop_is_seen() -> None:
    """On this trio the fast path is live: its epoll descriptor and run queue are found."""
    async def main() -> runloop.RunLoop | None:
        return runloop.probe()

    found = trio.run(main)
    assert found is not None
    assert found.epoll_fd >= 0


def test_a_mock_clock_turns_the_fast_path_off() -> None:
    async def main() -> runloop.RunLoop | None:
        return runloop.probe()

    assert trio.run(main, clock=trio.testing.MockClock()) is None


class ThreadedShell:
    """A shell served by trio in a thread of this process, so a test can look at it."""

    def __init__(self, in_place: bool) -> None:
        self.path = os.path.join(short_tempdir(), "socket")
        self.shell = Shell(Server(), ShellOptions(socket_path=self.path, in_place=in_place))
        self._token: trio.lowlevel.TrioToken | None = None
        self._cancel: trio.CancelScope | None = None
        ready = threading.Event()

        async def main() -> None:
            with trio.CancelScope() as self._cancel:
                self._token = trio.lowlevel.current_trio_token()
                async with trio.open_nursery() as nursery:
                    await nursery.start(self.shell.serve)
                    ready.set()

        self.thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def stop(self) -> None:
        assert self._token is not None and self._cancel is not None
        self._token.run_sync_soon(self._cancel.cancel)
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.fixture(params=[True, False], ids=["in-place", "through-trio"])
def threaded(request: pytest.FixtureRequest) -> Iterator[ThreadedShell]:
    served = ThreadedShell(request.param)
    try:
        yield served
    finally:
        served.stop()


def test_lock_step_requests_are_served_in_place_or_not(threaded: ThreadedShell) -> None:
    with Client(threaded.path, timeout=10) as client:
        client.write("/k", "v")
        for _ in range(500):
            assert client.read("/k") == b"v"
    rounds = threaded.shell.hot.rounds_in_place
    if threaded.shell.options.in_place:
        assert rounds >= 450, rounds  # nearly every request without a trio wake-up
    else:
        assert rounds == 0


def test_many_clients_at_once_each_get_their_own_answers(threaded: ThreadedShell) -> None:
    socks = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(32)]
    try:
        for sock in socks:
            sock.connect(threaded.path)
            sock.settimeout(10)
        for n, sock in enumerate(socks):
            sock.sendall(encode(Packet(Op.WRITE, n, 0, b"/c/%d\0%d" % (n, n))))
        for round_ in range(20):
            for n, sock in enumerate(socks):  # all requests out before any answer is read
                sock.sendall(b"".join(encode(Packet(Op.READ, 1000 * round_ + i, 0,
                                                    b"/c/%d\0" % n)) for i in range(5)))
            for n, sock in enumerate(socks):
                framer, got = Framer(), []
                want = 6 if round_ == 0 else 5  # the first round also answers the WRITE
                while len(got) < want:
                    got += framer.feed(sock.recv(65536))
                reads = [p for p in got if p.op == Op.READ]
                assert [p.req_id for p in reads] == [1000 * round_ + i for i in range(5)]
                assert all(p.payload == b"%d" % n for p in reads)
    finally:
        for sock in socks:
            sock.close()


def test_trio_timers_run_while_clients_keep_it_busy(threaded: ThreadedShell) -> None:
    """A deadline of trio's (here a task sleeping in the shell's trio) comes due while a
    client keeps the hot loop serving in place: the loop hands back in time."""
    woke: list[float] = []
    assert threaded._token is not None
    nursery = threaded.shell._nursery
    assert nursery is not None

    async def sleeper() -> None:
        start = trio.current_time()
        await trio.sleep(0.2)
        woke.append(trio.current_time() - start)

    threaded._token.run_sync_soon(nursery.start_soon, sleeper)
    with Client(threaded.path, timeout=10) as client:
        client.write("/t", "x")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            client.read("/t")
    assert woke and woke[0] < 0.7, woke


def test_a_daemon_waiting_through_trio_serves_everything() -> None:
    """``--portable-loop``: watches, transactions and pipelined requests as usual."""
    daemon = OurDaemon("--portable-loop")
    try:
        with Client(daemon.socket_path, timeout=10) as client, \
                Client(daemon.socket_path, timeout=10) as watcher:
            watcher.watch("/w", "tok")
            client.write("/w/a", "1")
            with client.transaction() as tx:
                tx.write("/w/b", tx.read("/w/a") + b"2")
            assert client.read("/w/b") == b"12"
            seen = {watcher.read_watch()[0] for _ in range(3)}
            assert seen >= {"/w", "/w/a", "/w/b"}
    finally:
        daemon.stop()
