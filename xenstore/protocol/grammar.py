"""The XenStore wire format, declared once with construct.

This module is the protocol written down as a grammar, for reading, for tests,
for fuzzing and for trace dumps. The daemon and the clients do not use it: they
use :mod:`xenstore.protocol.codec` (``struct`` and ``bytes.split``, several times
faster), and ``tests/protocol/test_codec.py`` proves that both agree byte for
byte. Never import this module from the codec, the clients, the tools or the
daemon core: importing construct costs the CLI tools ~25 ms of start-up.

The source is docs/misc/xenstore.txt in Xen, whose notation the comments keep:

=============  ================================================================
``|``          a NUL byte
``<foo>``      a string without NUL bytes
``<foo|>``     binary data, which may hold NUL bytes
``<foo>|*``    zero or more NUL-terminated strings
``<foo>|+``    one or more NUL-terminated strings
``?``          a reserved trailing value without NULs, sent empty by every client
=============  ================================================================

Every message, in either direction, is a 16-byte header and ``len`` bytes of
payload. The payload's syntax depends on the header's ``type`` *and* on the
direction: :data:`REQUESTS` declares what a client sends for each op,
:data:`REPLIES` what the daemon answers (a reply has the request's type, or
``ERROR``; ``WATCH_EVENT`` messages arrive unasked).

Strings stay ``bytes``: the wire carries octets, and whether a path or a token
is acceptable is the daemon's judgement, not the framing's. Numbers become
``int``, and only their canonical decimal spelling parses, so that whatever
parses builds back to the same bytes.
"""

from __future__ import annotations

import re
from typing import Any

from construct import (  # type: ignore[import-untyped]
    Bytes,
    Check,
    Computed,
    Const,
    Construct,
    Default,
    Enum,
    EnumIntegerString,
    ExprAdapter,
    ExprValidator,
    FocusedSeq,
    GreedyBytes,
    GreedyRange,
    Int32ul,
    Mapping,
    NullTerminated,
    Prefixed,
    Rebuild,
    Select,
    Struct,
    Switch,
    Terminated,
    len_,
    this,
)

from xenstore.errors import ERRNO_NAMES
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import HEADER_SIZE, PAYLOAD_MAX, Op

__all__ = [
    "OK",
    "REPLIES",
    "REQUESTS",
    "Absent",
    "Decimal",
    "Empty",
    "ErrorName",
    "Field",
    "Header",
    "Message",
    "Messages",
    "Name",
    "OneOrMore",
    "OpType",
    "Payload",
    "Perm",
    "ReplyMessage",
    "RequestMessage",
    "Reserved",
    "SignedDecimal",
    "TrueFalse",
    "build_message",
    "build_reply",
    "build_request",
    "parse_message",
    "parse_messages",
    "parse_reply",
    "parse_request",
]

# ---------------------------------------------------------------------------
# The header

#: ``type``: the op number, parsed to its name (``"READ"``). Numbers that name
#: no op (20 was XS_RESTRICT) parse to plain ints: framing does not judge them.
OpType = Enum(Int32ul, Op)

#: ``struct xsd_sockmsg``: four little-endian u32.
Header = Struct(
    "type" / OpType,
    "req_id" / Int32ul,  # chosen by the client, copied into the reply
    "tx_id" / Int32ul,  # 0, or the transaction the request belongs to
    "len" / Int32ul,  # payload bytes that follow, at most PAYLOAD_MAX
)
assert Header.sizeof() == HEADER_SIZE

#: One message, payload left raw. A ``len`` over PAYLOAD_MAX is a broken
#: stream (the daemon closes the connection), not a message.
Message = Struct(
    "type" / OpType,
    "req_id" / Int32ul,
    "tx_id" / Int32ul,
    "len" / Rebuild(Int32ul, len_(this.payload)),
    Check(this.len <= PAYLOAD_MAX),
    "payload" / Bytes(this.len),
)

#: Back-to-back messages, as they travel on a connection.
Messages = GreedyRange(Message)

# ---------------------------------------------------------------------------
# Building blocks of payloads

#: ``<foo>|``: a string without NUL, then a NUL.
Field = ExprValidator(NullTerminated(GreedyBytes), lambda obj, ctx: b"\0" not in obj)

