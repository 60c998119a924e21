"""A transaction: a snapshot, a private overlay, a read set, and a log to apply.

Starting is O(1): the transaction notes the store's generation and reads the
tree as it was then (:meth:`Store.at`); nothing is copied. Its own changes
live in a private overlay of :class:`Pending` entries, so it reads its own
writes and nobody else sees them.

Every time it consults the snapshot it records what it relied on: a node's
existence or absence, its value, its perms or its child list, with the
generation it saw. At commit, a transaction that changed nothing always
succeeds (it is serialised at its snapshot). One that changed something fails
with :class:`TransactionConflict` (an EAGAIN) only if something it *read* has
changed since its snapshot (:meth:`Store.generations` says); otherwise its log
of edits is applied to the current tree by :meth:`Store.apply` under one new
generation, which serialises it at its commit point. Blind writes, sibling
creations and removals of nodes whose children it never listed therefore
commit where cxenstored would refuse them.
"""

from __future__ import annotations

from collections.abc import Iterable

from xenstore import paths
from xenstore.changes import Change
from xenstore.perms import Perms
from xenstore.store import Edit, Node, Store, child_names, inherited_perms, node_bytes
from xenstore.transactions.conflict import (
    CHILDREN,
    EXISTS,
    PERMS,
    VALUE,
    Conflict,
    TransactionConflict,
)

#: Where each aspect's generation sits in :meth:`Store.generations`.
_GENERATION_OF = {VALUE: 0, PERMS: 1, CHILDREN: 2}


class Pending:
    """A transaction's own state of one node it changed."""

    __slots__ = ("added", "created", "dropped", "perms", "removed", "value")

    def __init__(self) -> None:
        #: It made this node: the snapshot's node there (if any) is invisible.
        self.created = False
        #: It removed this node (and so everything below).
        self.removed = False
        self.value: bytes | None = None
        self.perms: Perms | None = None
        #: Children it created here, in order; snapshot children it removed.
        self.added: dict[str, None] = {}
        self.dropped: set[str] = set()


