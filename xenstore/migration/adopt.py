"""Taking over a live daemon's state (``-U``): what a restore keeps, plus its sockets.

A live update hands over the descriptors as well as the records: the listening
socket (GLOBAL_DATA's ``socket_fd``) and every socket connection
(CONNECTION_DATA's ``socket_fd``) stay open across the exec. :func:`live_server_from`
restores the tree, special perms and domains as :func:`~.restore.server_from` does,
then registers each inherited socket connection with the server, with its
watches (and their depths, from our own WATCH_DEPTH records) and open
transactions (from our own transaction records), and says which
descriptor belongs to which of our connections and what bytes it still had
queued, so that the shell serves the same sockets.

A connection's ``data_in`` (requests received but not handled, the last maybe
partial) is read by the shell before anything more from its socket, so a request
half received completes when the client sends the rest.

Open transactions come back from our own records when a forced update (``-s -F``)
wrote them (:mod:`.carry`); a stream without them (cxenstored's) drops them.

Not carried yet: ring connections (dom0's is dropped; a guest's becomes an
introduced domain without a live ring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xenstore import paths
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.errors import XenStoreError
from xenstore.migration import carry
from xenstore.migration.records import (
    CARRIED,
    WATCH,
    GlobalData,
    SocketConnection,
    StreamError,
    WatchData,
    WatchDepthData,
)
from xenstore.migration.snapshot import Loaded, load
from xenstore.migration.stream import read_located


@dataclass(frozen=True)
class Inherited:
    """A socket connection to go on serving: our ``conn_id``, its descriptor, its queues
    (``data_in`` to read before the socket, ``data_out`` to send first)."""

    conn_id: int
    fd: int
    data_in: bytes = b""
    data_out: bytes = b""


@dataclass
class Handover:
    """What a live update left to take over besides the state."""

    loaded: Loaded
    listener_fd: int = -1
    connections: list[Inherited] = field(default_factory=list)
    #: Watches put back on inherited connections.
    watches: int = 0
    #: Open transactions put back on them (ours -> ours with ``-s -F``, :mod:`.carry`).
    transactions: int = 0

    def describe(self) -> str:
        sent = sum(len(c.data_out) for c in self.connections)
        received = sum(len(c.data_in) for c in self.connections)
        return (f"live update: adopted {len(self.connections)} connection(s) with "
                f"{self.watches} watch(es), {self.transactions} transaction(s), {sent} "
                f"byte(s) to send, {received} byte(s) of "
                f"requests received, listening socket fd {self.listener_fd}; "
                f"{len(self.loaded.domains)} domain(s); skipped {self.loaded.skipped} record(s)")


def live_server_from(data: bytes, config: Config | None = None) -> tuple[Server, Handover]:
    """A server holding the stream's state, with its socket connections registered.

    Connections whose descriptor is -1 are dropped with their watches, as a
    snapshot's are. :class:`StreamError` names a record that cannot be loaded.
    """
    located = read_located(data)
    server = Server(config)
    handover = Handover(load(located, server.state))
    ours: dict[int, int] = {}
    depths = {(r.conn_id, r.path, r.token): r.depth for _, r in located
              if isinstance(r, WatchDepthData)}
    path_max = server.quotas.limit(0, "path-max")
    for index, (offset, record) in enumerate(located):
        if isinstance(record, GlobalData):
            handover.listener_fd = record.socket_fd
        elif isinstance(record, SocketConnection) and record.socket_fd >= 0:
            conn_id = server.connect()
            ours[record.conn_id] = conn_id
            handover.connections.append(Inherited(conn_id, record.socket_fd,
                                                  record.data_in, record.data_out))
        elif isinstance(record, WatchData) and record.conn_id in ours:
            raw = record.path.decode("latin-1")
            try:
                wpath = paths.canonical_watch(raw, 0, path_max)
                relative_to = None if raw[:1] in ("/", "@") else paths.home(0) + "/"
                server.watches.add(ours[record.conn_id], wpath, record.token,
                                   depths.get((record.conn_id, record.path, record.token)),
                                   relative_to)
            except XenStoreError as exc:
                raise StreamError(f"watch {raw!r}: {exc}", offset, index, WATCH) from None
            handover.watches += 1
    handover.transactions = carry.restore(located, server.state, ours)
    handover.loaded.skipped -= sum(isinstance(r, CARRIED) for _, r in located)
    handover.loaded.dropped_connections -= len(handover.connections)
    handover.loaded.dropped_watches -= handover.watches
    return server, handover