#: A :data:`Field` that is not empty: a child's leaf name.
Name = ExprValidator(Field, lambda obj, ctx: obj != b"")

#: ``?``: the reserved, unterminated tail a few requests allow. Every client
#: sends it empty, so it builds empty by default.
Reserved = Default(ExprValidator(GreedyBytes, lambda obj, ctx: b"\0" not in obj), b"")

#: ``|``: a payload that is one empty string (TRANSACTION_START, RESET_WATCHES).
Empty = Const(b"", Field)


def _decimal(pattern: bytes) -> Construct:
    canonical = re.compile(pattern)
    return ExprAdapter(
        ExprValidator(Field, lambda obj, ctx: canonical.fullmatch(obj) is not None),
        decoder=lambda obj, ctx: int(obj),
        encoder=lambda obj, ctx: str(obj).encode() if type(obj) is int else b"",
    )


#: ``<domid>|``, ``<offset>|``, ...: an unsigned decimal number, as an ``int``.
#: Only the canonical spelling (no sign, no leading zero) parses.
Decimal = _decimal(rb"0|[1-9][0-9]*")

#: INTRODUCE's ``<gfn>``, which the spec writes in *signed* decimal.
SignedDecimal = _decimal(rb"0|-?[1-9][0-9]*")

#: ``T|`` or ``F|`` as ``True`` or ``False``.
TrueFalse = Mapping(Field, {True: b"T", False: b"F"})

#: ``<perm-as-string>|``: ``r`` read, ``w`` write, ``b`` both or ``n`` none,
#: then a domid: ``b0``, ``r5``. Kept as bytes; :mod:`xenstore.perms` reads it.
Perm = ExprValidator(Field, lambda obj, ctx: re.fullmatch(rb"[rwbn](0|[1-9][0-9]*)", obj))

#: ``<error>``: the errno *name*, one of ``xsd_errors[]``, as a ``str``.
ErrorName = Mapping(Field, {name: name.encode() for name in ERRNO_NAMES})

#: A field that this form of a request leaves out: parses as ``None``, and
#: builds nothing, from ``None`` only.
Absent = ExprValidator(Computed(None), lambda obj, ctx: obj is None)


def OneOrMore(subcon: Construct) -> Construct:
    """``<foo>|+``: like ``GreedyRange`` but at least one."""
    return ExprValidator(GreedyRange(subcon), lambda obj, ctx: len(obj) >= 1)


def Payload(*fields: Construct) -> Construct:
    """A payload made of exactly these fields: no byte may be left over."""
    return Struct(*fields, Terminated)


#: ``OK|``: the reply of every op whose reply the spec does not spell out.
OK = Payload(Const(b"OK", Field))

# ---------------------------------------------------------------------------
# Requests, as sent by a client

