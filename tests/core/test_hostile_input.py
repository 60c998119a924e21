"""Arbitrary requests never crash the core nor leave the tree inconsistent."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xenstore.daemon.core import Server
from xenstore.daemon.effects import Log, Send
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

names = st.sampled_from(["a", "b", "tool", "xenstored", "@introduceDomain", "", "a@b", "x y"])
path_like = st.lists(names, max_size=4).map(lambda parts: "/".join(parts)) | st.sampled_from(
    ["/", "//", "/a/", "@releaseDomain", "/tool/xenstored", "/local/domain/5/x"]
)
field = (
    path_like.map(str.encode)
    | st.sampled_from([b"T", b"F", b"n0", b"r5", b"b0", b"x1", b"0", b"-1", b"help", b"4096"])
    | st.binary(max_size=12)
)
payload = st.lists(field, max_size=4).map(lambda fs: b"\0".join(fs)) | st.lists(
    field, max_size=4
).map(lambda fs: b"".join(f + b"\0" for f in fs))
ops = st.sampled_from(list(Op)) | st.integers(0, 40) | st.just(0xFFFFFFFF)
packets = st.builds(Packet, ops, st.integers(0, 2**32 - 1), st.integers(0, 3), payload)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), packets), max_size=40))
def test_any_requests_get_one_reply_and_keep_the_tree_sound(
    script: list[tuple[bool, Packet]],
) -> None:
    server = Server()
    dom0 = server.connect()
    guest = server.connect(domid=5, privileged=False)
    for as_guest, packet in script:
        conn = guest if as_guest else dom0
        effects = server.handle(conn, packet)
        assert not [e for e in effects if isinstance(e, Log)], effects  # no internal errors
        replies = [
            e for e in effects
            if isinstance(e, Send) and e.conn_id == conn and e.packet.op != Op.WATCH_EVENT
        ]
        assert len(replies) == 1
        reply = replies[0].packet
        assert (reply.req_id, reply.tx_id) == (packet.req_id, packet.tx_id)
        assert reply.op in (packet.op, Op.ERROR)
        assert server.store.check() == []
