"""A watch's depth across ours -> ours: our own WATCH_DEPTH record, which cxenstored
4.17 skips as an unknown type."""

from __future__ import annotations

from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.migration import (
    SocketConnection,
    WatchData,
    WatchDepthData,
    read,
    write,
)
from xenstore.migration.adopt import live_server_from
from xenstore.migration.records import WATCH_DEPTH
from xenstore.migration.restore import server_from
from xenstore.migration.snapshot import dump
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op


def test_the_record_writes_back_byte_for_byte() -> None:
    record = WatchDepthData(2, b"/data", b"tok", 1)
    stream = write([record])
    assert read(stream) == [record]
    assert write(read(stream)) == stream


def test_its_type_is_outside_xens_and_a_restore_skips_it() -> None:
    assert WATCH_DEPTH > 0xFFFF  # Xen numbers its types from 0
    server = Server()
    watcher = server.connect()
    server.handle(watcher, Packet(Op.WATCH, 1, 0, b"/\0t\0" + b"2\0"))
    _, loaded = server_from(write(dump(server.state, fds={watcher: 5})))
    assert (loaded.dropped_watches, loaded.skipped) == (1, 1)


def events(effects: object, conn_id: int) -> list[bytes]:
    return [e.packet.payload for e in effects  # type: ignore[attr-defined]
            if isinstance(e, Send) and e.conn_id == conn_id
            and e.packet.op == Op.WATCH_EVENT]


def test_a_watchs_depth_survives_a_dump_and_adopt() -> None:
    server = Server()
    watcher = server.connect()
    server.handle(watcher, Packet(Op.WRITE, 1, 0, b"/data\0v"))
    server.handle(watcher, Packet(Op.WATCH, 2, 0, b"/data\0shallow\0" + b"1\0"))
    server.handle(watcher, Packet(Op.WATCH, 3, 0, b"/data\0deep\0"))
    records = dump(server.state, fds={watcher: 5})
    assert WatchDepthData(2, b"/data", b"shallow", 1) in records
    assert sum(isinstance(r, WatchDepthData) for r in records) == 1
    assert sum(isinstance(r, WatchData) for r in records) == 2

    adopted, handover = live_server_from(write(records))
    [kept] = handover.connections
    assert handover.watches == 2
    watches = adopted.watches.by_conn[kept.conn_id]
    assert watches["/data", b"shallow"].depth == 1
    assert watches["/data", b"deep"].depth is None
    other = adopted.connect()
    near = adopted.handle(other, Packet(Op.WRITE, 1, 0, b"/data/a\0x"))
    assert sorted(events(near, kept.conn_id)) == [b"/data/a\0deep\0", b"/data/a\0shallow\0"]
    far = adopted.handle(other, Packet(Op.WRITE, 2, 0, b"/data/a/b\0x"))
    assert events(far, kept.conn_id) == [b"/data/a/b\0deep\0"]
    assert any(isinstance(r, SocketConnection) for r in records)
