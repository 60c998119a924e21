"""The tree: nodes with values, permissions, ordered children, and their generations.

Each node keeps its children in an insertion-ordered ``dict`` from name to node
(O(1) add and remove, listed in the order cxenstored lists them); the names are
interned, since the same few recur under every domain. A node does not hold its
path. The nodes that have children (a quarter of a Xen host's store) are also
indexed by path in one flat ``dict``, :attr:`Store.dirs`, so a lookup whatever the
depth is two: the parent there, then the name in the parent's children. Leaves,
most of the store, cost no path string and no slot of the flat dict (issue 17:
memory at 10,000 domains).

Every committed change (a request outside a transaction, or a whole
transaction's commit) gets the next value of the store's ``generation``, which
only the store assigns. A node remembers, per aspect, the generation that last
changed it (see :class:`~xenstore.store.node.Node`); transactions compare these
to decide conflicts.

The seam with transactions is narrow and named: a transaction reads the tree as
it was at its snapshot through :meth:`Store.at`, asks the current generations of
what it read through :meth:`Store.generations`, and commits by handing its log
of edits to :meth:`Store.apply`. Both answer :meth:`View.pending_usage`, so the
quota checks never ask which kind of view they hold.

The store knows nothing of callers or permission checks: the core decides who
may do what, then asks the store (or a transaction's view of it) to do it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from xenstore import paths
from xenstore.changes import Change
from xenstore.perms import Perms, owner_only
from xenstore.store import sound
from xenstore.store.index import Nodes
from xenstore.store.node import (
    SHARED_VALUE_MAX,
    Node,
    add_child,
    child_names,
    drop_child,
    inherited_perms,
    name_of,
    node_bytes,
    postorder,
    preorder,
    shared_value,
)
from xenstore.store.versions import Versions

#: tuple.__new__ skips the namedtuple's Python-level __new__: a Change per write.
_new = tuple.__new__

#: One change of a transaction's log, replayed by :meth:`Store.apply`:
#: ``(kind, path, value or perms or None, owner)``, the kind one of
#: ``"write"`` (a value), ``"mkdir"``, ``"perms"`` (perms) or ``"rm"``.
Edit = tuple[str, str, "bytes | Perms | None", "int | None"]

#: How many DIRECTORY answers the store keeps (each until its list changes)
#: before it starts again: the directories listed lately, not every one ever.
LISTINGS_KEPT = 4096


class View(Protocol):
    """What the core reads and changes: the store itself, or a transaction over it.

    Reads name the aspect they consult, so that a transaction records exactly
    what it depended on. Changes return the :class:`Change` to fire now, or
    ``None`` when they only take effect later (inside a transaction).
    """

    def exists(self, path: str) -> bool: ...

    def get(self, path: str) -> bytes | None:
        """The value, or ``None`` where there is no node (:meth:`exists`, then
        :meth:`value`, in one call: a READ)."""
        ...

    def value(self, path: str) -> bytes: ...

    def perms(self, path: str) -> Perms: ...

    def children(self, path: str) -> Iterable[str]: ...

    def listing(self, path: str) -> bytes: ...

    def gencnt(self, path: str) -> int: ...

    def pending_usage(self, domid: int) -> tuple[int, int]:
        """The nodes and bytes (:func:`node_bytes`) this view would add to what
        domain ``domid`` owns once it commits: (0, 0) for the store itself."""
        ...

    def write(self, path: str, value: bytes, owner: int | None) -> Change | None: ...

    def mkdir(self, path: str, owner: int | None) -> Change | None: ...

    def set_perms(self, path: str, perms: Perms) -> Change | None: ...

    def remove(self, path: str, detail: bool) -> Change | None: ...


class Store:
    """The committed tree, and the old versions open snapshots still need."""

    def __init__(self) -> None:
        self.generation = 0
        #: The root and every node with children, by path (see the module's doc).
        self.dirs: dict[str, Node] = {"/": Node(b"", owner_only(0), 0)}
        #: How many nodes the tree holds.
        self.count = 1
        #: Every node by path, looked up through :attr:`dirs` (read-only).
        self.nodes = Nodes(self)
        #: Short values shared between nodes (:func:`shared_value`).
        self.values: dict[bytes, bytes] = {}
        #: DIRECTORY's answers by path, each kept until its child list changes.
        self.listings: dict[str, bytes] = {}
        self.versions = Versions()
        #: Nodes per owner domain, and the bytes they hold (:func:`node_bytes`):
        #: what the nodes and memory quotas read.
        self.owned: dict[int, int] = {0: 1}
        self.owned_bytes: dict[int, int] = {0: node_bytes("/", b"", owner_only(0))}
        # The initial tree of cxenstored: /tool/xenstored.
        self.write("/tool/xenstored", b"", None)

    def __len__(self) -> int:
        return self.count

    def node(self, path: str) -> Node | None:
        """The node at ``path`` now, or ``None``: its parent in :attr:`dirs`, then
        its name in the parent's children (the root: in :attr:`dirs` itself)."""
        head, _, name = path.rpartition("/")
        try:  # a hit costs no test: READ's path
            return self.dirs[head or "/"].children[name]  # type: ignore[index]
        except (KeyError, TypeError):  # TypeError: the root without children
            return self.dirs.get(path) if path == "/" else None

    def _node(self, path: str) -> Node:
        node = self.node(path)
        if node is None:
            raise KeyError(path)
        return node

    # -- snapshots: what a transaction reads -------------------------------------

    def open_snapshot(self, at: int | None = None) -> int:
        """Start reading at the current generation: O(1), whatever the tree's size
        (``at``: an older one, for a transaction carried over a live update)."""
        return self.versions.open(self.generation if at is None else at)

    def close_snapshot(self, snapshot: int) -> None:
        self.versions.close(snapshot, self.generation)

    @property
    def open_snapshots(self) -> int:
        return len(self.versions.snapshots)

    def snapshots(self) -> list[int]:
        """The generations of the open snapshots, oldest first (one per transaction)."""
        return list(self.versions.snapshots)

    @property
    def history(self) -> dict[str, list[tuple[int, Node | None]]]:
        """The saved versions by path (read-only: for inspection and tests)."""
        return self.versions.history

    def at(self, path: str, snapshot: int) -> Node | None:
        """The node at ``path`` as it was at generation ``snapshot`` (read-only): the
        oldest version saved after the snapshot, else the current node."""
        saved = self.versions.history.get(path)  # inline: every transaction read comes here
        if saved is not None:
            for gen, old in saved:
                if gen > snapshot:
                    return old
        return self.node(path)

    def generations(self, path: str) -> tuple[int, int, int] | None:
        """The generations that last changed the node's value (or made it), perms
        and child list, now; ``None`` when there is no node at ``path``."""
        node = self.node(path)
        return None if node is None else (node.vgen, node.pgen, node.cgen)

    def set_generations(self, path: str, vgen: int, pgen: int, cgen: int) -> None:
        """Give a node the generations it had in the daemon a live update came from."""
        node = self.nodes[path]
        node.vgen, node.pgen, node.cgen = vgen, pgen, cgen

    # -- reads (the View protocol, on the current tree) ------------------------

    def exists(self, path: str) -> bool:
        # self.node(path) is not None, inline: every request asks this first.
        head, _, name = path.rpartition("/")
        above = self.dirs.get(head or "/")
        if above is None:
            return False
        children = above.children
        return bool(children and name in children) or len(path) == 1

    def get(self, path: str) -> bytes | None:
        node = self.node(path)
        return None if node is None else node.value

    def value(self, path: str) -> bytes:
        return self._node(path).value

    def perms(self, path: str) -> Perms:
        return self._node(path).perms

    def children(self, path: str) -> Iterable[str]:
        return child_names(path, self._node(path).children)

    def listing(self, path: str) -> bytes:
        """The children as DIRECTORY sends them (``name\0`` each), made once per
        change of the list while the table of them holds it."""
        listing = self.listings.get(path)
        if listing is None:
            children = self._node(path).children
            if not children:
                return b""  # not kept: a leaf removed and made again as a directory
            listing = "\0".join(children).encode() + b"\0"
            if len(self.listings) >= LISTINGS_KEPT:
                self.listings.clear()
            self.listings[path] = listing
        return listing

    def gencnt(self, path: str) -> int:
        return self._node(path).generation

    def pending_usage(self, domid: int) -> tuple[int, int]:
        """Nothing pending: the store's changes are committed as they are made."""
        return 0, 0

    # -- changes: each is a commit of its own --------------------------------------

    def write(self, path: str, value: bytes, owner: int | None) -> Change:
        """Set a value, creating the node and missing ancestors (perms inherited)."""
        self.generation += 1
        return self._write(path, value, owner, self.generation)

    def mkdir(self, path: str, owner: int | None) -> Change | None:
        """Create the node (and missing ancestors) if it does not exist."""
        if self.node(path) is not None:
            return None
        self.generation += 1
        return self._mkdir(path, owner, self.generation)

    def set_perms(self, path: str, perms: Perms) -> Change:
        self.generation += 1
        return self._set_perms(path, perms, self.generation)

    def remove(self, path: str, detail: bool) -> Change:
        """Remove ``path`` and its subtree.

        Nodes go children first, in child order, as cxenstored deletes them
        (and so orders their events). With ``detail``, the change lists every
        removed descendant with the perms that judge who hears of it.
        """
        self.generation += 1
        return self._remove(path, detail, self.generation)

    def apply(self, log: Sequence[Edit], detail: bool = True) -> list[Change]:
        """Make a transaction's edits, in order, as one commit under one new generation.

        The caller has checked that they still apply (nothing the transaction read
        has changed). Returns the changes to fire, one per changed node, in the
        order the nodes were first changed (each with its last change's details).
        """
        self.generation += 1
        gen = self.generation
        changes: dict[str, Change] = {}
        for kind, path, arg, owner in log:
            if kind == "write":
                assert isinstance(arg, bytes)
                change: Change | None = self._write(path, arg, owner, gen)
            elif kind == "mkdir":
                change = self._mkdir(path, owner, gen) if self.node(path) is None else None
            elif kind == "perms":
                assert isinstance(arg, tuple)
                change = self._set_perms(path, arg, gen)
            else:
                change = self._remove(path, detail, gen)
            if change is not None:
                # A dict keeps a key's first position: the order of first change.
                changes[change.path] = change
        return list(changes.values())

    def _write(self, path: str, value: bytes, owner: int | None, gen: int) -> Change:
        head, _, name = path.rpartition("/")
        above = self.dirs.get(head or "/")
        children = above.children if above is not None else None
        node = children.get(name) if children else None
        if node is None:
            if path == paths.ROOT:
                above = node = self.dirs[path]
            else:
                node = self._create(path, value, owner, gen)
                return _new(Change, (path, (node.perms, self._node(paths.parent(path)).perms), ()))
        assert above is not None
        self.versions.save(path, node, gen)
        # node_bytes counts the value byte for byte: the rest of it stays.
        self._account(node.perms[0].domid, 0, len(value) - len(node.value))
        # shared_value, its usual case inline: a short value the table knows.
        node.value = ((len(value) <= SHARED_VALUE_MAX and self.values.get(value))
                      or shared_value(self.values, value))
        node.vgen = gen
        return _new(Change, (path, (node.perms, above.perms), ()))

    def _mkdir(self, path: str, owner: int | None, gen: int) -> Change:
        node = self._create(path, b"", owner, gen)
        return _new(Change, (path, (node.perms, self._node(paths.parent(path)).perms), ()))

    def _create(self, path: str, value: bytes, owner: int | None, gen: int) -> Node:
        missing = [path]
        top = paths.parent(path)
        above = self.node(top)
        while above is None:
            missing.append(top)
            top = paths.parent(top)
            above = self.node(top)
        missing.reverse()
        save = self.versions.save
        save(top, above, gen)
        if above.children is None:
            self.dirs[top] = above
        self.listings.pop(top, None)
        above.cgen = gen
        perms = inherited_perms(above.perms, owner)
        held = node_bytes(path, value, perms)
        for new in missing[:-1]:
            held += node_bytes(new, b"", perms)
        self._account(perms[0].domid, len(missing), held)
        self.count += len(missing)
        node = above
        for new in missing:
            save(new, None, gen)
            last = new == path
            made = Node(shared_value(self.values, value) if last else b"", perms, gen)
            add_child(node, name_of(new), made)
            if not last:
                self.dirs[new] = made  # its child comes next
            node = made
        return node

    def _set_perms(self, path: str, perms: Perms, gen: int) -> Change:
        node = self._node(path)
        self.versions.save(path, node, gen)
        old = node.perms
        self._account(old[0].domid, -1, -node_bytes(path, node.value, old))
        self._account(perms[0].domid, 1, node_bytes(path, node.value, perms))
        node.perms = perms
        node.pgen = gen
        return Change(path, (old, perms, self._node(paths.parent(path)).perms))

    def _remove(self, path: str, detail: bool, gen: int) -> Change:
        dirs = self.dirs
        above_path = paths.parent(path)
        above = dirs[above_path]
        kids = above.children  # narrowed here, not above.children: drop_child changes it
        assert kids is not None
        name = paths.basename(path)
        removed = postorder(path, kids[name])
        entries: tuple[tuple[str, tuple[Perms, ...]], ...] = ()
        if detail and len(removed) > 1:
            node_of = dict(removed)
            entries = tuple(
                (gone, (node.perms, node_of[paths.parent(gone)].perms))
                for gone, node in removed[:-1]
            )
        versions = self.versions
        if versions.snapshots:
            for gone, node in removed:
                versions.save(gone, node, gen, copy=False)
        # One account update per owner, not per node: a domain's teardown removes
        # tens of thousands of nodes of one or two owners.
        counts: dict[int, int] = {}
        sizes: dict[int, int] = {}
        listings = self.listings
        for gone, node in removed:
            owner = node.perms[0].domid
            counts[owner] = counts.get(owner, 0) - 1
            sizes[owner] = sizes.get(owner, 0) - node_bytes(gone, node.value, node.perms)
            if node.children:
                del dirs[gone]
                listings.pop(gone, None)
        for owner, count in counts.items():
            self._account(owner, count, sizes[owner])
        self.count -= len(removed)
        versions.save(above_path, above, gen)
        drop_child(above, name)
        if not above.children and above_path != paths.ROOT:
            del dirs[above_path]
        listings.pop(above_path, None)
        above.cgen = gen
        return Change(path, (removed[-1][1].perms, above.perms), entries)

    def _account(self, owner: int, nodes: int, held: int) -> None:
        left = self.owned.get(owner, 0) + nodes
        if left:
            self.owned[owner] = left
            self.owned_bytes[owner] = self.owned_bytes.get(owner, 0) + held
        else:
            self.owned.pop(owner, None)
            self.owned_bytes.pop(owner, None)

    # -- inspection --------------------------------------------------------------

    def walk(self, path: str) -> Iterator[str]:
        """``path`` and every path below it, parents before children."""
        for below, _ in preorder(path, self._node(path)):
            yield below

    def items(self) -> Iterator[tuple[str, Node]]:
        """Every node with its path, parents before children, in child order."""
        return preorder(paths.ROOT, self.dirs[paths.ROOT])

    def check(self) -> list[str]:
        """The tree's invariants, as a list of violations (empty when sound): see
        :func:`~xenstore.store.sound.check`."""
        return sound.check(self)

    def repair(self) -> list[str]:
        """Make the tree sound again after a bug interrupted a change half-way; what
        was repaired: see :func:`~xenstore.store.sound.repair`."""
        return sound.repair(self)
