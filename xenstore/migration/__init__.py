"""Xen's xenstore migration stream (``docs/designs/xenstore-migration``), version 1.

The format cxenstored 4.17 writes to ``state_dump`` for a live update and reads
back with ``-U``: :mod:`.records` holds the typed records, :mod:`.stream` turns
bytes into records and back (byte for byte), :mod:`.snapshot` turns a daemon's
state into records and records into a daemon's state, :mod:`.restore` builds a
fresh :class:`~xenstore.daemon.core.Server` from a stream. Pure: no I/O, no trio.
"""

from xenstore.migration.records import (
    DOMID_INVALID,
    GenerationsData,
    GlobalData,
    NodeData,
    NodePerm,
    NodeVersionData,
    Record,
    RingConnection,
    SocketConnection,
    StreamError,
    TransactionData,
    TxEditData,
    TxNextData,
    TxReadData,
    TxStateData,
    UnknownRecord,
    WatchData,
    WatchDepthData,
)
from xenstore.migration.stream import read, read_located, write

__all__ = [
    "DOMID_INVALID", "GenerationsData", "GlobalData", "NodeData", "NodePerm",
    "NodeVersionData", "Record", "RingConnection", "SocketConnection", "StreamError",
    "TransactionData", "TxEditData", "TxNextData", "TxReadData", "TxStateData", "UnknownRecord",
    "WatchData", "WatchDepthData", "read", "read_located", "write",
]
