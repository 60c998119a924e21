"""The tree: nodes with values, permissions, ordered children, and their versions.

Nodes live in one flat ``dict`` keyed by canonical path, so a READ is one
lookup whatever the depth; each node also keeps its children in an
insertion-ordered ``dict`` (O(1) add and remove, listed in the order cxenstored
lists them). The child dict's keys are the children's full paths, the very
string objects that key the flat dict: a name is cut from its path only when a
listing is made, so no node pays for its name twice.

Every committed change (a request outside a transaction, or a whole
transaction's commit) gets the next value of the store's ``generation``. A node
remembers, per aspect, the generation that last changed it: ``vgen`` (value,
and the node's existence), ``pgen`` (perms) and ``cgen`` (child list).
Transactions compare these to decide conflicts.

Versions, for transaction snapshots: a transaction reads the tree as it was at
its start, without copying anything when it starts. While a snapshot is open,
the first change to a node after the newest open snapshot saves the node's
previous version (or "missing") in ``history``; reading at snapshot S takes the
oldest saved version newer than S, else the current node. Saved versions are
dropped once no open snapshot is older than them, so with no transaction open
the store keeps nothing but the current tree.

The store knows nothing of callers or permission checks: the core decides who
may do what, then asks the store (or a transaction's view of it) to do it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from sortedcontainers import SortedList

from xenstore import paths
from xenstore.changes import Change
from xenstore.perms import Perm, Perms, intern, owner_only


class Node:
    """One node. ``children`` maps the children's paths to ``None`` (an ordered set),
    or is ``None`` for a node without children: most nodes are leaves, and an empty
    dict costs 64 bytes each."""

    __slots__ = ("cgen", "children", "listing", "perms", "pgen", "value", "vgen")

    def __init__(
        self,
        value: bytes,
        perms: Perms,
        gen: int,
        children: dict[str, None] | None = None,
    ) -> None:
        self.value = value
        self.perms = perms
        self.vgen = self.pgen = self.cgen = gen
        self.children: dict[str, None] | None = children or None
        #: The children as DIRECTORY sends them, kept until the list changes.
        self.listing: bytes | None = None

    @property
    def generation(self) -> int:
        """The last change of any kind: what DIRECTORY_PART reports."""
        return max(self.vgen, self.pgen, self.cgen)

    def copy(self) -> Node:
        twin = Node(self.value, self.perms, self.vgen,
                    dict(self.children) if self.children else None)
        twin.pgen, twin.cgen = self.pgen, self.cgen
        return twin

    def __repr__(self) -> str:
        return (
            f"Node({self.value!r}, {self.perms}, v{self.vgen} p{self.pgen} c{self.cgen}, "
            f"{list(self.children or ())})"
        )


def postorder(path: str, lookup: Callable[[str], Node]) -> list[tuple[str, Node]]:
    """The subtree at ``path`` (nodes from ``lookup``), children before parents."""
    out: list[tuple[str, Node]] = []
    stack: list[tuple[str, bool]] = [(path, False)]
    while stack:
        top, expanded = stack.pop()
        node = lookup(top)
        if expanded or not node.children:
            out.append((top, node))
        else:
            stack.append((top, True))
            stack.extend((below, False) for below in reversed(node.children))
    return out


def names_of(path: str, children: dict[str, None] | None) -> list[str]:
    """The children's names, in order, from a child dict keyed by their paths."""
    if not children:
        return []
    cut = 1 if path == paths.ROOT else len(path) + 1
    return [below[cut:] for below in children]


def inherited_perms(parent: Perms, owner: int | None) -> Perms:
    """Perms of a node created under ``parent``: a copy, owned by ``owner`` if given.

    An unprivileged creator owns what it creates (as cxenstored); a privileged
    creator keeps the parent's owner.
    """
    if owner is None or parent[0].domid == owner:
        return parent
    return intern((Perm(owner, parent[0].access), *parent[1:]))


