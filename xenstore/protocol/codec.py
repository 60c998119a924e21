"""The hot-path codec: ``struct`` for the header, ``bytes.split`` for payloads.

:mod:`xenstore.protocol.grammar` declares the same format with construct; a
property test proves the two agree byte for byte. This module must stay free of
construct (it is imported by the CLI tools, whose start-up time matters).
"""

from __future__ import annotations

import struct
from collections import namedtuple

from xenstore.errors import ProtocolError
from xenstore.protocol.ops import HEADER_SIZE, PAYLOAD_MAX, op_name

HEADER = struct.Struct("<IIII")
_unpack_from = HEADER.unpack_from
_pack = HEADER.pack
_new = tuple.__new__


# A namedtuple, declared as typing's NamedTuple for the type checker only: importing
# typing would cost every CLI tool a third of its start-up (tests/protocol/test_imports.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class Packet(NamedTuple):
        """One message: the header fields and the raw payload."""

        op: int
        req_id: int
        tx_id: int
        payload: bytes
else:
    Packet = namedtuple("Packet", ["op", "req_id", "tx_id", "payload"])
    Packet.__doc__ = """One message: the header fields and the raw payload."""


def describe(packet: Packet, limit: int = 80) -> str:
    """The message for a log line: op by name, ids, the payload's start."""
    op = op_name(packet.op)
    payload = packet.payload[:limit]
    more = f"... ({len(packet.payload)} bytes)" if len(packet.payload) > limit else ""
    return f"{op} req_id={packet.req_id} tx_id={packet.tx_id} {payload!r}{more}"


def encode(packet: Packet) -> bytes:
    """The bytes of one message (header then payload)."""
    op, req_id, tx_id, payload = packet
    return _pack(op, req_id, tx_id, len(payload)) + payload


def encode_parts(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """:func:`encode` without building a :class:`Packet` first."""
    return _pack(op, req_id, tx_id, len(payload)) + payload


def join(*fields: bytes | str) -> bytes:
    """A payload of NUL-terminated fields: ``join("a", "b") == b"a\\0b\\0"``."""
    out = bytearray()
    for field in fields:
        out += field.encode() if isinstance(field, str) else field
        out += b"\0"
    return bytes(out)


def split(payload: bytes) -> list[bytes]:
    """The NUL-terminated fields of a payload; bytes after the last NUL are dropped.

    ``split(b"a\\0b\\0") == [b"a", b"b"]``. An unterminated tail is not a field:
    the daemon treats a missing terminator as a missing argument.
    """
    parts = payload.split(b"\0")
    parts.pop()
    return parts


class Framer:
    """Cuts a byte stream into packets, however the stream is split into reads.

    A header announcing more than :data:`PAYLOAD_MAX` bytes breaks the stream
    for good: it cannot be resynchronised, so the connection must be closed (as
    Xen's daemons do). The packets before it are still returned, so that they
    are answered first; :attr:`broken` then tells the caller to close, and any
    later :meth:`feed` raises :class:`ProtocolError`.
    """

    __slots__ = ("broken", "held")

    def __init__(self) -> None:
        #: The bytes received that do not yet make a whole packet.
        self.held = b""
        self.broken = False

    @property
    def pending(self) -> int:
        """Bytes received that do not yet make a whole packet."""
        return len(self.held)

    def feed(self, data: bytes) -> list[Packet]:
        """Add received bytes; return every packet they complete, in order."""
        if self.broken:
            raise ProtocolError("stream already broken by an oversized header")
        if not self.held and len(data) >= HEADER_SIZE:
            # The common case: a read of exactly one whole request.
            op, req_id, tx_id, length = _unpack_from(data)
            if len(data) == HEADER_SIZE + length and length <= PAYLOAD_MAX:
                return [_new(Packet, (op, req_id, tx_id, data[HEADER_SIZE:]))]
        buf = self.held + data if self.held else data
        packets: list[Packet] = []
        pos = 0
        end = len(buf)
        while end - pos >= HEADER_SIZE:
            op, req_id, tx_id, length = _unpack_from(buf, pos)
            if length > PAYLOAD_MAX:
                self.broken = True
                self.held = b""
                if not packets:
                    raise ProtocolError(f"payload length {length} exceeds {PAYLOAD_MAX}")
                return packets
            stop = pos + HEADER_SIZE + length
            if stop > end:
                break
            packets.append(_new(Packet, (op, req_id, tx_id, buf[pos + HEADER_SIZE : stop])))
            pos = stop
        self.held = buf[pos:] if pos else buf
        return packets
