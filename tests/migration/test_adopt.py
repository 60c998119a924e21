"""live_server_from: a live update's stream, its socket connections, their watches and
the requests they had partly sent kept."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from tests.conftest import short_tempdir
from xenstore.daemon.assemble import adopt_connections
from xenstore.daemon.core import Server
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.migration import (
    GlobalData,
    NodeData,
    NodePerm,
    RingConnection,
    SocketConnection,
    StreamError,
    WatchData,
    write,
)
from xenstore.migration.adopt import live_server_from
from xenstore.migration.snapshot import dump
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op

ROOT = NodeData(b"/", b"", (NodePerm("n", 0),))
DATA = NodeData(b"/data", b"v", (NodePerm("n", 0),))


def test_socket_connections_and_their_watches_are_kept() -> None:
    stream = write([
        GlobalData(7, -1), RingConnection(1, 0, 3),
        SocketConnection(2, 9, data_out=b"queued"), WatchData(2, b"/data", b"abs"),
        WatchData(2, b"rel", b"relative"),
        SocketConnection(3, -1), WatchData(3, b"/data", b"gone"),
        ROOT, DATA,
    ])
    server, handover = live_server_from(stream)
    assert handover.listener_fd == 7
    [kept] = handover.connections
    assert (kept.fd, kept.data_out) == (9, b"queued")
    assert handover.watches == 2
    assert handover.loaded.dropped_connections == 1
    assert handover.loaded.dropped_watches == 1
    watches = server.watches.by_conn[kept.conn_id]
    assert set(watches) == {("/data", b"abs"), ("/local/domain/0/rel", b"relative")}
    assert "adopted 1 connection(s) with 2 watch(es)" in handover.describe()
    # The connection answers, and its watch fires on a change.
    other = server.connect()
    effects = server.handle(other, Packet(Op.WRITE, 1, 0, b"/data/x\0y"))
    fired = [e for e in effects if getattr(e, "conn_id", None) == kept.conn_id]
    assert fired and fired[0].packet.payload == b"/data/x\0abs\0"  # type: ignore[attr-defined]


def test_a_bad_watch_names_its_record() -> None:
    stream = write([GlobalData(7, -1), SocketConnection(2, 9),
                    WatchData(2, b"/bad//path", b"t"), ROOT])
    with pytest.raises(StreamError, match=r"record 2 \(WATCH_DATA\)"):
        live_server_from(stream)


async def test_a_request_half_received_completes_when_the_client_sends_the_rest() -> None:
    ours, client = socket.socketpair()
    whole = encode(Packet(Op.READ, 1, 0, b"/data\0"))
    request = encode(Packet(Op.WRITE, 2, 0, b"/data/half\0value"))
    cut = len(request) - 3
    stream = write([GlobalData(-1, -1), RingConnection(1, 0, 3),
                    SocketConnection(2, ours.detach(), data_in=whole + request[:cut]),
                    ROOT, DATA])
    server, handover = live_server_from(stream)
    [kept] = handover.connections
    assert kept.data_in == whole + request[:cut]
    shell = Shell(server, ShellOptions(socket_path=os.path.join(short_tempdir(), "s")))
    framer = Framer()
    with client:
        client.setblocking(False)
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.serve)
            adopt_connections(shell, handover)
            sock = trio.socket.from_stdlib_socket(client)
            with trio.fail_after(5):  # the whole request is answered at once...
                got = framer.feed(await sock.recv(65536))
            assert got == [Packet(Op.READ, 1, 0, b"v")]
            assert not server.state.store.exists("/data/half")
            await sock.send(request[cut:])  # ...the half one once the rest comes
            with trio.fail_after(5):
                got = framer.feed(await sock.recv(65536))
            assert got == [Packet(Op.WRITE, 2, 0, b"OK\0")]
            assert server.state.store.value("/data/half") == b"value"
            nursery.cancel_scope.cancel()


def test_a_live_updates_dump_carries_a_partial_request() -> None:
    server = Server()
    conn_id = server.connect()
    records = dump(server.state, fds={conn_id: 5}, inputs={conn_id: b"\x02\0\0"})
    [conn] = [r for r in records if isinstance(r, SocketConnection)]
    assert (conn.socket_fd, conn.data_in) == (5, b"\x02\0\0")


def test_the_framer_holds_a_partial_packet() -> None:
    framer = Framer()
    request = encode(Packet(Op.READ, 1, 0, b"/x\0"))
    assert framer.feed(request + request[:5]) == [Packet(Op.READ, 1, 0, b"/x\0")]
    assert framer.held == request[:5]