class Transaction:
    """One open transaction of one connection."""

    __slots__ = ("_closed", "log", "pending", "reads", "snapshot", "store", "touched",
                 "tx_id", "usage")

    def __init__(self, store: Store, tx_id: int, snapshot: int | None = None) -> None:
        """``snapshot``: the generation it reads at, when not now (one carried over a
        live update, whose reads, overlay, log and usage are then filled in)."""
        self.store = store
        self.tx_id = tx_id
        self.snapshot = store.open_snapshot(snapshot)
        self.pending: dict[str, Pending] = {}
        #: (path, aspect) -> what the snapshot showed: a bool for existence,
        #: else the generation that last changed that aspect.
        self.reads: dict[tuple[str, str], object] = {}
        #: Its changes in order, applied to the live tree at commit (:meth:`Store.apply`).
        self.log: list[Edit] = []
        #: Distinct nodes read or changed: what the transaction-nodes quota limits.
        self.touched: set[str] = set()
        #: Per owner, the nodes and bytes its commit would add to what the store
        #: accounts (negative: free): what :meth:`pending_usage` answers.
        self.usage: dict[int, list[int]] = {}
        self._closed = False

    # -- the snapshot, recorded ---------------------------------------------------

    def _base(self, path: str, aspect: str) -> Node:
        node = self.store.at(path, self.snapshot)
        assert node is not None, path
        if (path, aspect) not in self.reads:
            self.touched.add(path)
            gen = node.vgen if aspect == VALUE else node.pgen if aspect == PERMS else node.cgen
            self.reads[path, aspect] = gen
        return node

    def _shadowed(self, path: str) -> bool:
        """Whether the snapshot below some ancestor is hidden by this transaction."""
        pending = self.pending
        if not pending:
            return False
        while path != paths.ROOT:
            cut = path.rfind("/")
            path = path[:cut] if cut > 0 else paths.ROOT
            entry = pending.get(path)
            if entry is not None and (entry.created or entry.removed):
                return True
        return False

    # -- reads (the View protocol) ---------------------------------------------------

    def exists(self, path: str) -> bool:
        entry = self.pending.get(path)
        if entry is not None and (entry.created or entry.removed):
            return entry.created
        if entry is None and self._shadowed(path):
            return False
        key = (path, EXISTS)
        if key in self.reads:
            return self.reads[key] is True
        found = self.store.at(path, self.snapshot) is not None
        self.reads[key] = found
        self.touched.add(path)
        return found

    def get(self, path: str) -> bytes | None:
        """The value, or None where there is no node: :meth:`exists` then :meth:`value`
        in one look at the snapshot (READ's way: it records the same reads)."""
        if self.pending:  # its own changes may show or hide the node: the general way
            return self.value(path) if self.exists(path) else None
        node = self.store.at(path, self.snapshot)
        reads = self.reads
        if (path, EXISTS) not in reads:
            reads[path, EXISTS] = node is not None
            self.touched.add(path)
        if node is None:
            return None
        if (path, VALUE) not in reads:
            reads[path, VALUE] = node.vgen
        return node.value

    def value(self, path: str) -> bytes:
        entry = self.pending.get(path)
        if entry is not None and entry.value is not None:
            return entry.value
        return self._base(path, VALUE).value

    def perms(self, path: str) -> Perms:
        entry = self.pending.get(path)
        if entry is not None and entry.perms is not None:
            return entry.perms
        return self._base(path, PERMS).perms

    def children(self, path: str) -> Iterable[str]:
        entry = self.pending.get(path)
        if entry is not None and entry.created:
            return list(entry.added)
        names = child_names(path, self._base(path, CHILDREN).children)
        if entry is None:
            return list(names)
        return [n for n in names if n not in entry.dropped and n not in entry.added] + list(
            entry.added
        )

    def listing(self, path: str) -> bytes:
        names = list(self.children(path))
        return "\0".join(names).encode() + b"\0" if names else b""

    def gencnt(self, path: str) -> int:
        if path in self.pending:
            # Its own changes: a number that moves whenever it changes anything.
            return (1 << 62) + len(self.log)
        return self._base(path, CHILDREN).generation

    # -- accounting (looks without recording reads: a quota is not a read) -----------

    def pending_usage(self, domid: int) -> tuple[int, int]:
        """The nodes and bytes its commit would add to what domain ``domid`` owns
        (negative when it frees more than it makes), so that quotas count them."""
        delta = self.usage.get(domid)
        return (0, 0) if delta is None else (delta[0], delta[1])

    def _peek(self, path: str) -> tuple[bytes, Perms]:
        """The value and perms of an existing node as this transaction sees them."""
        entry = self.pending.get(path)
        value = entry.value if entry is not None else None
        perms = entry.perms if entry is not None else None
        if value is None or perms is None:
            node = self.store.at(path, self.snapshot)
            assert node is not None, path
            value = node.value if value is None else value
            perms = node.perms if perms is None else perms
        return value, perms

    def _peek_children(self, path: str) -> list[str]:
        entry = self.pending.get(path)
        if entry is not None and entry.created:
            return list(entry.added)
        node = self.store.at(path, self.snapshot)
        names = child_names(path, node.children) if node is not None else []
        if entry is None:
            return names
        return [n for n in names if n not in entry.dropped and n not in entry.added] + list(
            entry.added)

    def _count(self, path: str, value: bytes, perms: Perms, sign: int) -> None:
        delta = self.usage.setdefault(perms[0].domid, [0, 0])
        delta[0] += sign
        delta[1] += sign * node_bytes(path, value, perms)

    # -- changes ----------------------------------------------------------------------

    def _entry(self, path: str) -> Pending:
        entry = self.pending.get(path)
        if entry is None:
            entry = self.pending[path] = Pending()
            self.touched.add(path)
        return entry

    def write(self, path: str, value: bytes, owner: int | None) -> Change | None:
        if self.exists(path):
            old, perms = self._peek(path)
            # node_bytes counts the value byte for byte: the rest of it stays.
            self.usage.setdefault(perms[0].domid, [0, 0])[1] += len(value) - len(old)
            self._entry(path).value = value
        else:
            self._create(path, value, owner)
        self.log.append(("write", path, value, owner))
        return None

    def mkdir(self, path: str, owner: int | None) -> Change | None:
        if not self.exists(path):
            self._create(path, b"", owner)
            self.log.append(("mkdir", path, None, owner))
        return None

    def _create(self, path: str, value: bytes, owner: int | None) -> None:
        missing = [path]
        top = paths.parent(path)
        while not self.exists(top):
            missing.append(top)
            top = paths.parent(top)
        missing.reverse()
        perms = inherited_perms(self.perms(top), owner)
        self._link(top, paths.basename(missing[0]))
        for index, new in enumerate(missing):
            entry = Pending()
            entry.created = True
            entry.perms = perms
            entry.value = value if new == path else b""
            if new != path:
                entry.added[paths.basename(missing[index + 1])] = None
            self.pending[new] = entry
            self.touched.add(new)
            self._count(new, entry.value, perms, 1)

    def _link(self, parent: str, name: str) -> None:
        """Add a child it created to an existing node's list (at the end, as cxenstored)."""
        self._entry(parent).added[name] = None

    def set_perms(self, path: str, perms: Perms) -> Change | None:
        value, old = self._peek(path)
        self._count(path, value, old, -1)
        self._count(path, value, perms, 1)
        self._entry(path).perms = perms
        self.log.append(("perms", path, perms, None))
        return None

    def remove(self, path: str, detail: bool) -> Change | None:
        stack = [path]
        while stack:
            top = stack.pop()
            self._count(top, *self._peek(top), -1)
            stack.extend(top + "/" + name for name in self._peek_children(top))
        prefix = path + "/"
        for below in [p for p in self.pending if p.startswith(prefix)]:
            del self.pending[below]
        entry = self.pending[path] = Pending()
        entry.removed = True
        self.touched.add(path)
        above = self._entry(paths.parent(path))
        name = paths.basename(path)
        if name in above.added:
            del above.added[name]
        above.dropped.add(name)
        self.log.append(("rm", path, None, None))
        return None

    # -- ending ---------------------------------------------------------------------------

    def conflicts(self) -> list[Conflict]:
        """What it read that a commit after its snapshot has changed."""
        generations = self.store.generations
        found = []
        last = gens = None
        for (path, aspect), seen in self.reads.items():
            if path is not last:  # the aspects of a path are mostly read together
                last, gens = path, generations(path)
            if aspect == EXISTS:
                if (gens is not None) != seen:
                    found.append(Conflict(path, aspect, gens[0] if gens is not None else 0))
                continue
            if gens is None:
                found.append(Conflict(path, aspect, 0))
                continue
            now = gens[_GENERATION_OF[aspect]]
            if now != seen:
                found.append(Conflict(path, aspect, now))
        return found

    def commit(self, detail: bool = True) -> list[Change]:
        """Apply its changes to the live tree as one commit, or raise
        :class:`TransactionConflict` (an EAGAIN); the snapshot closes either way.

        Returns the changes to fire, one per changed node, in the order the
        nodes were first changed (each with its last change's details).
        """
        try:
            if not self.log:
                return []
            conflicts = self.conflicts()
            if conflicts:
                raise TransactionConflict(self.tx_id, conflicts)
            # Its own snapshot is no longer needed: closed first, so the commit
            # does not save old versions for it (a copy of a big parent's list).
            self.close()
            return self.store.apply(self.log, detail)
        finally:
            self.close()

    def close(self) -> None:
        """End it without committing (abort, or its connection went away)."""
        if not self._closed:
            self._closed = True
            self.store.close_snapshot(self.snapshot)
