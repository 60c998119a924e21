"""The records of a migration stream, version 1, as typed values.

Layouts (little endian, as cxenstored writes them on x86; the preamble's
version is big endian): every record is a header ``type:u32 length:u32``
followed by ``length`` bytes, and ``length`` includes the zero padding that
brings the record to a multiple of 8 bytes. A record holds what the C structs
of Xen's ``xenstore_state.h`` hold; strings are stored here without their NUL.
"""

from __future__ import annotations

from dataclasses import dataclass

#: ``xenstore`` then version 1 (big endian), flags 0 (little endian).
IDENT = b"xenstore"
VERSION = 1
FLAGS_LITTLE_ENDIAN = 0

END, GLOBAL, CONN, WATCH, TRANSACTION, NODE = 0, 1, 2, 3, 4, 5
TYPE_NAMES = {
    END: "END", GLOBAL: "GLOBAL_DATA", CONN: "CONNECTION_DATA", WATCH: "WATCH_DATA",
    TRANSACTION: "TRANSACTION_DATA", NODE: "NODE_DATA",
}
#: Our own record (not Xen's): a watch's depth, which WATCH_DATA cannot hold. Xen
#: assigns types upwards from 0 and cxenstored 4.17 skips a type it does not know,
#: so a private type with the top bit set is safe to write to either daemon.
WATCH_DEPTH = 0x80000001
TYPE_NAMES[WATCH_DEPTH] = "WATCH_DEPTH (ours)"
#: Ours too, written only by a forced live update (``-s -F``) with transactions open, so
#: that they go on ours -> ours (cxenstored skips them and drops the transactions, as
#: its own ``-F`` does): the store's generations, the old versions open snapshots still
#: read, and each transaction's snapshot, reads and log (its own view of the nodes it
#: changed, and what its commit would add to quotas, follow from replaying the log).
GENERATIONS, NODE_VERSION, TX_STATE, TX_READ, TX_EDIT, TX_NEXT = range(0x80000002,
                                                                   0x80000008)
TYPE_NAMES.update({
    GENERATIONS: "GENERATIONS (ours)", NODE_VERSION: "NODE_VERSION (ours)",
    TX_STATE: "TX_STATE (ours)", TX_READ: "TX_READ (ours)", TX_EDIT: "TX_EDIT (ours)",
    TX_NEXT: "TX_NEXT (ours)",
})
CONN_RING, CONN_SOCKET = 0, 1
#: tdomid of a ring connection that has no target.
DOMID_INVALID = 0x7FF4
#: A node's perm entry marked stale (a domain that is gone): ignored for checks.
PERM_IGNORE = 0x01
PERM_LETTERS = b"nrwb"


def type_name(record_type: int) -> str:
    return TYPE_NAMES.get(record_type, f"unknown type {record_type:#x}")


class StreamError(ValueError):
    """A stream that cannot be read (or loaded): names the record and the byte offset.

    ``index`` counts records from 0 (None: the preamble); ``record_type`` is the
    type read from the record's header (None when the header itself is cut).
    """

    def __init__(self, problem: str, offset: int, index: int | None = None,
                 record_type: int | None = None) -> None:
        self.problem = problem
        self.offset = offset
        self.index = index
        self.record_type = record_type
        if index is None:
            where = "preamble"
        elif record_type is None:
            where = f"record {index}"
        else:
            where = f"record {index} ({type_name(record_type)})"
        super().__init__(f"migration stream: {where} at byte {offset}: {problem}")


@dataclass(frozen=True, slots=True)
class GlobalData:
    """The daemon's own descriptors: the listening socket and the event channel."""

    socket_fd: int = -1
    evtchn_fd: int = -1


@dataclass(frozen=True, slots=True)
class RingConnection:
    """A domain's shared-ring connection: re-introduced by the daemon that reads it."""

    conn_id: int
    domid: int
    evtchn: int
    tdomid: int = DOMID_INVALID
    #: Bytes read but not processed yet (requests, the last maybe partial).
    data_in: bytes = b""
    #: Bytes not written yet (replies and events); the first ``data_resp_len``
    #: of them are the rest of a partly written response.
    data_out: bytes = b""
    data_resp_len: int = 0


@dataclass(frozen=True, slots=True)
class SocketConnection:
    """A Unix socket connection, inherited by file descriptor number."""

    conn_id: int
    socket_fd: int
    data_in: bytes = b""
    data_out: bytes = b""
    data_resp_len: int = 0


