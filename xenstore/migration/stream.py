"""Bytes to records and back: :func:`read` and :func:`write`, byte for byte.

The reader is strict where cxenstored 4.17 trusts its input: every length is
checked against the record and the stream, padding must be zeros and shorter
than 8 bytes, strings end with their one NUL, and nothing may follow END. So
anything :func:`read` accepts, :func:`write` gives back unchanged, and anything
else is a :class:`~.records.StreamError` naming the record and the offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from xenstore.migration import fields, ours
from xenstore.migration.fields import Body, c_string, string
from xenstore.migration.records import (
    CONN,
    CONN_RING,
    CONN_SOCKET,
    END,
    FLAGS_LITTLE_ENDIAN,
    GLOBAL,
    IDENT,
    NODE,
    TRANSACTION,
    VERSION,
    WATCH,
    WATCH_DEPTH,
    GlobalData,
    NodeData,
    Record,
    RingConnection,
    SocketConnection,
    StreamError,
    TransactionData,
    UnknownRecord,
    WatchData,
    WatchDepthData,
)

_PREAMBLE = struct.Struct(">8sI")  # ident, version (big endian); the flags follow
_FLAGS = struct.Struct("<I")
_HEADER = struct.Struct("<II")
_GLOBAL = struct.Struct("<ii")
_CONN = struct.Struct("<IHH8sHHI")
_RING = struct.Struct("<HHI")
_SOCKET = struct.Struct("<i4x")
_WATCH = struct.Struct("<IHH")
_WATCH_DEPTH = struct.Struct("<IIHH")
_TRANSACTION = struct.Struct("<II")
_NODE = struct.Struct("<IIHHHH")
PREAMBLE_SIZE = 16


def _parse(record_type: int, body: bytes) -> tuple[Record, int]:
    """The record and where its payload ends within ``body``."""
    try:
        return _PARSERS[record_type](body)
    except struct.error:
        raise Body(f"{len(body)} bytes are too few for its fixed fields") from None


def _global(body: bytes) -> tuple[Record, int]:
    socket_fd, evtchn_fd = _GLOBAL.unpack_from(body)
    return GlobalData(socket_fd, evtchn_fd), _GLOBAL.size


def _connection(body: bytes) -> tuple[Record, int]:
    conn_id, conn_type, pad, spec, in_len, resp_len, out_len = _CONN.unpack_from(body)
    if pad:
        raise Body("the pad field is not zero", 6)
    end = _CONN.size + in_len + out_len
    if end > len(body):
        raise Body(f"{in_len} + {out_len} bytes of pending data run past the record's end",
                    _CONN.size)
    if resp_len > out_len:
        raise Body(f"a partial response of {resp_len} bytes in {out_len} bytes of output", 14)
    data_in = body[_CONN.size:_CONN.size + in_len]
    data_out = body[_CONN.size + in_len:end]
    if conn_type == CONN_RING:
        domid, tdomid, evtchn = _RING.unpack(spec)
        return RingConnection(conn_id, domid, evtchn, tdomid, data_in, data_out, resp_len), end
    if conn_type == CONN_SOCKET:
        if spec[4:] != bytes(4):
            raise Body("a socket connection's spec has bytes after its fd", 12)
        (fd,) = _SOCKET.unpack(spec)
        return SocketConnection(conn_id, fd, data_in, data_out, resp_len), end
    raise Body(f"unknown connection type {conn_type}", 4)


def _watch(body: bytes) -> tuple[Record, int]:
    conn_id, path_len, token_len = _WATCH.unpack_from(body)
    path = string(body, _WATCH.size, path_len, "path")
    token = string(body, _WATCH.size + path_len, token_len, "token")
    return WatchData(conn_id, path, token), _WATCH.size + path_len + token_len


def _watch_depth(body: bytes) -> tuple[Record, int]:
    conn_id, depth, path_len, token_len = _WATCH_DEPTH.unpack_from(body)
    path = string(body, _WATCH_DEPTH.size, path_len, "path")
    token = string(body, _WATCH_DEPTH.size + path_len, token_len, "token")
    return (WatchDepthData(conn_id, path, token, depth),
            _WATCH_DEPTH.size + path_len + token_len)


def _transaction(body: bytes) -> tuple[Record, int]:
    conn_id, tx_id = _TRANSACTION.unpack_from(body)
    return TransactionData(conn_id, tx_id), _TRANSACTION.size


def _node(body: bytes) -> tuple[Record, int]:
    conn_id, tx_id, path_len, data_len, ta_access, perm_n = _NODE.unpack_from(body)
    perms, at = fields.perms(body, _NODE.size, perm_n)
    path = string(body, at, path_len, "path")
    at += path_len
    value = body[at:at + data_len]
    if len(value) < data_len:
        raise Body(f"a value of {data_len} bytes runs past the record's end", at)
    return NodeData(path, value, tuple(perms), conn_id, tx_id, ta_access), at + data_len


_PARSERS = {GLOBAL: _global, CONN: _connection, WATCH: _watch, TRANSACTION: _transaction,
            NODE: _node, WATCH_DEPTH: _watch_depth, **ours.PARSERS}


def read_located(data: bytes) -> list[tuple[int, Record]]:
    """Every record before END with the offset of its header; :class:`StreamError` else."""
    data = bytes(data)
    if len(data) < PREAMBLE_SIZE:
        raise StreamError(f"{len(data)} bytes, not even the {PREAMBLE_SIZE}-byte preamble", 0)
    ident, version = _PREAMBLE.unpack_from(data)
    (flags,) = _FLAGS.unpack_from(data, 12)
    if ident != IDENT:
        raise StreamError(f"ident {ident!r} is not {IDENT!r}", 0)
    if version != VERSION:
        raise StreamError(f"version {version} (only version {VERSION} is known)", 8)
    if flags != FLAGS_LITTLE_ENDIAN:
        raise StreamError(f"flags {flags:#x} (only 0, little endian, is known)", 12)
    located: list[tuple[int, Record]] = []
    offset = PREAMBLE_SIZE
    while True:
        index = len(located)
        if offset + _HEADER.size > len(data):
            raise StreamError("the stream ends before END (truncated?)", offset, index)
        record_type, length = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if length % 8:
            raise StreamError(f"length {length} is not a multiple of 8", offset, index,
                              record_type)
        if start + length > len(data):
            raise StreamError(f"length {length} runs past the stream's end at byte "
                              f"{len(data)}", offset, index, record_type)
        body = data[start:start + length]
        if record_type == END:
            if length:
                raise StreamError(f"END has length {length}", offset, index, record_type)
            if start != len(data):
                raise StreamError(f"{len(data) - start} bytes follow END", start, index,
                                  record_type)
            return located
        if record_type in _PARSERS:
            try:
                record, used = _parse(record_type, body)
                if length - used >= 8:
                    raise Body(f"{length - used} bytes after its payload (padding is 0-7)",
                                used)
                if any(body[used:]):
                    raise Body("its padding is not zeros", used)
            except Body as exc:
                raise StreamError(exc.problem, start + exc.at, index, record_type) from None
        else:
            record = UnknownRecord(record_type, body)
        located.append((offset, record))
        offset = start + length


def read(data: bytes) -> list[Record]:
    """The records of a stream (END not included); :class:`StreamError` if it is not one."""
    return [record for _, record in read_located(data)]


def _padded(record_type: int, payload: bytes) -> bytes:
    payload += bytes(-len(payload) % 8)
    return _HEADER.pack(record_type, len(payload)) + payload


def encode(record: Record) -> bytes:
    """One record, header and padding included; ValueError for a field out of range."""
    try:
        return _encode(record)
    except struct.error as exc:
        raise ValueError(f"{record!r}: {exc}") from None


def _encode(record: Record) -> bytes:
    if isinstance(record, GlobalData):
        return _padded(GLOBAL, _GLOBAL.pack(record.socket_fd, record.evtchn_fd))
    if isinstance(record, RingConnection | SocketConnection):
        if isinstance(record, RingConnection):
            kind, spec = CONN_RING, _RING.pack(record.domid, record.tdomid, record.evtchn)
        else:
            kind, spec = CONN_SOCKET, _SOCKET.pack(record.socket_fd)
        head = _CONN.pack(record.conn_id, kind, 0, spec, len(record.data_in),
                          record.data_resp_len, len(record.data_out))
        return _padded(CONN, head + record.data_in + record.data_out)
    if isinstance(record, WatchData):
        path, token = c_string(record.path), c_string(record.token)
        return _padded(WATCH, _WATCH.pack(record.conn_id, len(path), len(token)) + path + token)
    if isinstance(record, WatchDepthData):
        path, token = c_string(record.path), c_string(record.token)
        return _padded(WATCH_DEPTH, _WATCH_DEPTH.pack(record.conn_id, record.depth, len(path),
                                                      len(token)) + path + token)
    if isinstance(record, TransactionData):
        return _padded(TRANSACTION, _TRANSACTION.pack(record.conn_id, record.tx_id))
    if isinstance(record, NodeData):
        path = c_string(record.path)
        head = _NODE.pack(record.conn_id, record.tx_id, len(path), len(record.value),
                          record.ta_access, len(record.perms))
        perms = fields.encode_perms(record.perms)
        return _padded(NODE, head + perms + path + record.value)
    if not isinstance(record, UnknownRecord):
        private = ours.encode(record)
        assert private is not None, record
        return _padded(*private)
    if record.record_type in _PARSERS or record.record_type == END:
        raise ValueError(f"an unknown record may not have a known type ({record.record_type})")
    if len(record.body) % 8:
        raise ValueError(f"an unknown record's body of {len(record.body)} bytes is not padded")
    return _HEADER.pack(record.record_type, len(record.body)) + record.body


def write(records: Iterable[Record]) -> bytes:
    """The stream: the preamble, every record, END."""
    parts = [IDENT, struct.pack(">I", VERSION), _FLAGS.pack(FLAGS_LITTLE_ENDIAN)]
    parts.extend(encode(record) for record in records)
    parts.append(_HEADER.pack(END, 0))
    return b"".join(parts)
