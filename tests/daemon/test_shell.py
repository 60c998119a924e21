"""The trio shell in-process: slow readers and the output backlog bound."""

from __future__ import annotations

import os
import socket

import pytest
import trio
import trio.testing

from tests.conftest import short_tempdir
from tests.rawsocket import call
from xenstore.daemon.core import Server
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op


async def test_a_reader_that_never_drains_is_cut_off_and_others_are_served() -> None:
    path = os.path.join(short_tempdir(), "s")
    server = Server()
    shell = Shell(server, ShellOptions(socket_path=path, backlog_max=256 * 1024))
    big_value = b"v" * 4000
    async with trio.open_nursery() as nursery:
        await nursery.start(shell.serve)
        hog = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await hog.connect(path)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        good = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await good.connect(path)
        await good.send(encode(Packet(Op.WRITE, 1, 0, b"/big\0" + big_value)))
        assert Framer().feed(await good.recv(100)) == [Packet(Op.WRITE, 1, 0, b"OK\0")]
        # The hog asks for ~4 MB of replies and reads none of them.
        request = encode(Packet(Op.READ, 2, 0, b"/big\0"))
        with trio.move_on_after(10):
            try:
                for _ in range(1000):
                    await hog.send(request)
            except OSError:
                pass  # the daemon hung up on it: that is the point
        # The daemon disconnected it once its backlog passed the bound: what the
        # hog finally reads ends in EOF, far short of the 4 MB it asked for.
        received = 0
        with trio.fail_after(10):
            try:
                while data := await hog.recv(65536):
                    received += len(data)
            except ConnectionResetError:
                pass
        assert received < 1000 * 4000 // 2
        assert len(server.connections) == 1
        # ...and kept answering the well-behaved client all along.
        await good.send(encode(Packet(Op.READ, 3, 0, b"/big\0")))
        framer = Framer()
        got: list[Packet] = []
        with trio.fail_after(10):
            while not got:
                got = framer.feed(await good.recv(65536))
        assert got == [Packet(Op.READ, 3, 0, big_value)]
        hog.close()
        good.close()
        nursery.cancel_scope.cancel()


async def _connect(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(path)
    return sock


async def test_dom0_client_not_reading_its_replies_is_stalled_not_dropped() -> None:
    """Replies a client does not read stop its requests being read (they wait in the
    kernel), so the daemon holds at most about ``stall_at`` for it; once it reads,
    every request it sent is answered, in order."""
    path = os.path.join(short_tempdir(), "s")
    server = Server()
    options = ShellOptions(socket_path=path, stall_at=64 * 1024)
    shell = Shell(server, options)
    value = b"v" * 4000
    async with trio.open_nursery() as nursery:
        await nursery.start(shell.serve)
        good = await _connect(path)
        assert await call(good, Packet(Op.WRITE, 1, 0, b"/big\0" + value)) == Packet(
            Op.WRITE, 1, 0, b"OK\0")
        hog = await _connect(path)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        hog.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        requests = b"".join(
            encode(Packet(Op.READ, n, 0, b"/big\0")) for n in range(1, 2001))
        sent = 0
        with trio.move_on_after(2):  # ~8 MB of replies asked for: it must block
            while sent < len(requests):
                sent += await hog.send(requests[sent:sent + 65536])
        assert sent < len(requests), "the daemon kept reading a client that reads nothing"
        held = max((len(p.backlog) for p in shell.peers.values()), default=0)
        assert held < options.stall_at + 64 * 4100
        # Everyone else is still served meanwhile.
        assert (await call(good, Packet(Op.READ, 7, 0, b"/big\0"))).payload == value
        # The hog reads at last: one reply for every whole request it sent, in order.
        complete = sent // len(encode(Packet(Op.READ, 1, 0, b"/big\0")))
        framer = Framer()
        replies: list[Packet] = []
        with trio.fail_after(20):
            while len(replies) < complete:
                replies += framer.feed(await hog.recv(65536))
        assert [r.req_id for r in replies] == list(range(1, complete + 1))
        assert all(r.payload == value for r in replies)
        hog.close()
        good.close()
        nursery.cancel_scope.cancel()
    assert shell.backlog_bytes == 0


async def test_all_backlogs_together_are_bounded_by_shedding_the_biggest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Watch events pile up at connections that never read; when all backlogs add up
    past ``backlog_total``, the connection holding the most is disconnected, one
    holding little is kept, and the accounting returns to zero."""
    path = os.path.join(short_tempdir(), "s")
    server = Server()
    options = ShellOptions(socket_path=path, backlog_total=512 * 1024)
    shell = Shell(server, options)
    name = b"n" * 1500
    async with trio.open_nursery() as nursery:
        await nursery.start(shell.serve)
        writer = await _connect(path)
        flooded, quiet = await _connect(path), await _connect(path)
        for sock, wpath in ((flooded, b"/w"), (quiet, b"/w/0")):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reply = await call(sock, Packet(Op.WATCH, 1, 0, wpath + b"\0tok\0"))
            assert reply.op == Op.WATCH
        for n in range(1000):  # ~1.5 MB of events for the flooded watcher
            reply = await call(writer, Packet(Op.WRITE, n, 0, b"/w/" + name + b"\0x"))
            assert reply.op == Op.WRITE
            if shell.backlog_bytes > options.backlog_total:
                break
        assert shell.backlog_bytes <= options.backlog_total
        assert "the most of any connection" in caplog.text
        # The flooded watcher was cut off: what it reads ends.
        with trio.fail_after(10):
            try:
                while await flooded.recv(65536):
                    pass
            except ConnectionResetError:
                pass
        # The quiet one is still served.
        reply = await call(quiet, Packet(Op.READ, 9, 0, b"/w/" + name + b"\0"))
        assert reply == Packet(Op.READ, 9, 0, b"x")
        for sock in (writer, flooded, quiet):
            sock.close()
        with trio.fail_after(10):
            await trio.testing.wait_all_tasks_blocked(0.05)
        assert not shell.peers
        nursery.cancel_scope.cancel()
    assert shell.backlog_bytes == 0
