"""A daemon's state as migration records, and records back into a daemon's state.

:func:`dump` writes what cxenstored 4.17 needs to take the state over: GLOBAL_DATA;
a shared-ring CONNECTION_DATA for domain 0 first (cxenstored creates its node
database when it restores dom0's ring, and crashes on a watch or a node before
it); one ring record per introduced domain (domid, target, event channel), so
that the reader re-introduces it; the socket connections with their watches;
the perms of ``@releaseDomain`` and ``@introduceDomain``; every node, parents
first. :func:`load` puts records into a fresh state: the tree through the
store's own writes (so owner accounting stays right), the special nodes' perms,
the domains; connections and their watches are counted and dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from xenstore import paths
from xenstore.daemon.domains import Domain
from xenstore.daemon.state import ServerState
from xenstore.errors import XenStoreError
from xenstore.migration.carry import carried
from xenstore.migration.fields import our_perms, stream_perms
from xenstore.migration.records import (
    DOMID_INVALID,
    GlobalData,
    NodeData,
    Record,
    RingConnection,
    SocketConnection,
    StreamError,
    WatchData,
    WatchDepthData,
    record_type,
)
from xenstore.perms import DOMID_FIRST_RESERVED
from xenstore.protocol.ops import ABS_PATH_MAX

#: The stream's conn_id of domain 0's ring.
DOM0_CONN_ID = 1
#: Makes the error for the record being loaded.
_Fail = Callable[[str], StreamError]


def dump(state: ServerState, *, socket_fd: int = -1, evtchn_fd: int = -1,
         fds: Mapping[int, int] | None = None, dom0_evtchn: int = 0,
         outputs: Mapping[int, bytes] | None = None,
         inputs: Mapping[int, bytes] | None = None,
         transactions: bool = False) -> list[Record]:
    """The records of ``state``; ``fds`` gives socket connections' descriptor numbers
    (-1 for those it does not name: a snapshot's connections are not meant to live),
    ``outputs`` the bytes each still has to be sent and ``inputs`` those of a request
    it has partly received (a live update's). With ``transactions`` (a forced live
    update), the open transactions of the connections ``fds`` names follow the nodes
    in our own records (:mod:`.carry`)."""
    records: list[Record] = [GlobalData(socket_fd, evtchn_fd),
                             RingConnection(DOM0_CONN_ID, 0, dom0_evtchn)]
    conn_of_domain: dict[int, int] = {0: DOM0_CONN_ID}
    #: Our live socket connections -> their conn_id in the stream.
    stream_conn: dict[int, int] = {}
    next_id = DOM0_CONN_ID + 1
    for domid in sorted(state.domains):
        domain = state.domains[domid]
        tdomid = DOMID_INVALID if domain.target is None else domain.target
        records.append(RingConnection(next_id, domid, domain.evtchn, tdomid))
        conn_of_domain[domid] = next_id
        next_id += 1
        # A guest's connections are its ring in the stream: their watches go there.
        seen: set[tuple[bytes, bytes]] = set()
        for conn in state.domain_connections(domid):
            for watch in _watches(state, conn.conn_id):
                if (watch.path, watch.token) not in seen:
                    seen.add((watch.path, watch.token))
                    records.append(WatchData(conn_of_domain[domid], watch.path, watch.token))
    for conn_id, conn in sorted(state.connections.items()):
        if conn.domid != 0 and conn.domid in state.domains:
            continue
        fd = (fds or {}).get(conn_id, -1)
        if fd >= 0:
            stream_conn[conn_id] = next_id
        records.append(SocketConnection(next_id, fd, data_in=(inputs or {}).get(conn_id, b""),
                                        data_out=(outputs or {}).get(conn_id, b"")))
        for watch, depth in zip(_watches(state, conn_id), _depths(state, conn_id),
                                strict=True):
            records.append(WatchData(next_id, watch.path, watch.token))
            if depth is not None:  # ours only: cxenstored skips the record
                records.append(WatchDepthData(next_id, watch.path, watch.token, depth))
        next_id += 1
    for name in (paths.RELEASE_DOMAIN, paths.INTRODUCE_DOMAIN):
        records.append(NodeData(name.encode(), b"", stream_perms(state.special_perms[name])))
    store = state.store
    records.extend(
        NodeData(path.encode("latin-1"), store.value(path), stream_perms(store.perms(path)))
        for path in store.walk(paths.ROOT))
    if transactions:
        records.extend(carried(state, stream_conn))
    return records


def _watches(state: ServerState, conn_id: int) -> list[WatchData]:
    return [WatchData(conn_id, w.epath(w.wpath).encode("latin-1"), w.token)
            for w in sorted(state.watches.by_conn.get(conn_id, {}).values(),
                            key=lambda w: w.seq)]


def _depths(state: ServerState, conn_id: int) -> list[int | None]:
    return [w.depth for w in sorted(state.watches.by_conn.get(conn_id, {}).values(),
                                    key=lambda w: w.seq)]


@dataclass
class Loaded:
    """What :func:`load` did besides the tree."""

    domains: list[int] = field(default_factory=list)
    dropped_connections: int = 0
    dropped_watches: int = 0
    #: Records it skipped: transactions, a transaction's nodes, watch depths (a
    #: restore drops the watches), our carried transactions' records, unknown types.
    skipped: int = 0


def load(located: Sequence[tuple[int, Record]], state: ServerState) -> Loaded:
    """Put the records into ``state`` (fresh: its initial tree is replaced).

    A record that cannot be loaded (a node whose parent was not given first, a
    bad path, a watch of an unknown connection, no GLOBAL_DATA...) raises
    :class:`StreamError` naming it; ``state`` is then half loaded: load into a
    fresh one and throw it away on error.
    """
    loaded = Loaded()
    conn_ids: set[int] = set()
    seen_global = False
    store = state.store
    for name in list(store.children(paths.ROOT)):
        store.remove(paths.ROOT + name, detail=False)
    for index, (offset, record) in enumerate(located):
        def fail(problem: str, *, at: int = offset, number: int = index,
                 kind: int = record_type(record)) -> StreamError:
            return StreamError(problem, at, number, kind)

        if isinstance(record, GlobalData):
            seen_global = True
        elif isinstance(record, RingConnection | SocketConnection):
            if record.conn_id in conn_ids:
                raise fail(f"connection id {record.conn_id} is used twice")
            conn_ids.add(record.conn_id)
            if isinstance(record, RingConnection) and record.domid != 0:
                _load_domain(record, state, fail)
                loaded.domains.append(record.domid)
            else:
                loaded.dropped_connections += isinstance(record, SocketConnection)
        elif isinstance(record, WatchData):
            if record.conn_id not in conn_ids:
                raise fail(f"a watch of connection {record.conn_id}, not given before it")
            loaded.dropped_watches += 1
        elif isinstance(record, NodeData):
            if record.tx_id:
                loaded.skipped += 1
                continue
            _load_node(record, state, fail)
        else:
            # Transactions, watch depths, our carried transactions, unknown types.
            loaded.skipped += 1
    if not seen_global:
        raise StreamError("no GLOBAL_DATA record", located[-1][0] if located else 16)
    return loaded


def _load_domain(record: RingConnection, state: ServerState, fail: _Fail) -> None:
    domid = record.domid
    if domid >= DOMID_FIRST_RESERVED:
        raise fail(f"a ring of domain {domid}, not a guest domid")
    if domid in state.domains:
        raise fail(f"domain {domid} has two rings")
    target = None if record.tdomid == DOMID_INVALID else record.tdomid
    state.domains[domid] = Domain(domid, 0, record.evtchn, target=target,
                                  features=state.pending_features.pop(domid, 0))


def _load_node(record: NodeData, state: ServerState, fail: _Fail) -> None:
    if not record.perms:
        raise fail("a node without perms (the owner's entry is required)")
    if record.perms[0].domid >= DOMID_FIRST_RESERVED:
        raise fail(f"a node owned by reserved domid {record.perms[0].domid}")
    path = record.path.decode("latin-1")
    entries = our_perms(record.perms)
    if path in paths.SPECIAL_PATHS:
        state.special_perms[path] = entries
        return
    try:
        good = path == paths.ROOT or paths.canonical(path, 0, ABS_PATH_MAX) == path
    except XenStoreError:
        good = False
    if not good:
        raise fail(f"node path {record.path!r} is not a canonical absolute path")
    store = state.store
    if path != paths.ROOT:
        if not store.exists(paths.parent(path)):
            raise fail(f"node {path} comes before its parent")
        if store.exists(path):
            raise fail(f"node {path} is given twice")
    store.write(path, record.value, entries[0].domid)
    if store.perms(path) != entries:
        store.set_perms(path, entries)
