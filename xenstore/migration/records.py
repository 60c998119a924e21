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
class UnknownRecord:
    """A record of a type this reader does not know: kept, so it writes back as read."""

    record_type: int
    body: bytes


Record = (GlobalData | RingConnection | SocketConnection | WatchData | WatchDepthData
          | TransactionData | NodeData | UnknownRecord)
