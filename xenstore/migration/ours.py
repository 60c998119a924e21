"""Our own records' layouts (types from 0x80000002, see :mod:`.records`): read strictly
and written back byte for byte, as Xen's are in :mod:`.stream`.

Little endian, generations 64 bits; the fixed fields come first, then the
variable parts in the order their lengths are given. Strings end with their NUL,
perms are NODE_DATA's entries, lists of names are names each ending with a NUL.
Pads and undefined flag bits must be zero.

- GENERATIONS: ``generation:u64 count:u32 pad:u32`` then ``count`` times
  ``vgen:u64 pgen:u64 cgen:u64 path_len:u16`` and the path;
- NODE_VERSION: ``changed vgen pgen cgen:u64 flags:u16 (1: no node) perm_n:u16
  path_len:u16 pad:u16 value_len:u32 children_len:u32``, perms, path, value, children;
- TX_STATE: ``conn_id tx_id:u32 snapshot:u64 touched_len:u32``, the touched paths;
- TX_NEXT: ``conn_id next_tx_id:u32``;
- TX_READ: ``conn_id tx_id:u32 seen:u64 aspect:u8 pad:u8 path_len:u16``, path;
- TX_EDIT: ``conn_id tx_id:u32 kind:u8 flags:u8 (1: owner) perm_n:u16 owner:u32
  path_len pad:u16 value_len:u32``, perms, path, value.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from xenstore.migration import fields
from xenstore.migration.fields import Body, c_string, encode_names, encode_perms, names, string
from xenstore.migration.records import (
    EDIT_KINDS,
    GENERATIONS,
    NODE_VERSION,
    READ_ASPECTS,
    TX_EDIT,
    TX_NEXT,
    TX_READ,
    TX_STATE,
    GenerationsData,
    NodeVersionData,
    Record,
    TxEditData,
    TxNextData,
    TxReadData,
    TxStateData,
)

_GENERATIONS = struct.Struct("<QII")
_GENS = struct.Struct("<QQQH")
_VERSION = struct.Struct("<QQQQHHHHII")
_TX_STATE = struct.Struct("<IIQI")
_TX_NEXT = struct.Struct("<II")
_TX_READ = struct.Struct("<IIQBBH")
_TX_EDIT = struct.Struct("<IIBBHIHHI")
_NO_NODE = 1
_OWNER = 1


def _flags(flags: int, known: int, at: int) -> None:
    if flags & ~known:
        raise Body(f"flags {flags:#x} are not known", at)


def _pad(value: int, at: int) -> None:
    if value:
        raise Body("a pad field is not zero", at)


def _generations(body: bytes) -> tuple[Record, int]:
    generation, count, pad = _GENERATIONS.unpack_from(body)
    _pad(pad, 12)
    at = _GENERATIONS.size
    nodes = []
    for _ in range(count):
        if at + _GENS.size > len(body):
            raise Body(f"{count} nodes' generations run past the record's end", at)
        vgen, pgen, cgen, path_len = _GENS.unpack_from(body, at)
        path = string(body, at + _GENS.size, path_len, "path")
        nodes.append((path, vgen, pgen, cgen))
        at += _GENS.size + path_len
    return GenerationsData(generation, tuple(nodes)), at


def _version(body: bytes) -> tuple[Record, int]:
    (changed, vgen, pgen, cgen, flags, perm_n, path_len, pad, value_len,
     children_len) = _VERSION.unpack_from(body)
    _flags(flags, _NO_NODE, 32)
    _pad(pad, 38)
    perms, at = fields.perms(body, _VERSION.size, perm_n)
    path = string(body, at, path_len, "path")
    at += path_len
    value = fields.raw_bytes(body, at, value_len, "a value")
    at += value_len
    children = names(body, at, children_len, "the children")
    return (NodeVersionData(path, changed, not flags & _NO_NODE, value, perms,
                            (vgen, pgen, cgen), children), at + children_len)


def _tx_state(body: bytes) -> tuple[Record, int]:
    conn_id, tx_id, snapshot, touched_len = _TX_STATE.unpack_from(body)
    touched = names(body, _TX_STATE.size, touched_len, "the touched paths")
    return TxStateData(conn_id, tx_id, snapshot, touched), _TX_STATE.size + touched_len


def _tx_next(body: bytes) -> tuple[Record, int]:
    return TxNextData(*_TX_NEXT.unpack_from(body)), _TX_NEXT.size


def _tx_read(body: bytes) -> tuple[Record, int]:
    conn_id, tx_id, seen, aspect, pad, path_len = _TX_READ.unpack_from(body)
    if aspect >= len(READ_ASPECTS):
        raise Body(f"aspect {aspect} is none of {', '.join(READ_ASPECTS)}", 16)
    _pad(pad, 17)
    path = string(body, _TX_READ.size, path_len, "path")
    return (TxReadData(conn_id, tx_id, path, READ_ASPECTS[aspect], seen),
            _TX_READ.size + path_len)


def _tx_edit(body: bytes) -> tuple[Record, int]:
    (conn_id, tx_id, kind, flags, perm_n, owner, path_len, pad,
     value_len) = _TX_EDIT.unpack_from(body)
    if kind >= len(EDIT_KINDS):
        raise Body(f"edit kind {kind} is none of {', '.join(EDIT_KINDS)}", 8)
    _flags(flags, _OWNER, 9)
    _pad(pad, 18)
    if not flags & _OWNER and owner:
        raise Body(f"owner {owner} in an edit without one", 12)
    perms, at = fields.perms(body, _TX_EDIT.size, perm_n)
    path = string(body, at, path_len, "path")
    at += path_len
    value = fields.raw_bytes(body, at, value_len, "a value")
    return (TxEditData(conn_id, tx_id, EDIT_KINDS[kind], path, value, perms,
                       owner if flags & _OWNER else None), at + value_len)


PARSERS: dict[int, Callable[[bytes], tuple[Record, int]]] = {
    GENERATIONS: _generations, NODE_VERSION: _version, TX_STATE: _tx_state,
    TX_READ: _tx_read, TX_EDIT: _tx_edit, TX_NEXT: _tx_next,
}


def encode(record: Record) -> tuple[int, bytes] | None:
    """The type and payload of one of our records (None for any other record)."""
    if isinstance(record, GenerationsData):
        table = b"".join(_GENS.pack(v, p, c, len(path) + 1) + c_string(path)
                         for path, v, p, c in record.nodes)
        return GENERATIONS, _GENERATIONS.pack(record.generation, len(record.nodes), 0) + table
    if isinstance(record, NodeVersionData):
        path, children = c_string(record.path), encode_names(record.children)
        head = _VERSION.pack(record.changed, *record.gens, 0 if record.exists else _NO_NODE,
                             len(record.perms), len(path), 0, len(record.value), len(children))
        return NODE_VERSION, head + encode_perms(record.perms) + path + record.value + children
    if isinstance(record, TxStateData):
        touched = encode_names(record.touched)
        head = _TX_STATE.pack(record.conn_id, record.tx_id, record.snapshot, len(touched))
        return TX_STATE, head + touched
    if isinstance(record, TxNextData):
        return TX_NEXT, _TX_NEXT.pack(record.conn_id, record.next_tx_id)
    if isinstance(record, TxReadData):
        path = c_string(record.path)
        head = _TX_READ.pack(record.conn_id, record.tx_id, record.seen,
                             _index(READ_ASPECTS, record.aspect), 0, len(path))
        return TX_READ, head + path
    if isinstance(record, TxEditData):
        path = c_string(record.path)
        head = _TX_EDIT.pack(record.conn_id, record.tx_id, _index(EDIT_KINDS, record.kind),
                             0 if record.owner is None else _OWNER, len(record.perms),
                             record.owner or 0, len(path), 0, len(record.value))
        return TX_EDIT, head + encode_perms(record.perms) + path + record.value
    return None


def _index(choices: tuple[str, ...], choice: str) -> int:
    if choice not in choices:
        raise ValueError(f"{choice!r} is none of {', '.join(choices)}")
    return choices.index(choice)