REQUESTS: dict[Op, Construct] = {
    # <command>|<args>|*  (implementation-specific commands, e.g. "check")
    Op.CONTROL: Payload("command" / Field, "args" / GreedyRange(Field)),
    # <path>|
    Op.DIRECTORY: Payload("path" / Field),
    Op.READ: Payload("path" / Field),
    Op.GET_PERMS: Payload("path" / Field),
    Op.MKDIR: Payload("path" / Field),
    Op.RM: Payload("path" / Field),
    # <wpath>|<token>|[<depth>|]?
    Op.WATCH: Select(
        Payload("wpath" / Field, "token" / Field, "depth" / Decimal, "reserved" / Reserved),
        Payload("wpath" / Field, "token" / Field, "depth" / Absent, "reserved" / Reserved),
    ),
    # <wpath>|<token>|?
    Op.UNWATCH: Payload("wpath" / Field, "token" / Field, "reserved" / Reserved),
    # |   (tx_id in the header must be 0)
    Op.TRANSACTION_START: Payload(Empty),
    # T| to commit, F| to abort the transaction named by tx_id in the header
    Op.TRANSACTION_END: Payload("commit" / TrueFalse),
    # <domid>|<gfn>|<evtchn>|?
    Op.INTRODUCE: Payload(
        "domid" / Decimal, "gfn" / SignedDecimal, "evtchn" / Decimal, "reserved" / Reserved
    ),
    # <domid>|
    Op.RELEASE: Payload("domid" / Decimal),
    Op.GET_DOMAIN_PATH: Payload("domid" / Decimal),
    Op.IS_DOMAIN_INTRODUCED: Payload("domid" / Decimal),
    Op.RESUME: Payload("domid" / Decimal),
    # <path>|<value|>   (the value is raw bytes up to the end: NULs allowed)
    Op.WRITE: Payload("path" / Field, "value" / GreedyBytes),
    # <path>|<perm-as-string>|+?
    Op.SET_PERMS: Payload("path" / Field, "perms" / OneOrMore(Perm), "reserved" / Reserved),
    # <domid>|<tdomid>|
    Op.SET_TARGET: Payload("domid" / Decimal, "tdomid" / Decimal),
    # |
    Op.RESET_WATCHES: Payload(Empty),
    # <path>|<offset>|   (a byte offset into the list of children)
    Op.DIRECTORY_PART: Payload("path" / Field, "offset" / Decimal),
    # [<domid>|]   (no domid: the features this daemon supports)
    Op.GET_FEATURE: Select(
        Payload("domid" / Decimal),
        Payload("domid" / Absent),
    ),
    # <domid>|<value>|
    Op.SET_FEATURE: Payload("domid" / Decimal, "value" / Decimal),
    # [[<domid>|]<quota>|]   (no domid: the global quota; nothing: the quota names)
    Op.GET_QUOTA: Select(
        Payload("domid" / Decimal, "quota" / Field),
        Payload("domid" / Absent, "quota" / Field),
        Payload("domid" / Absent, "quota" / Absent),
    ),
    # [<domid>|]<quota>|<value>|
    Op.SET_QUOTA: Select(
        Payload("domid" / Decimal, "quota" / Field, "value" / Decimal),
        Payload("domid" / Absent, "quota" / Field, "value" / Decimal),
    ),
}
"""Each op's request payload. ``WATCH_EVENT`` and ``ERROR`` are never requests."""

# ---------------------------------------------------------------------------
# Replies, as sent by the daemon (same type as the request, or ERROR)

REPLIES: dict[Op, Construct] = {
    # implementation-specific text, usually NUL-terminated ("OK|", help text, ...)
    Op.CONTROL: Payload("output" / GreedyBytes),
    # <child-leaf-name>|*
    Op.DIRECTORY: Payload("children" / GreedyRange(Field)),
    # <value|>
    Op.READ: Payload("value" / GreedyBytes),
    # <perm-as-string>|+   (the first entry names the owner)
    Op.GET_PERMS: Payload("perms" / OneOrMore(Perm)),
    Op.WATCH: OK,
    Op.UNWATCH: OK,
    # <transid>|   (to be put in the tx_id of later requests)
    Op.TRANSACTION_START: Payload("transid" / Decimal),
    Op.TRANSACTION_END: OK,
    Op.INTRODUCE: OK,
    Op.RELEASE: OK,
    # <path>|
    Op.GET_DOMAIN_PATH: Payload("path" / Field),
    Op.WRITE: OK,
    Op.MKDIR: OK,
    Op.RM: OK,
    Op.SET_PERMS: OK,
    # <epath>|<token>|   (unsolicited; req_id and tx_id are 0)
    Op.WATCH_EVENT: Payload("epath" / Field, "token" / Field),
    # <error>|   e.g. ENOENT|
    Op.ERROR: Payload("name" / ErrorName),
    # T| or F|
    Op.IS_DOMAIN_INTRODUCED: Payload("introduced" / TrueFalse),
    Op.RESUME: OK,
    Op.SET_TARGET: OK,
    Op.RESET_WATCHES: OK,
    # <gencnt>|<child-leaf-name>|*, then one more empty string (a lone |) in the
    # part that reaches the end of the list: leaf names are never empty.
    Op.DIRECTORY_PART: Payload(
        "gencnt" / Decimal,
        "children" / GreedyRange(Name),
        "complete" / Mapping(GreedyBytes, {True: b"\0", False: b""}),
    ),
    # <value>|   (a bitmap of feature bits, in decimal)
    Op.GET_FEATURE: Payload("value" / Decimal),
    Op.SET_FEATURE: OK,
    # <value>|   (a decimal; asked without <quota>, the quota names separated by blanks)
    Op.GET_QUOTA: Payload("value" / Field),
    Op.SET_QUOTA: OK,
}
"""Each message type's payload from the daemon: replies, ``ERROR`` and ``WATCH_EVENT``."""


