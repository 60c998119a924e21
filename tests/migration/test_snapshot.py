"""A Server's state to records and back: the tree, perms, special perms, domains."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.daemon import invariants
from xenstore.daemon.core import Server
from xenstore.migration import (
    GlobalData,
    NodeData,
    NodePerm,
    RingConnection,
    SocketConnection,
    StreamError,
    WatchData,
    read,
    write,
)
from xenstore.migration.restore import server_from
from xenstore.migration.snapshot import dump
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op


def request(server: Server, conn: int, op: Op, payload: bytes) -> bytes:
    effects = server.handle(conn, Packet(op, 7, 0, payload))
    reply = effects[-1] if op != Op.WATCH else effects[-2]
    assert reply.packet.op != Op.ERROR, reply  # type: ignore[union-attr]
    return reply.packet.payload  # type: ignore[union-attr]


def populated() -> tuple[Server, int, int]:
    server = Server()
    one, two = server.connect(), server.connect()
    request(server, one, Op.WRITE, b"/data/binary\0\x00\xff\x01end")
    request(server, one, Op.WRITE, b"/data/empty\0")
    request(server, one, Op.MKDIR, b"/data/dir\0")
    request(server, one, Op.INTRODUCE, b"5\x0099\x0011\x00")
    request(server, one, Op.INTRODUCE, b"6\x0098\x0012\x00")
    request(server, one, Op.SET_TARGET, b"6\x005\x00")
    request(server, one, Op.WRITE, b"/local/domain/5/x\0five")
    request(server, one, Op.SET_PERMS, b"/local/domain/5/x\0b5\0r6\0w0\0")
    request(server, one, Op.SET_PERMS, b"@releaseDomain\0n0\0r5\0")
    request(server, one, Op.WATCH, b"/data\0one\0")
    request(server, two, Op.WATCH, b"/data/dir\0two\0")
    request(server, two, Op.WATCH, b"@introduceDomain\0intro\0")
    return server, one, two


def tree(server: Server) -> list[tuple[str, bytes, object]]:
    store = server.store
    return [(path, store.value(path), store.perms(path)) for path in store.walk("/")]


def test_dump_puts_dom0s_ring_first_then_domains_connections_specials_nodes() -> None:
    server, one, two = populated()
    records = dump(server.state, socket_fd=3, fds={one: 10, two: 11})
    assert records[0] == GlobalData(3, -1)
    assert records[1] == RingConnection(1, 0, 0)
    assert records[2] == RingConnection(2, 5, 11)
    assert records[3] == RingConnection(3, 6, 12, tdomid=5)
    assert records[4:9] == [
        SocketConnection(4, 10), WatchData(4, b"/data", b"one"),
        SocketConnection(5, 11), WatchData(5, b"/data/dir", b"two"),
        WatchData(5, b"@introduceDomain", b"intro")]
    assert records[9] == NodeData(b"@releaseDomain", b"", (NodePerm("n", 0), NodePerm("r", 5)))
    nodes = [r for r in records[11:] if isinstance(r, NodeData)]
    assert nodes[0].path == b"/"
    assert NodeData(b"/data/binary", b"\x00\xff\x01end", (NodePerm("n", 0),)) in nodes
    assert NodeData(b"/local/domain/5/x", b"five",
                    (NodePerm("b", 5), NodePerm("r", 6), NodePerm("w", 0))) in nodes
    seen: set[bytes] = set()
    for node in nodes[1:]:  # parents first
        assert node.path.rsplit(b"/", 1)[0] or b"/" in seen | {b"/"}
        seen.add(node.path)


def test_restore_gives_the_tree_special_perms_and_domains_and_drops_connections() -> None:
    server, _, _ = populated()
    restored, loaded = server_from(write(dump(server.state)))
    assert tree(restored) == tree(server)
    assert restored.special_perms == server.special_perms
    assert sorted(restored.domains) == [5, 6]
    assert restored.domains[6].target == 5
    assert restored.domains[5].evtchn == 11
    assert (loaded.dropped_connections, loaded.dropped_watches) == (2, 3)
    assert not restored.connections
    assert len(restored.watches) == 0
    assert invariants.problems(restored.state) == []
    assert restored.store.owned == server.store.owned
    assert restored.store.owned_bytes == server.store.owned_bytes
    conn = restored.connect()
    assert request(restored, conn, Op.CONTROL, b"check\0") == b"OK\0"
    assert request(restored, conn, Op.READ, b"/data/binary\0") == b"\x00\xff\x01end"
    assert request(restored, conn, Op.IS_DOMAIN_INTRODUCED, b"5\0") == b"T\0"


def test_a_restored_server_dumps_the_same_tree() -> None:
    server, _, _ = populated()
    restored, _ = server_from(write(dump(server.state)))
    again = read(write(dump(restored.state)))
    assert [r for r in again if isinstance(r, NodeData)] == [
        r for r in dump(server.state) if isinstance(r, NodeData)]


def test_stale_perm_entries_are_left_out() -> None:
    stream = write([GlobalData(), RingConnection(1, 0, 0),
                    NodeData(b"/", b"", (NodePerm("n", 0),)),
                    NodeData(b"/a", b"v", (NodePerm("r", 0), NodePerm("b", 9, ignore=True)))])
    restored, _ = server_from(stream)
    assert [str(p) for p in restored.store.perms("/a")] == ["r0"]


@pytest.mark.parametrize(("records", "message"), [
    ([RingConnection(1, 0, 0)], "no GLOBAL_DATA"),
    ([GlobalData(), NodeData(b"/a/b", b"", (NodePerm("n", 0),))],
     r"record 1 \(NODE_DATA\) at byte 32: node /a/b comes before its parent"),
    ([GlobalData(), NodeData(b"/a//b", b"", (NodePerm("n", 0),))], "not a canonical"),
    ([GlobalData(), NodeData(b"/a", b"", ())], "without perms"),
    ([GlobalData(), WatchData(4, b"/", b"t")], "connection 4, not given before"),
    ([GlobalData(), RingConnection(1, 3, 0), RingConnection(2, 3, 0)], "two rings"),
    ([GlobalData(), RingConnection(1, 0, 0), SocketConnection(1, 3)], "used twice"),
    ([GlobalData(), NodeData(b"/a", b"", (NodePerm("n", 0),)),
      NodeData(b"/a", b"", (NodePerm("n", 0),))], "given twice"),
])
def test_streams_that_cannot_be_loaded_name_the_record(records: list, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        server_from(write(records))


_paths = st.sampled_from([b"/", b"/a", b"/a/b", b"/b", b"a", b"@releaseDomain", b"@x", b"/a/"])
_records = st.one_of(
    st.builds(GlobalData),
    st.builds(RingConnection, st.integers(0, 4), st.integers(0, 0x7FF5), st.integers(0, 9),
              st.sampled_from([0x7FF4, 0, 3])),
    st.builds(SocketConnection, st.integers(0, 4), st.integers(-1, 9)),
    st.builds(WatchData, st.integers(0, 4), _paths, st.just(b"t")),
    st.builds(NodeData, _paths, st.binary(max_size=5),
              st.lists(st.builds(NodePerm, st.sampled_from("nrwb"), st.integers(0, 0xFFFF),
                                 st.booleans()), max_size=3).map(tuple),
              st.integers(0, 1), st.integers(0, 1)),
)


@settings(max_examples=300)
@given(st.lists(_records, max_size=10))
def test_any_records_load_or_raise_stream_error_and_a_loaded_server_is_sound(
        records: list) -> None:
    try:
        restored, _ = server_from(write(records))
    except StreamError:
        return
    assert invariants.problems(restored.state) == []