@dataclass(frozen=True, slots=True)
class WatchData:
    """A watch of connection ``conn_id`` (path as the client gave it, relative or not)."""

    conn_id: int
    path: bytes
    token: bytes


@dataclass(frozen=True, slots=True)
class WatchDepthData:
    """Ours: the depth of the watch of ``conn_id`` on ``path`` with ``token``."""

    conn_id: int
    path: bytes
    token: bytes
    depth: int


@dataclass(frozen=True, slots=True)
class TransactionData:
    """An open transaction (cxenstored 4.17 writes none and skips them)."""

    conn_id: int
    tx_id: int


@dataclass(frozen=True, slots=True)
class NodePerm:
    """One perm entry: a letter of ``nrwb``, the domid, and the stale flag."""

    access: str
    domid: int
    ignore: bool = False


@dataclass(frozen=True, slots=True)
class NodeData:
    """A node (or a special ``@`` node's perms); ``tx_id`` 0: committed."""

    path: bytes
    value: bytes
    perms: tuple[NodePerm, ...]
    conn_id: int = 0
    tx_id: int = 0
    ta_access: int = 0


@dataclass(frozen=True, slots=True)
class GenerationsData:
    """Ours: the store's generation, and the (value, perms, children) generations of
    the committed nodes whose generations an open transaction may compare: those it
    read and those with saved versions. The reader gives every other node 0 (its
    next change moves it past any snapshot). Generations are 64 bits."""

    generation: int
    nodes: tuple[tuple[bytes, int, int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeVersionData:
    """Ours: a node's version kept for open snapshots: what ``path`` was before the
    commit of generation ``changed`` (``exists`` False: there was no node)."""

    path: bytes
    changed: int
    exists: bool = True
    value: bytes = b""
    perms: tuple[NodePerm, ...] = ()
    gens: tuple[int, int, int] = (0, 0, 0)
    children: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class TxStateData:
    """Ours: an open transaction of ``conn_id``: its snapshot's generation and every
    node it touched (what the transaction-nodes quota counts)."""

    conn_id: int
    tx_id: int
    snapshot: int
    touched: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class TxNextData:
    """Ours: the transaction id TRANSACTION_START gives next on ``conn_id``."""

    conn_id: int
    next_tx_id: int


#: What a TX_READ consulted: index in the record of the transactions' aspects.
READ_ASPECTS = ("existence", "value", "perms", "children")


@dataclass(frozen=True, slots=True)
class TxReadData:
    """Ours: one thing a transaction read in its snapshot: ``aspect`` (one of
    :data:`READ_ASPECTS`) of ``path`` and the generation it saw (existence: 1 or 0)."""

    conn_id: int
    tx_id: int
    path: bytes
    aspect: str
    seen: int


#: A TX_EDIT's kinds, by their number in the record.
EDIT_KINDS = ("write", "mkdir", "perms", "rm")


@dataclass(frozen=True, slots=True)
class TxEditData:
    """Ours: one edit of a transaction's log, in order: ``kind`` (one of
    :data:`EDIT_KINDS`), the path, the value of a write, the perms of a perms edit and
    the owner the creator asked for (None: a privileged creator)."""

    conn_id: int
    tx_id: int
    kind: str
    path: bytes
    value: bytes = b""
    perms: tuple[NodePerm, ...] = ()
    owner: int | None = None


@dataclass(frozen=True, slots=True)
class UnknownRecord:
    """A record of a type this reader does not know: kept, so it writes back as read."""

    record_type: int
    body: bytes


Record = (GlobalData | RingConnection | SocketConnection | WatchData | WatchDepthData
          | TransactionData | NodeData | GenerationsData | NodeVersionData | TxStateData
          | TxReadData | TxEditData | TxNextData | UnknownRecord)
#: Our records that carry transactions (a restore skips them).
CARRIED = (GenerationsData, NodeVersionData, TxStateData, TxReadData, TxEditData,
           TxNextData)


_TYPE_OF: dict[type, int] = {
    GlobalData: GLOBAL, RingConnection: CONN, SocketConnection: CONN, WatchData: WATCH,
    WatchDepthData: WATCH_DEPTH, TransactionData: TRANSACTION, NodeData: NODE,
    GenerationsData: GENERATIONS, NodeVersionData: NODE_VERSION, TxStateData: TX_STATE,
    TxReadData: TX_READ, TxEditData: TX_EDIT, TxNextData: TX_NEXT,
}


def record_type(record: Record) -> int:
    """The type number ``record`` has in a stream."""
    if isinstance(record, UnknownRecord):
        return record.record_type
    return _TYPE_OF[type(record)]