class View(Protocol):
    """What the core reads and changes: the store itself, or a transaction over it.

    Reads name the aspect they consult, so that a transaction records exactly
    what it depended on. Changes return the :class:`Change` to fire now, or
    ``None`` when they only take effect later (inside a transaction).
    """

    def exists(self, path: str) -> bool: ...

    def value(self, path: str) -> bytes: ...

    def perms(self, path: str) -> Perms: ...

    def children(self, path: str) -> Iterable[str]: ...

    def listing(self, path: str) -> bytes: ...

    def gencnt(self, path: str) -> int: ...

    def write(self, path: str, value: bytes, owner: int | None) -> Change | None: ...

    def mkdir(self, path: str, owner: int | None) -> Change | None: ...

    def set_perms(self, path: str, perms: Perms) -> Change | None: ...

    def remove(self, path: str, detail: bool) -> Change | None: ...


class Store:
    """The committed tree, and the old versions open snapshots still need."""

    def __init__(self) -> None:
        self.generation = 0
        self.nodes: dict[str, Node] = {"/": Node(b"", owner_only(0), 0)}
        #: path -> [(generation of a change, the version before it or None)], oldest first.
        self.history: dict[str, list[tuple[int, Node | None]]] = {}
        self._history_order: deque[tuple[int, str]] = deque()
        #: Generations of the open snapshots (a multiset).
        self._snapshots = SortedList()
        #: Nodes per owner domain, and the bytes they hold (path, value, 8 per
        #: permission entry, as cxenstored sizes them): the nodes and memory quotas.
        self.owned: dict[int, int] = {0: 1}
        self.owned_bytes: dict[int, int] = {0: 1 + 8}
        # The initial tree of cxenstored: /tool/xenstored.
        self.write("/tool/xenstored", b"", None)

    def __len__(self) -> int:
        return len(self.nodes)

    # -- snapshots -------------------------------------------------------------

    def open_snapshot(self) -> int:
        """Start reading at the current generation: O(1), whatever the tree's size."""
        self._snapshots.add(self.generation)
        return self.generation

    def close_snapshot(self, snapshot: int) -> None:
        self._snapshots.remove(snapshot)
        self._prune()

    @property
    def open_snapshots(self) -> int:
        return len(self._snapshots)

    def at(self, path: str, snapshot: int) -> Node | None:
        """The node at ``path`` as it was at generation ``snapshot``."""
        versions = self.history.get(path)
        if versions is not None:
            for gen, old in versions:
                if gen > snapshot:
                    return old
        return self.nodes.get(path)

    def _save(self, path: str, node: Node | None, gen: int, copy: bool = True) -> None:
        """Keep the version of ``path`` before change ``gen`` if a snapshot needs it.

        ``copy=False`` when the node is about to leave the tree for good.
        """
        snapshots = self._snapshots
        if not snapshots:
            return
        versions = self.history.get(path)
        if versions is not None and versions[-1][0] > snapshots[-1]:
            return  # changed since the newest snapshot: every snapshot is covered
        saved = node.copy() if node is not None and copy else node
        if versions is None:
            self.history[path] = [(gen, saved)]
        else:
            versions.append((gen, saved))
        self._history_order.append((gen, path))

    def _prune(self) -> None:
        oldest = self._snapshots[0] if self._snapshots else self.generation
        order = self._history_order
        history = self.history
        while order and order[0][0] <= oldest:
            _, path = order.popleft()
            versions = history[path]
            del versions[0]
            if not versions:
                del history[path]

    # -- reads (the View protocol, on the current tree) ------------------------

    def exists(self, path: str) -> bool:
        return path in self.nodes

    def value(self, path: str) -> bytes:
        return self.nodes[path].value

    def perms(self, path: str) -> Perms:
        return self.nodes[path].perms

    def children(self, path: str) -> Iterable[str]:
        return names_of(path, self.nodes[path].children)

    def listing(self, path: str) -> bytes:
        """The children as DIRECTORY sends them (``name\0`` each), computed once per change."""
        node = self.nodes[path]
        listing = node.listing
        if listing is None:
            names = names_of(path, node.children)
            listing = node.listing = "\0".join(names).encode() + b"\0" if names else b""
        return listing

    def gencnt(self, path: str) -> int:
        return self.nodes[path].generation

    # -- changes ----------------------------------------------------------------

    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def write(
        self, path: str, value: bytes, owner: int | None, gen: int | None = None
    ) -> Change:
        """Set a value, creating the node and missing ancestors (perms inherited)."""
        gen = gen if gen is not None else self.next_generation()
        node = self.nodes.get(path)
        if node is None:
            node = self._create(path, value, owner, gen)
        else:
            self._save(path, node, gen)
            self._account(node.perms[0].domid, 0, len(value) - len(node.value))
            node.value = value
            node.vgen = gen
        return Change(path, (node.perms, self.nodes[paths.parent(path)].perms))

    def mkdir(self, path: str, owner: int | None, gen: int | None = None) -> Change | None:
        """Create the node (and missing ancestors) if it does not exist."""
        if path in self.nodes:
            return None
        gen = gen if gen is not None else self.next_generation()
        node = self._create(path, b"", owner, gen)
        return Change(path, (node.perms, self.nodes[paths.parent(path)].perms))

    def _create(self, path: str, value: bytes, owner: int | None, gen: int) -> Node:
        nodes = self.nodes
        missing = [path]
        top = paths.parent(path)
        while top not in nodes:
            missing.append(top)
            top = paths.parent(top)
        missing.reverse()
        above = nodes[top]
        self._save(top, above, gen)
        if above.children is None:
            above.children = {}
        above.children[missing[0]] = None
        above.listing = None
        above.cgen = gen
        perms = inherited_perms(above.perms, owner)
        held = sum(len(new) for new in missing) + len(value) + 8 * len(perms) * len(missing)
        self._account(perms[0].domid, len(missing), held)
        node = above
        for index, new in enumerate(missing):
            self._save(new, None, gen)
            last = new == path
            children = None if last else {missing[index + 1]: None}
            node = Node(value if last else b"", perms, gen, children)
            nodes[new] = node
        return node

    def set_perms(self, path: str, perms: Perms, gen: int | None = None) -> Change:
        gen = gen if gen is not None else self.next_generation()
        node = self.nodes[path]
        self._save(path, node, gen)
        old = node.perms
        base = len(path) + len(node.value)
        self._account(old[0].domid, -1, -(base + 8 * len(old)))
        self._account(perms[0].domid, 1, base + 8 * len(perms))
        node.perms = perms
        node.pgen = gen
        return Change(path, (old, perms, self.nodes[paths.parent(path)].perms))

    def remove(self, path: str, detail: bool, gen: int | None = None) -> Change:
        """Remove ``path`` and its subtree.

        Nodes go children first, in child order, as cxenstored deletes them
        (and so orders their events). With ``detail``, the change lists every
        removed descendant with the perms that judge who hears of it.
        """
        gen = gen if gen is not None else self.next_generation()
        nodes = self.nodes
        above_path = paths.parent(path)
        above = nodes[above_path]
        removed = postorder(path, nodes.__getitem__)
        entries: tuple[tuple[str, tuple[Perms, ...]], ...] = ()
        if detail and len(removed) > 1:
            node_of = dict(removed)
            entries = tuple(
                (gone, (node.perms, node_of[paths.parent(gone)].perms))
                for gone, node in removed[:-1]
            )
        if self._snapshots:
            for gone, node in removed:
                self._save(gone, node, gen, copy=False)
        # One account update per owner, not per node: a domain's teardown removes
        # tens of thousands of nodes of one or two owners.
        counts: dict[int, int] = {}
        sizes: dict[int, int] = {}
        for gone, node in removed:
            owner = node.perms[0].domid
            counts[owner] = counts.get(owner, 0) - 1
            sizes[owner] = sizes.get(owner, 0) - (len(gone) + len(node.value) + 8 * len(node.perms))
            del nodes[gone]
        for owner, count in counts.items():
            self._account(owner, count, sizes[owner])
        self._save(above_path, above, gen)
        assert above.children is not None
        del above.children[path]
        if not above.children:
            above.children = None
        above.listing = None
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
        nodes = self.nodes
        stack = [path]
        while stack:
            top = stack.pop()
            yield top
            children = nodes[top].children
            if children:
                stack.extend(reversed(children))

    def check(self) -> list[str]:
        """The tree's invariants, as a list of violations (empty when sound).

        Every node but the root is listed by its parent, every listed child
        exists, no node is newer than the generation counter, every node has at
        least its owner's permission entry, and no saved version outlives the
        snapshots that need it.
        """
        problems = []
        nodes = self.nodes
        if "/" not in nodes:
            return ["the root is missing"]
        for path, node in nodes.items():
            if not node.perms:
                problems.append(f"{path}: no permissions")
            if node.generation > self.generation:
                problems.append(f"{path}: generation {node.generation} from the future")
            for below in node.children or ():
                if below not in nodes or paths.parent(below) != path:
                    problems.append(f"{path}: lists missing child {paths.basename(below)}")
            if path != "/":
                above = nodes.get(paths.parent(path))
                if above is None or path not in (above.children or ()):
                    problems.append(f"{path}: not listed by its parent")
        if not self._snapshots and self.history:
            problems.append(f"{len(self.history)} paths keep versions with no snapshot open")
        counted, held = self._recount()
        if counted != self.owned or held != self.owned_bytes:
            problems.append(
                f"owner accounts {self.owned} {self.owned_bytes} but the tree has {counted} {held}"
            )
        return problems

    def _recount(self) -> tuple[dict[int, int], dict[int, int]]:
        """Nodes and bytes per owner, counted from the tree (nodes without perms skipped)."""
        counted: dict[int, int] = {}
        held: dict[int, int] = {}
        for path, node in self.nodes.items():
            if not node.perms:
                continue
            owner = node.perms[0].domid
            counted[owner] = counted.get(owner, 0) + 1
            held[owner] = held.get(owner, 0) + len(path) + len(node.value) + 8 * len(node.perms)
        return counted, held

    def repair(self) -> list[str]:
        """Make the tree sound again after a bug interrupted a change half-way.

        The flat dict is taken as the truth: child lists are made to match it,
        nodes whose parent is gone are dropped, a node without perms gets dom0's,
        and the owner accounts are recounted. The change that was interrupted may
        be left half done, but every invariant of :meth:`check` holds again.
        Returns what was repaired (empty when nothing was wrong); O(nodes), for
        the rare bug, never for a request's normal path.
        """
        done: list[str] = []
        nodes = self.nodes
        if "/" not in nodes:
            nodes["/"] = Node(b"", owner_only(0), self.generation)
            done.append("the root was missing: made again")
        for path in sorted((p for p in nodes if p != "/"), key=lambda p: p.count("/")):
            above = nodes.get(paths.parent(path))
            if above is None:  # its parent went first (parents sort before children)
                del nodes[path]
                done.append(f"{path}: its parent is gone; dropped")
            elif path not in (above.children or ()):
                above.children = {**(above.children or {}), path: None}
                above.listing = None
                done.append(f"{path}: was not listed by its parent; listed")
        for path, node in nodes.items():
            if node.children and any(
                below not in nodes or paths.parent(below) != path for below in node.children
            ):
                kept = {b: None for b in node.children if b in nodes and paths.parent(b) == path}
                node.children = kept or None
                node.listing = None
                done.append(f"{path}: listed children that are not there; unlisted")
            if not node.perms:
                node.perms = owner_only(0)
                done.append(f"{path}: had no permissions; given to dom0")
            if node.generation > self.generation:
                self.generation = node.generation
                done.append(f"{path}: newer than the generation counter; counter moved")
        if not self._snapshots and self.history:
            self.history.clear()
            self._history_order.clear()
            done.append("versions kept with no snapshot open; dropped")
        counted, held = self._recount()
        if counted != self.owned or held != self.owned_bytes:
            self.owned, self.owned_bytes = counted, held
            done.append("owner accounts recounted")
        return done
