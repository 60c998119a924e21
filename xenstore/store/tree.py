"""The tree: nodes with values, permissions, ordered children, and their generations.

Nodes live in one flat ``dict`` keyed by canonical path, so a READ is one
lookup whatever the depth; each node also keeps its children in an
insertion-ordered ``dict`` (O(1) add and remove, listed in the order cxenstored
lists them). The child dict's keys are the children's full paths, the very
string objects that key the flat dict: a name is cut from its path only when a
listing is made, so no node pays for its name twice.

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
from xenstore.store.node import Node, child_names, inherited_perms, node_bytes, postorder
from xenstore.store.versions import Versions

#: One change of a transaction's log, replayed by :meth:`Store.apply`:
#: ``(kind, path, value or perms or None, owner)``, the kind one of
#: ``"write"`` (a value), ``"mkdir"``, ``"perms"`` (perms) or ``"rm"``.
Edit = tuple[str, str, "bytes | Perms | None", "int | None"]


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
        self.nodes: dict[str, Node] = {"/": Node(b"", owner_only(0), 0)}
        self.versions = Versions()
        #: Nodes per owner domain, and the bytes they hold (:func:`node_bytes`):
        #: what the nodes and memory quotas read.
        self.owned: dict[int, int] = {0: 1}
        self.owned_bytes: dict[int, int] = {0: node_bytes("/", b"", owner_only(0))}
        # The initial tree of cxenstored: /tool/xenstored.
        self.write("/tool/xenstored", b"", None)

    def __len__(self) -> int:
        return len(self.nodes)

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
        return self.nodes.get(path)

    def generations(self, path: str) -> tuple[int, int, int] | None:
        """The generations that last changed the node's value (or made it), perms
        and child list, now; ``None`` when there is no node at ``path``."""
        node = self.nodes.get(path)
        return None if node is None else (node.vgen, node.pgen, node.cgen)

    def set_generations(self, path: str, vgen: int, pgen: int, cgen: int) -> None:
        """Give a node the generations it had in the daemon a live update came from."""
        node = self.nodes[path]
        node.vgen, node.pgen, node.cgen = vgen, pgen, cgen

    # -- reads (the View protocol, on the current tree) ------------------------

    def exists(self, path: str) -> bool:
        return path in self.nodes

    def value(self, path: str) -> bytes:
        return self.nodes[path].value

    def perms(self, path: str) -> Perms:
        return self.nodes[path].perms

    def children(self, path: str) -> Iterable[str]:
        return child_names(path, self.nodes[path].children)

    def listing(self, path: str) -> bytes:
        """The children as DIRECTORY sends them (``name\0`` each), computed once per change."""
        node = self.nodes[path]
        listing = node.listing
        if listing is None:
            names = child_names(path, node.children)
            listing = node.listing = "\0".join(names).encode() + b"\0" if names else b""
        return listing

    def gencnt(self, path: str) -> int:
        return self.nodes[path].generation

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
        if path in self.nodes:
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
                change = self._mkdir(path, owner, gen) if path not in self.nodes else None
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
        node = self.nodes.get(path)
        if node is None:
            node = self._create(path, value, owner, gen)
        else:
            self.versions.save(path, node, gen)
            # node_bytes counts the value byte for byte: the rest of it stays.
            self._account(node.perms[0].domid, 0, len(value) - len(node.value))
            node.value = value
            node.vgen = gen
        return Change(path, (node.perms, self.nodes[paths.parent(path)].perms))

    def _mkdir(self, path: str, owner: int | None, gen: int) -> Change:
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
        save = self.versions.save
        save(top, above, gen)
        if above.children is None:
            above.children = {}
        above.children[missing[0]] = None
        above.listing = None
        above.cgen = gen
        perms = inherited_perms(above.perms, owner)
        held = node_bytes(path, value, perms)
        for new in missing[:-1]:
            held += node_bytes(new, b"", perms)
        self._account(perms[0].domid, len(missing), held)
        node = above
        for index, new in enumerate(missing):
            save(new, None, gen)
            last = new == path
            children = None if last else {missing[index + 1]: None}
            node = Node(value if last else b"", perms, gen, children)
            nodes[new] = node
        return node

    def _set_perms(self, path: str, perms: Perms, gen: int) -> Change:
        node = self.nodes[path]
        self.versions.save(path, node, gen)
        old = node.perms
        self._account(old[0].domid, -1, -node_bytes(path, node.value, old))
        self._account(perms[0].domid, 1, node_bytes(path, node.value, perms))
        node.perms = perms
        node.pgen = gen
        return Change(path, (old, perms, self.nodes[paths.parent(path)].perms))

    def _remove(self, path: str, detail: bool, gen: int) -> Change:
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
        versions = self.versions
        if versions.snapshots:
            for gone, node in removed:
                versions.save(gone, node, gen, copy=False)
        # One account update per owner, not per node: a domain's teardown removes
        # tens of thousands of nodes of one or two owners.
        counts: dict[int, int] = {}
        sizes: dict[int, int] = {}
        for gone, node in removed:
            owner = node.perms[0].domid
            counts[owner] = counts.get(owner, 0) - 1
            sizes[owner] = sizes.get(owner, 0) - node_bytes(gone, node.value, node.perms)
            del nodes[gone]
        for owner, count in counts.items():
            self._account(owner, count, sizes[owner])
        versions.save(above_path, above, gen)
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
        least its owner's permission entry, the owner accounts match a recount,
        and the saved versions are sound (:meth:`Versions.problems`).
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
        problems += self.versions.problems(self.generation)
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
            held[owner] = held.get(owner, 0) + node_bytes(path, node.value, node.perms)
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
        done += self.versions.repair(self.generation)
        counted, held = self._recount()
        if counted != self.owned or held != self.owned_bytes:
            self.owned, self.owned_bytes = counted, held
            done.append("owner accounts recounted")
        return done
