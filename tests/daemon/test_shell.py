"""The trio shell in-process: slow readers and the output backlog bound."""

from __future__ import annotations

import os
import socket

import trio

from tests.conftest import short_tempdir
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
