"""live_server_from: a live update's stream, its socket connections and their watches kept."""

from __future__ import annotations

import pytest

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
from xenstore.protocol.codec import Packet
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