# ---------------------------------------------------------------------------
# Whole messages with typed payloads (for trace dumps)


def _op_key(ctx: Any) -> int:
    """The op number of ``ctx.type``, whether parsed (a name) or given to build."""
    value = ctx.type
    if isinstance(value, EnumIntegerString):
        return int(value)
    if isinstance(value, str):
        return int(Op[value]) if value in Op.__members__ else -1
    return int(value)


def _typed_message(payloads: dict[Op, Construct]) -> Construct:
    # The header's len is the length prefix of the payload: Prefixed reads it,
    # and computes it when building.
    length = ExprValidator(Int32ul, lambda obj, ctx: obj <= PAYLOAD_MAX)
    return Struct(
        "type" / OpType,
        "req_id" / Int32ul,
        "tx_id" / Int32ul,
        "payload" / Prefixed(length, Switch(_op_key, payloads, default=GreedyBytes)),
    )


#: A client's message with its payload parsed by :data:`REQUESTS`.
RequestMessage = _typed_message(REQUESTS)
#: A daemon's message with its payload parsed by :data:`REPLIES`.
ReplyMessage = _typed_message(REPLIES)

# ---------------------------------------------------------------------------
# Helpers with plain Python types

_ONE_MESSAGE = FocusedSeq("message", "message" / Message, Terminated)
_MESSAGES = FocusedSeq("messages", "messages" / Messages, Terminated)


def _packet(message: Any) -> Packet:
    return Packet(int(message.type), message.req_id, message.tx_id, message.payload)


def parse_message(data: bytes) -> Packet:
    """The one message that ``data`` holds, as :class:`~xenstore.protocol.codec.Framer` gives it.

    Raises :class:`construct.ConstructError` unless ``data`` is exactly one message.
    """
    return _packet(_ONE_MESSAGE.parse(data))


def parse_messages(data: bytes) -> list[Packet]:
    """Every message of a stream that ends on a message boundary."""
    return [_packet(message) for message in _MESSAGES.parse(data)]


def build_message(op: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    """Header and payload, as :func:`~xenstore.protocol.codec.encode` builds them."""
    data: bytes = Message.build(
        {"type": int(op), "req_id": req_id, "tx_id": tx_id, "payload": payload}
    )
    return data


def _fields(container: Any) -> dict[str, Any]:
    return {key: value for key, value in container.items() if not key.startswith("_")}


def _grammar(table: dict[Op, Construct], op: int, what: str) -> Construct:
    try:
        return table[Op(op)]
    except (ValueError, KeyError):
        raise ValueError(f"no {what} payload for op {op!r}") from None


def parse_request(op: int, payload: bytes) -> dict[str, Any]:
    """The named fields of a request payload: ``{"path": b"/a", "value": b"1"}``.

    Absent optional fields are ``None``. Raises :class:`construct.ConstructError`
    for a malformed payload, :class:`ValueError` for an op that has no requests.
    """
    return _fields(_grammar(REQUESTS, op, "request").parse(payload))


def build_request(op: int, /, **fields: Any) -> bytes:
    """A request payload from its fields: ``build_request(Op.READ, path=b"/a")``."""
    data: bytes = _grammar(REQUESTS, op, "request").build(fields)
    return data


def parse_reply(op: int, payload: bytes) -> dict[str, Any]:
    """The named fields of a payload sent by the daemon (reply, ERROR or WATCH_EVENT)."""
    return _fields(_grammar(REPLIES, op, "reply").parse(payload))


def build_reply(op: int, /, **fields: Any) -> bytes:
    """A payload the daemon sends: ``build_reply(Op.ERROR, name="ENOENT") == b"ENOENT\\0"``."""
    data: bytes = _grammar(REPLIES, op, "reply").build(fields)
    return data
