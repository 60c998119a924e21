"""The struct codec against the construct grammar, and the framer against any chunking.

Each op's payloads are drawn here as a :class:`Case`: the grammar's named
fields, and the same payload in the codec's terms (NUL-terminated ``wire``
fields that :func:`join` builds and :func:`split` recovers, then a ``tail``
after the last of them). Both sides must build the same bytes and read each
other's bytes back to the same fields.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from construct import ConstructError  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.errors import ERRNO_NAMES, ProtocolError
from xenstore.protocol import grammar
from xenstore.protocol.codec import HEADER, Framer, Packet, encode, encode_parts, join, split
from xenstore.protocol.ops import HEADER_SIZE, PAYLOAD_MAX, Op

FAST = settings(max_examples=40, deadline=None)
MORE = settings(max_examples=150, deadline=None)


@dataclass
class Case:
    """One payload: the grammar's fields, and the codec's NUL-terminated fields plus tail."""

    fields: dict[str, Any]
    wire: list[bytes]
    tail: bytes = b""
    #: The tail is binary data (may hold NULs): the codec reads it with split(b"\0", n).
    raw: bool = False

    @property
    def payload(self) -> bytes:
        return join(*self.wire) + self.tail


# --- Strategies for the parts of payloads -----------------------------------

#: <foo>: any octets but NUL (a few are empty).
text = st.binary(max_size=24).map(lambda b: b.replace(b"\0", b"\x01"))
#: A leaf name: never empty.
name = st.binary(min_size=1, max_size=16).map(lambda b: b.replace(b"\0", b"/"))
#: <foo|>: any octets, NULs included.
raw = st.binary(max_size=64)
#: ? : the reserved tail, empty from every real client.
reserved = st.just(b"") | text
u32 = st.integers(0, 2**32 - 1)
number = st.integers(0, 2**64)
domid = st.integers(0, 0x7FFF) | st.sampled_from([0x7FF0, 0x7FF4, 0xFFFF])
perm = st.builds(
    lambda kind, who: kind + str(who).encode(), st.sampled_from([b"r", b"w", b"b", b"n"]), domid
)
perms = st.lists(perm, min_size=1, max_size=6)


def dec(n: int) -> bytes:
    return str(n).encode()


def path_only(path: bytes) -> Case:
    return Case({"path": path}, [path])


def domid_only(d: int) -> Case:
    return Case({"domid": d}, [dec(d)])


def ok() -> st.SearchStrategy[Case]:
    return st.just(Case({}, [b"OK"]))


def watch(wpath: bytes, token: bytes, depth: int | None, tail: bytes) -> Case:
    fields = {"wpath": wpath, "token": token, "depth": depth, "reserved": tail}
    return Case(fields, [wpath, token] + ([] if depth is None else [dec(depth)]), tail)


def get_quota(d: int | None, quota: bytes | None) -> Case:
    wire = ([] if d is None else [dec(d)]) + ([] if quota is None else [quota])
    return Case({"domid": d, "quota": quota}, wire)


def set_quota(d: int | None, quota: bytes, value: int) -> Case:
    wire = ([] if d is None else [dec(d)]) + [quota, dec(value)]
    return Case({"domid": d, "quota": quota, "value": value}, wire)


def directory_part(gencnt: int, children: list[bytes], complete: bool) -> Case:
    wire = [dec(gencnt), *children] + ([b""] if complete else [])
    return Case({"gencnt": gencnt, "children": children, "complete": complete}, wire)


REQUEST_CASES: dict[Op, st.SearchStrategy[Case]] = {
    Op.CONTROL: st.builds(
        lambda cmd, args: Case({"command": cmd, "args": args}, [cmd, *args]),
        text,
        st.lists(text, max_size=4),
    ),
    Op.DIRECTORY: st.builds(path_only, text),
    Op.READ: st.builds(path_only, text),
    Op.GET_PERMS: st.builds(path_only, text),
    Op.MKDIR: st.builds(path_only, text),
    Op.RM: st.builds(path_only, text),
    Op.WATCH: st.builds(watch, text, text, st.none() | number, reserved),
    Op.UNWATCH: st.builds(
        lambda w, t, r: Case({"wpath": w, "token": t, "reserved": r}, [w, t], r),
        text,
        text,
        reserved,
    ),
    Op.TRANSACTION_START: st.just(Case({}, [b""])),
    Op.TRANSACTION_END: st.builds(
        lambda commit: Case({"commit": commit}, [b"T" if commit else b"F"]), st.booleans()
    ),
    Op.INTRODUCE: st.builds(
        lambda d, gfn, evtchn, r: Case(
            {"domid": d, "gfn": gfn, "evtchn": evtchn, "reserved": r},
            [dec(d), dec(gfn), dec(evtchn)],
            r,
        ),
        domid,
        st.integers(-(2**63), 2**63),
        u32,
        reserved,
    ),
    Op.RELEASE: st.builds(domid_only, domid),
    Op.GET_DOMAIN_PATH: st.builds(domid_only, domid),
    Op.IS_DOMAIN_INTRODUCED: st.builds(domid_only, domid),
    Op.RESUME: st.builds(domid_only, domid),
    Op.WRITE: st.builds(
        lambda path, value: Case({"path": path, "value": value}, [path], value, raw=True),
        text,
        raw,
    ),
    Op.SET_PERMS: st.builds(
        lambda path, ps, r: Case({"path": path, "perms": ps, "reserved": r}, [path, *ps], r),
        text,
        perms,
        reserved,
    ),
    Op.SET_TARGET: st.builds(
        lambda d, t: Case({"domid": d, "tdomid": t}, [dec(d), dec(t)]), domid, domid
    ),
    Op.RESET_WATCHES: st.just(Case({}, [b""])),
    Op.DIRECTORY_PART: st.builds(
        lambda path, off: Case({"path": path, "offset": off}, [path, dec(off)]), text, u32
    ),
    Op.GET_FEATURE: st.builds(
        lambda d: Case({"domid": d}, [] if d is None else [dec(d)]), st.none() | domid
    ),
    Op.SET_FEATURE: st.builds(
        lambda d, v: Case({"domid": d, "value": v}, [dec(d), dec(v)]), domid, u32
    ),
    Op.GET_QUOTA: st.one_of(
        st.just(get_quota(None, None)),
        st.builds(get_quota, st.none(), text),
        st.builds(get_quota, domid, text),
    ),
    Op.SET_QUOTA: st.builds(set_quota, st.none() | domid, text, number),
}

REPLY_CASES: dict[Op, st.SearchStrategy[Case]] = {
    Op.CONTROL: st.builds(lambda out: Case({"output": out}, [], out, raw=True), raw),
    Op.DIRECTORY: st.builds(
        lambda children: Case({"children": children}, children), st.lists(text, max_size=8)
    ),
    Op.READ: st.builds(lambda value: Case({"value": value}, [], value, raw=True), raw),
    Op.GET_PERMS: st.builds(lambda ps: Case({"perms": ps}, ps), perms),
    Op.WATCH: ok(),
    Op.UNWATCH: ok(),
    Op.TRANSACTION_START: st.builds(lambda t: Case({"transid": t}, [dec(t)]), u32),
    Op.TRANSACTION_END: ok(),
    Op.INTRODUCE: ok(),
    Op.RELEASE: ok(),
    Op.GET_DOMAIN_PATH: st.builds(lambda p: Case({"path": p}, [p]), text),
    Op.WRITE: ok(),
    Op.MKDIR: ok(),
    Op.RM: ok(),
    Op.SET_PERMS: ok(),
    Op.WATCH_EVENT: st.builds(lambda e, t: Case({"epath": e, "token": t}, [e, t]), text, text),
    Op.ERROR: st.builds(lambda n: Case({"name": n}, [n.encode()]), st.sampled_from(ERRNO_NAMES)),
    Op.IS_DOMAIN_INTRODUCED: st.builds(
        lambda yes: Case({"introduced": yes}, [b"T" if yes else b"F"]), st.booleans()
    ),
    Op.RESUME: ok(),
    Op.SET_TARGET: ok(),
    Op.RESET_WATCHES: ok(),
    Op.DIRECTORY_PART: st.builds(directory_part, number, st.lists(name, max_size=8), st.booleans()),
    Op.GET_FEATURE: st.builds(lambda v: Case({"value": v}, [dec(v)]), u32),
    Op.SET_FEATURE: ok(),
    Op.GET_QUOTA: st.builds(lambda v: Case({"value": v}, [v]), text),
    Op.SET_QUOTA: ok(),
}

DIRECTIONS = {
    "request": (
        REQUEST_CASES,
        grammar.build_request,
        grammar.parse_request,
        grammar.RequestMessage,
    ),
    "reply": (REPLY_CASES, grammar.build_reply, grammar.parse_reply, grammar.ReplyMessage),
}


def test_every_op_is_declared_and_drawn() -> None:
    assert set(grammar.REPLIES) == set(Op) == set(REPLY_CASES)
    assert set(grammar.REQUESTS) == set(Op) - {Op.WATCH_EVENT, Op.ERROR} == set(REQUEST_CASES)


def codec_fields(case: Case, payload: bytes) -> tuple[list[bytes], bytes]:
    """Read ``payload`` the way codec users do: split, or split n fields off raw data."""
    if case.raw:
        *wire, tail = payload.split(b"\0", len(case.wire))
        return wire, tail
    wire = split(payload)
    return wire, payload[len(join(*wire)) :]


@pytest.mark.parametrize(
    ("direction", "op"),
    [
        pytest.param(d, op, id=f"{d}-{op.name}")
        for d, (cases, *_) in DIRECTIONS.items()
        for op in cases
    ],
)
@FAST
@given(data=st.data(), req_id=u32, tx_id=u32)
def test_payloads_and_messages_agree(
    direction: str, op: Op, data: st.DataObject, req_id: int, tx_id: int
) -> None:
    cases, build, parse, typed_message = DIRECTIONS[direction]
    case = data.draw(cases[op])
    codec_payload = case.payload
    assert len(codec_payload) <= PAYLOAD_MAX

    # Payload: grammar builds what the codec builds, and each reads the other's bytes.
    grammar_payload = build(op, **case.fields)
    assert grammar_payload == codec_payload
    assert parse(op, codec_payload) == case.fields
    assert codec_fields(case, grammar_payload) == (case.wire, case.tail)

    # Message: encode/encode_parts vs Message, Framer vs parse_message, both ways.
    packet = Packet(op, req_id, tx_id, codec_payload)
    wire_bytes = encode(packet)
    assert grammar.build_message(op, req_id, tx_id, grammar_payload) == wire_bytes
    assert encode_parts(op, req_id, tx_id, codec_payload) == wire_bytes
    assert grammar.parse_message(wire_bytes) == packet
    assert Framer().feed(grammar.build_message(op, req_id, tx_id, grammar_payload)) == [packet]

    # The typed message grammar reads the header fields and the payload's fields at once.
    message = typed_message.parse(wire_bytes)
    assert (int(message.type), message.req_id, message.tx_id) == (op, req_id, tx_id)
    assert message.type == op.name
    assert grammar._fields(message.payload) == case.fields
    built = typed_message.build(
        {"type": op.name, "req_id": req_id, "tx_id": tx_id, "payload": case.fields}
    )
    assert built == wire_bytes


# --- The framer --------------------------------------------------------------

any_op = st.sampled_from(list(Op)) | u32
packets = st.builds(Packet, any_op, u32, u32, st.binary(max_size=48))


@st.composite
def chunked(draw: st.DrawFn, stream: bytes) -> list[bytes]:
    """``stream`` cut at random points; repeated points make empty chunks."""
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=24)))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds)]


@MORE
@given(data=st.data(), sent=st.lists(packets, max_size=12))
def test_framer_is_indifferent_to_chunking(data: st.DataObject, sent: list[Packet]) -> None:
    stream = b"".join(encode(p) for p in sent)
    assert stream == b"".join(grammar.build_message(*p) for p in sent)
    assert grammar.parse_messages(stream) == sent
    boundaries = list(itertools.accumulate((len(encode(p)) for p in sent), initial=0))

    framer = Framer()
    got: list[Packet] = []
    fed = 0
    for chunk in data.draw(chunked(stream)):
        got += framer.feed(chunk)
        fed += len(chunk)
        assert got == sent[: len(got)]
        assert framer.pending == fed - max(b for b in boundaries if b <= fed)
    assert got == sent
    assert framer.pending == 0
    assert not framer.broken


@FAST
@given(sent=st.lists(packets, min_size=1, max_size=6))
def test_framer_one_byte_at_a_time(sent: list[Packet]) -> None:
    stream = b"".join(encode(p) for p in sent)
    framer = Framer()
    got: list[Packet] = []
    for i in range(len(stream)):
        got += framer.feed(b"")
        got += framer.feed(stream[i : i + 1])
    assert got == sent
    assert framer.pending == 0


@MORE
@given(
    data=st.data(),
    before=st.lists(packets, max_size=5),
    op=any_op,
    req_id=u32,
    tx_id=u32,
    length=st.integers(PAYLOAD_MAX + 1, 2**32 - 1),
    after=st.binary(max_size=40),
)
def test_oversized_header_breaks_the_stream(
    data: st.DataObject,
    before: list[Packet],
    op: int,
    req_id: int,
    tx_id: int,
    length: int,
    after: bytes,
) -> None:
    good = b"".join(encode(p) for p in before)
    stream = good + HEADER.pack(op, req_id, tx_id, length) + after

    # All in one feed: the packets before the bad header first, then the error.
    framer = Framer()
    if before:
        assert framer.feed(stream) == before
        assert framer.broken
    else:
        with pytest.raises(ProtocolError):
            framer.feed(stream)
    assert framer.broken
    with pytest.raises(ProtocolError):
        framer.feed(b"")

    # In chunks: the same packets, and once broken every feed raises.
    framer = Framer()
    got: list[Packet] = []
    for chunk in data.draw(chunked(stream)):
        if framer.broken:
            with pytest.raises(ProtocolError):
                framer.feed(chunk)
            continue
        try:
            got += framer.feed(chunk)
        except ProtocolError:
            assert framer.broken
    assert got == before
    assert framer.broken
    with pytest.raises(ProtocolError):
        framer.feed(b"")

    # The grammar refuses the same header, whatever follows it.
    with pytest.raises(ConstructError):
        grammar.parse_message(HEADER.pack(op, req_id, tx_id, length) + after)


def test_largest_payload_frames_and_one_more_byte_does_not() -> None:
    biggest = Packet(Op.WRITE, 1, 2, b"x" * PAYLOAD_MAX)
    assert Framer().feed(encode(biggest)) == [biggest]
    assert grammar.parse_message(encode(biggest)) == biggest
    with pytest.raises(ConstructError):
        grammar.build_message(Op.WRITE, 1, 2, b"x" * (PAYLOAD_MAX + 1))
    with pytest.raises(ProtocolError):
        Framer().feed(HEADER.pack(Op.WRITE, 1, 2, PAYLOAD_MAX + 1))


@FAST
@given(op=any_op, req_id=u32, tx_id=u32, count=st.integers(1, 5))
def test_zero_length_payloads(op: int, req_id: int, tx_id: int, count: int) -> None:
    packet = Packet(op, req_id, tx_id, b"")
    message = encode(packet)
    assert len(message) == HEADER_SIZE
    assert message == grammar.build_message(op, req_id, tx_id, b"")
    assert grammar.parse_message(message) == packet

    framer = Framer()
    assert framer.feed(message[:-1]) == []
    assert framer.pending == HEADER_SIZE - 1
    assert framer.feed(message[-1:] + message * (count - 1)) == [packet] * count
    assert framer.pending == 0


# --- split and join ----------------------------------------------------------


@MORE
@given(fields=st.lists(text, max_size=10), tail=text)
def test_split_join_round_trip(fields: list[bytes], tail: bytes) -> None:
    payload = join(*fields)
    assert split(payload) == fields
    assert join(*split(payload)) == payload
    # An unterminated tail is not a field.
    assert split(payload + tail) == fields
    assert payload == grammar.REPLIES[Op.DIRECTORY].build({"children": fields})


@FAST
@given(fields=st.lists(st.text(max_size=12).map(lambda s: s.replace("\0", "-")), max_size=6))
def test_join_encodes_str_fields_as_utf8(fields: list[str]) -> None:
    assert join(*fields) == join(*(f.encode() for f in fields))
    assert [f.decode() for f in split(join(*fields))] == fields


def test_split_and_join_of_nothing() -> None:
    assert join() == b""
    assert split(b"") == []
    assert split(b"\0") == [b""]
    assert join("") == b"\0"
