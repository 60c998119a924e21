"""The migration stream's reader and writer: round trip, and nothing but StreamError."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.migration import (
    DOMID_INVALID,
    GlobalData,
    NodeData,
    NodePerm,
    Record,
    RingConnection,
    SocketConnection,
    StreamError,
    TransactionData,
    UnknownRecord,
    WatchData,
    read,
    read_located,
    write,
)
from xenstore.migration.records import TYPE_NAMES

u16, u32 = st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF)
i32 = st.integers(-(1 << 31), (1 << 31) - 1)
text = st.binary(max_size=40).map(lambda b: b.replace(b"\0", b"x"))
pending = st.binary(max_size=30)


@st.composite
def connections(draw: st.DrawFn) -> Record:
    data_out = draw(pending)
    resp = draw(st.integers(0, len(data_out)))
    if draw(st.booleans()):
        return RingConnection(draw(u32), draw(u16), draw(u32), draw(u16), draw(pending),
                              data_out, resp)
    return SocketConnection(draw(u32), draw(i32), draw(pending), data_out, resp)


perms_ = st.lists(st.builds(NodePerm, st.sampled_from("nrwb"), u16, st.booleans()), max_size=4)
records = st.one_of(
    st.builds(GlobalData, i32, i32),
    connections(),
    st.builds(WatchData, u32, text, text),
    st.builds(TransactionData, u32, u32),
    st.builds(NodeData, text, st.binary(max_size=60), perms_.map(tuple), u32, u32, u16),
    st.builds(UnknownRecord, st.integers(6, 0xFFFFFFFF).filter(lambda t: t not in TYPE_NAMES),
              st.binary(max_size=24).map(lambda b: b + bytes(-len(b) % 8))),
)


@given(st.lists(records, max_size=8))
def test_write_then_read_gives_the_records_and_read_then_write_the_bytes(
        stream: list[Record]) -> None:
    data = write(stream)
    assert len(data) % 8 == 0
    assert read(data) == stream
    assert write(read(data)) == data


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_stream_error(data: bytes) -> None:
    try:
        stream = read(data)
    except StreamError:
        return
    assert write(stream) == data


@settings(max_examples=500)
@given(st.lists(records, min_size=1, max_size=6), st.data())
def test_a_damaged_stream_raises_only_stream_error_and_names_where(
        stream: list[Record], data: st.DataObject) -> None:
    raw = bytearray(write(stream))
    how = data.draw(st.sampled_from(["cut", "flip", "grow"]))
    at = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        del raw[at:]
    elif how == "flip":
        raw[at] ^= data.draw(st.integers(1, 255))
    else:
        raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
    try:
        read(bytes(raw))
    except StreamError as exc:
        assert 0 <= exc.offset <= len(raw)
        assert f"at byte {exc.offset}" in str(exc)


def test_the_error_names_record_type_index_and_offset() -> None:
    data = write([GlobalData(), NodeData(b"/", b"", (NodePerm("n", 0),))])
    bad = data[:56] + b"q" + data[57:]  # the node's first perm (record at 32, perm at 56)
    with pytest.raises(StreamError) as info:
        read(bad)
    assert (info.value.index, info.value.record_type, info.value.offset) == (1, 5, 56)
    assert str(info.value) == ("migration stream: record 1 (NODE_DATA) at byte 56: "
                               "perm access 0x71 is none of n, r, w, b")


@pytest.mark.parametrize(("data", "message"), [
    (b"", "preamble at byte 0"),
    (b"xenstorf" + bytes(8), "ident"),
    (b"xenstore\0\0\0\x02" + bytes(4), "version 2"),
    (b"xenstore\0\0\0\x01\x01\0\0\0", "flags 0x1"),
    (b"xenstore\0\0\0\x01" + bytes(4), "record 0 at byte 16: the stream ends before END"),
    (b"xenstore\0\0\0\x01" + bytes(4) + b"\1\0\0\0\x09\0\0\0", "not a multiple of 8"),
    (b"xenstore\0\0\0\x01" + bytes(4) + bytes(8) + b"!", "1 bytes follow END"),
])
def test_bad_preambles_and_framing(data: bytes, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        read(data)


def test_cxenstored_layouts() -> None:
    """Sizes from xenstore_state.h: each record's length includes its padding to 8."""
    data = write([GlobalData(5, 6), RingConnection(1, 0, 3), SocketConnection(2, 7),
                  WatchData(2, b"/a", b"t"), NodeData(b"/", b"", (NodePerm("n", 0),))])
    located = read_located(data)
    assert [offset for offset, _ in located] == [16, 32, 64, 96, 120]
    assert data[:16] == b"xenstore\0\0\0\x01\0\0\0\0"
    assert data[32:40] == b"\2\0\0\0\x18\0\0\0"  # CONNECTION_DATA, 24 bytes (no pending data)
    assert data[48:56] == b"\0\0\xf4\x7f\3\0\0\0"  # domid 0, tdomid DOMID_INVALID, evtchn 3
    assert DOMID_INVALID == 0x7FF4
    assert data[-8:] == bytes(8)  # END


def test_writer_refuses_what_cannot_be_written() -> None:
    for record in (WatchData(1, b"a\0b", b"t"), NodeData(b"/", b"", (NodePerm("x", 0),)),
                   UnknownRecord(5, bytes(8)), UnknownRecord(9, b"abc"),
                   TransactionData(-1, 0)):
        with pytest.raises(ValueError, match=r"."):
            write([record])


def test_a_real_cxenstored_dump_reads_and_writes_back_byte_for_byte() -> None:
    """Captured from cxenstored 4.17 (live-update under xsref): /data/bin = 00 ff with
    perms b3 r5, /data/empty, a watch on /data with token tok, and the live-update
    client's connection holding its OK."""
    from pathlib import Path

    data = (Path(__file__).parent / "data" / "cxenstored-4.17.state_dump").read_bytes()
    records = read(data)
    assert write(records) == data
    assert records[1] == RingConnection(1, 0, 3)
    assert WatchData(2, b"/data", b"tok") in records
    assert NodeData(b"/data/bin", b"\x00\xff", (NodePerm("b", 3), NodePerm("r", 5))) in records
