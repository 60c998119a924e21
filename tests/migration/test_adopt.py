"""live_server_from: a live update's stream, its socket connections, their watches and
the requests they had partly sent kept."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

import pytest
import trio

from tests.conftest import short_tempdir
from xenstore.daemon import options
from xenstore.daemon.assemble import adopt_connections, build_server
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
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


def test_a_guests_ring_becomes_an_introduced_domain_without_a_ring(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "state_dump").write_bytes(write([
        GlobalData(7, -1), RingConnection(1, 0, 3),
        RingConnection(2, 5, 9, data_in=b"\x02\0", data_out=b"lost"), ROOT, DATA]))
    monkeypatch.setenv("XENSTORED_RUNDIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, "xenstore.daemon"):
        server, said, handover = build_server(options.parse(["-U"]))
    assert handover is not None and handover.loaded.domains == [5]
    assert "1 domain(s)" in (said or "")
    assert [r.getMessage() for r in caplog.records if "ring" in r.getMessage()] == [
        "live update: domain 5's shared ring is not carried over: the domain stays "
        "introduced, without a live ring"]
    dom0 = server.connect()
    [reply] = server.handle(dom0, Packet(Op.IS_DOMAIN_INTRODUCED, 1, 0, b"5\0"))
    assert reply.packet.payload == b"T\0"  # type: ignore[attr-defined]
    server.handle(dom0, Packet(Op.WATCH, 2, 0, b"@releaseDomain\0rel\0"))
    effects = server.handle(dom0, Packet(Op.RELEASE, 3, 0, b"5\0"))
    sent = [e.packet for e in effects if isinstance(e, Send) and e.conn_id == dom0]
    assert Packet(Op.RELEASE, 3, 0, b"OK\0") in sent
    assert any(p.op == Op.WATCH_EVENT and p.payload.startswith(b"@releaseDomain")
               for p in sent)
    [reply] = server.handle(dom0, Packet(Op.IS_DOMAIN_INTRODUCED, 4, 0, b"5\0"))
    assert reply.packet.payload == b"F\0"  # type: ignore[attr-defined]
