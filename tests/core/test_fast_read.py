"""dom0's READ outside a transaction takes a short way through the core: it must
answer exactly as the general way does, errors included."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.daemon.core import Server
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

NODES = {
    "/a": b"1", "/a/b": b"", "/a/b/c": b"\x00\xff binary", "/tool/x": b"y" * 4000,
    "/local/domain/0/name": b"Domain-0", "/local/domain/5/memory": b"512",
}


def server(fast: bool) -> tuple[Server, int, int]:
    made = Server()
    dom0 = made.connect()
    for path, value in NODES.items():
        made.handle(dom0, Packet(Op.WRITE, 1, 0, path.encode() + b"\0" + value))
    guest = made.connect(5, privileged=False)
    made.fast_read = fast
    return made, dom0, guest


paths_st = st.one_of(
    st.sampled_from([*NODES, "/", "/missing", "/a/b/missing", "name", "memory", "a/b",
                     "/a/", "//a", "/a b", "@introduceDomain", "", "/" + "x" * 5000,
                     "/local/domain/0/" + "z" * 3000]),
    st.text(alphabet="/ab@-_ \x00é", max_size=12),
)


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    text = draw(paths_st).encode("utf-8")
    ending = draw(st.sampled_from([b"\0", b"", b"\0\0", b"\0extra\0", b"\0x"]))
    return text + ending


@settings(max_examples=400, deadline=None)
@given(payload=payloads(), as_guest=st.booleans(), tx_id=st.sampled_from([0, 0, 7]))
def test_short_and_general_ways_answer_alike(payload: bytes, as_guest: bool,
                                             tx_id: int) -> None:
    answers = []
    for fast in (True, False):
        made, dom0, guest = server(fast)
        conn = guest if as_guest else dom0
        answers.append(made.handle(conn, Packet(Op.READ, 42, tx_id, payload)))
    assert answers[0] == answers[1]


def test_the_short_way_is_taken_only_when_it_answers() -> None:
    """A successful dom0 READ skips the dispatch; a failing one, a guest's and one in a
    transaction go the general way."""
    made, dom0, guest = server(True)
    general: list[bytes] = []
    read = made.nodes.read

    def counted(conn, tx, payload, out):  # type: ignore[no-untyped-def]
        general.append(payload)
        return read(conn, tx, payload, out)

    made._dispatch[Op.READ] = counted
    made.handle(dom0, Packet(Op.READ, 1, 0, b"/a\0"))
    assert general == []
    made.handle(dom0, Packet(Op.READ, 2, 0, b"/missing\0"))
    made.handle(guest, Packet(Op.READ, 3, 0, b"memory\0"))
    tx = int(made.handle(dom0, Packet(Op.TRANSACTION_START, 4, 0, b"\0"))[0].packet.payload[:-1])
    made.handle(dom0, Packet(Op.READ, 5, tx, b"/a\0"))
    assert general == [b"/missing\0", b"memory\0", b"/a\0"]
