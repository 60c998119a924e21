"""Open transactions across a live update of ours into ours (``-s -F``), in our own records.

:func:`carried` writes, after the nodes: the store's generation and the
generations a carried transaction may compare, of the nodes it read and of those
with saved versions (GENERATIONS; every other node gets 0, which any change
after the update moves past), the old versions open snapshots still read
(NODE_VERSION), each connection's next transaction id (TX_NEXT), and per
transaction its snapshot and the nodes it touched (TX_STATE), what it read with the
generations it saw (TX_READ) and its log of edits in order (TX_EDIT).
:func:`restore` puts them back into a server whose tree :func:`~.snapshot.load`
has just loaded: the same generations where they matter, the same saved
versions, and each transaction reopened at its snapshot with its log replayed
(which gives back its private view of the nodes it changed and what its commit
would add to quotas, exactly) and its read set. So a commit after the update
answers what it would have answered without it.

cxenstored 4.17 skips these types, as its own ``-F`` drops transactions. The
reader refuses what is not sound with a :class:`StreamError` naming the record:
a read that the restored snapshot does not show, a log that does not apply, a
generation from the future, a record of a transaction not given before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xenstore import paths
from xenstore.daemon.state import ServerState
from xenstore.errors import XenStoreError
from xenstore.migration.fields import our_perms, stream_perms
from xenstore.migration.records import (
    CARRIED,
    GenerationsData,
    NodeVersionData,
    Record,
    StreamError,
    TxEditData,
    TxNextData,
    TxReadData,
    TxStateData,
    record_type,
)
from xenstore.protocol.ops import ABS_PATH_MAX
from xenstore.store import Store
from xenstore.transactions import Transaction
from xenstore.transactions.conflict import EXISTS, PERMS, VALUE


def _raw(path: str) -> bytes:
    return path.encode("latin-1")


def carried(state: ServerState, stream_conn: Mapping[int, int]) -> list[Record]:
    """Our records for the open transactions of the connections ``stream_conn`` maps
    (ours -> the stream's conn_id); none when there is no such transaction."""
    store = state.store
    open_ = [(stream_conn[conn_id], conn, tx)
             for conn_id, conn in sorted(state.connections.items()) if conn_id in stream_conn
             for tx in conn.transactions.values()]
    if not open_:
        return []
    saved = store.versions.export()
    compared = {path for _, path, _ in saved}
    for _, _, tx in open_:
        compared.update(path for path, _ in tx.reads)
    gens = [(_raw(path), *found) for path in sorted(compared)
            if (found := store.generations(path)) is not None]
    records: list[Record] = [GenerationsData(store.generation, tuple(gens))]
    for changed, path, old in saved:
        if old is None:
            records.append(NodeVersionData(_raw(path), changed, exists=False))
        else:
            value, entries, node_gens, names = old
            records.append(NodeVersionData(_raw(path), changed, True, value,
                                           stream_perms(entries), node_gens,
                                           tuple(_raw(n) for n in names)))
    records.extend(TxNextData(stream_conn[conn_id], conn.next_tx_id)
                   for conn_id, conn in sorted(state.connections.items())
                   if conn_id in stream_conn and conn.next_tx_id != 1)
    for conn_ref, _, tx in open_:
        records.append(TxStateData(conn_ref, tx.tx_id, tx.snapshot,
                                   tuple(_raw(p) for p in sorted(tx.touched))))
        for (path, aspect), seen in tx.reads.items():
            assert isinstance(seen, int)  # a generation, or a bool for an existence
            records.append(TxReadData(conn_ref, tx.tx_id, _raw(path), aspect, int(seen)))
        for kind, path, arg, owner in tx.log:
            records.append(TxEditData(
                conn_ref, tx.tx_id, kind, _raw(path),
                arg if isinstance(arg, bytes) else b"",
                stream_perms(arg) if isinstance(arg, tuple) else (), owner))
    return records


class _Loader:
    """Puts one stream's carried records back, failing with the record's name."""

    def __init__(self, located: Sequence[tuple[int, Record]], state: ServerState,
                 ours: Mapping[int, int]) -> None:
        self.located = located
        self.state = state
        self.store: Store = state.store
        self.ours = ours
        self.index = 0
        self.generation = 0
        #: The last saved version's generation: they come oldest first.
        self.last_changed = 0
        self.txs: dict[tuple[int, int], Transaction | None] = {}
        self.edits: dict[tuple[int, int], list[tuple[int, TxEditData]]] = {}
        self.reads: dict[tuple[int, int], dict[tuple[str, str], object]] = {}

    def fail(self, problem: str) -> StreamError:
        offset, record = self.located[self.index]
        return StreamError(problem, offset, self.index, record_type(record))

    def path(self, raw: bytes) -> str:
        path = raw.decode("latin-1")
        try:
            good = path == paths.ROOT or paths.canonical(path, 0, ABS_PATH_MAX) == path
        except XenStoreError:
            good = False
        if not good:
            raise self.fail(f"path {raw!r} is not a canonical absolute path")
        return path

    def future(self, *gens: int) -> None:
        if max(gens) > self.generation:
            raise self.fail(f"generation {max(gens)} is after the store's {self.generation}")

    def run(self) -> int:
        mine = [i for i, (_, r) in enumerate(self.located) if isinstance(r, CARRIED)]
        if not mine:
            return 0
        self.index = mine[0]
        first = self.located[mine[0]][1]
        if not isinstance(first, GenerationsData):
            raise self.fail("carried transactions without GENERATIONS first")
        self.generations(first)
        for self.index in mine[1:]:
            record = self.located[self.index][1]
            if isinstance(record, GenerationsData):
                raise self.fail("a second GENERATIONS")
            if isinstance(record, NodeVersionData):
                self.version(record)
            elif isinstance(record, TxStateData):
                self.tx_state(record)
            elif isinstance(record, TxNextData):
                conn = self.state.connections.get(self.ours.get(record.conn_id, -1))
                if conn is not None:
                    conn.next_tx_id = record.next_tx_id
            else:
                assert isinstance(record, TxReadData | TxEditData)
                key = self.owner_of(record)
                if isinstance(record, TxReadData):
                    self.read(key, record)
                else:
                    self.edits[key].append((self.index, record))
        for key, tx in self.txs.items():
            if tx is not None:
                self.finish(key, tx)
        self.store.versions.prune(self.generation)
        problems = self.store.versions.problems(self.generation)
        if problems:
            self.index = mine[-1]
            raise self.fail(f"saved versions are not sound: {problems[0]}")
        return sum(tx is not None for tx in self.txs.values())

    def generations(self, record: GenerationsData) -> None:
        """The store's generation and the nodes' generations that matter; 0 elsewhere."""
        self.generation = record.generation
        store = self.store
        for path in store.walk(paths.ROOT):
            store.set_generations(path, 0, 0, 0)
        seen: set[str] = set()
        for raw, *gens in record.nodes:
            path = self.path(raw)
            if path in seen or not store.exists(path):
                raise self.fail(f"generations of {path}, " + (
                    "given twice" if path in seen else "which is not a node"))
            seen.add(path)
            self.future(*gens)
            store.set_generations(path, *gens)
        store.generation = record.generation

    def version(self, record: NodeVersionData) -> None:
        path = self.path(record.path)
        if not 0 < record.changed <= self.generation:
            raise self.fail(f"a version replaced at generation {record.changed}, not in "
                            f"1..{self.generation}")
        if record.changed < self.last_changed:
            raise self.fail(f"a version replaced at generation {record.changed} after one "
                            f"replaced at {self.last_changed} (oldest come first)")
        self.last_changed = record.changed
        if not record.exists:
            if record.value or record.perms or record.children or any(record.gens):
                raise self.fail("a missing node's version with contents")
            self.store.versions.keep(path, record.changed, None)
            return
        if max(record.gens) >= record.changed:
            raise self.fail(f"a version from generation {max(record.gens)} replaced at "
                            f"{record.changed}")
        if not record.perms:
            raise self.fail("a version without perms")
        names = [n.decode("latin-1") for n in record.children]
        if any(not n or "/" in n for n in names) or len(set(names)) != len(names):
            raise self.fail("a version's children are not distinct names")
        self.store.versions.keep(path, record.changed, (
            record.value, our_perms(record.perms), record.gens, names))

    def owner_of(self, record: TxReadData | TxEditData) -> tuple[int, int]:
        key = (record.conn_id, record.tx_id)
        if key not in self.txs:
            raise self.fail(f"transaction {record.tx_id} of connection {record.conn_id} "
                            "not given before")
        return key

    def tx_state(self, record: TxStateData) -> None:
        key = (record.conn_id, record.tx_id)
        if key in self.txs:
            raise self.fail(f"transaction {record.tx_id} of connection {record.conn_id} "
                            "given twice")
        if not record.tx_id:
            raise self.fail("transaction id 0 (no transaction)")
        self.future(record.snapshot)
        touched = {self.path(p) for p in record.touched}
        self.edits[key], self.reads[key] = [], {}
        conn = self.state.connections.get(self.ours.get(record.conn_id, -1))
        if conn is None:  # a connection not carried over: its transactions go with it
            self.txs[key] = None
            return
        tx = Transaction(self.store, record.tx_id, record.snapshot)
        tx.touched = touched
        conn.transactions[record.tx_id] = tx
        if not conn.privileged:
            opened = self.state.open_by_domain
            opened[conn.domid] = opened.get(conn.domid, 0) + 1
        self.txs[key] = tx

    def read(self, key: tuple[int, int], record: TxReadData) -> None:
        path = self.path(record.path)
        aspect = record.aspect
        if (path, aspect) in self.reads[key]:
            raise self.fail(f"the {aspect} of {path} read twice")
        self.reads[key][path, aspect] = (record.seen == 1 if aspect == EXISTS
                                         else record.seen)
        if aspect == EXISTS and record.seen > 1:
            raise self.fail(f"an existence read {record.seen}, neither 0 nor 1")

    def finish(self, key: tuple[int, int], tx: Transaction) -> None:
        """Check its reads against its snapshot, replay its log, give it its reads."""
        store, snapshot = self.store, tx.snapshot
        for (path, aspect), seen in self.reads[key].items():
            node = store.at(path, snapshot)
            if aspect == EXISTS:
                shown: object = node is not None
            elif node is None:
                shown = None
            else:
                shown = (node.vgen if aspect == VALUE else node.pgen if aspect == PERMS
                         else node.cgen)
            if shown != seen:
                self.index = next(i for i, (_, r) in enumerate(self.located)
                                  if isinstance(r, TxReadData) and (r.conn_id, r.tx_id) == key
                                  and r.path == _raw(path) and r.aspect == aspect)
                raise self.fail(f"its snapshot shows {shown} for the {aspect} of {path}, "
                                f"not {seen}")
        scratch = Transaction(store, tx.tx_id, snapshot)
        try:
            for index, edit in self.edits[key]:
                self.index = index
                self.replay(scratch, edit, check=True)
        finally:
            scratch.close()
        for _, edit in self.edits[key]:
            self.replay(tx, edit, check=False)
        tx.reads.update(self.reads[key])

    def replay(self, tx: Transaction, edit: TxEditData, check: bool) -> None:
        path = self.path(edit.path)
        kind = edit.kind
        if check:
            if path in paths.SPECIAL_PATHS or (kind == "rm" and path == paths.ROOT):
                raise self.fail(f"a {kind} of {path}")
            if kind in ("perms", "rm") and not tx.exists(path):
                raise self.fail(f"a {kind} of {path}, which it does not see")
            if (kind == "perms") != bool(edit.perms) or (kind != "write" and edit.value):
                raise self.fail(f"a {kind} with a value or perms it does not take")
        if kind == "write":
            tx.write(path, edit.value, edit.owner)
        elif kind == "mkdir":
            tx.mkdir(path, edit.owner)
        elif kind == "perms":
            tx.set_perms(path, our_perms(edit.perms))
        else:
            tx.remove(path, True)


def restore(located: Sequence[tuple[int, Record]], state: ServerState,
            ours: Mapping[int, int]) -> int:
    """Put the carried transactions back on the connections ``ours`` maps (the stream's
    conn_id -> ours), after :func:`~.snapshot.load`; how many. Those of connections not
    carried over are dropped. :class:`StreamError` names a record that is not sound."""
    return _Loader(located, state, ours).run()
