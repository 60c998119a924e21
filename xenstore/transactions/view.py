"""A transaction: a private overlay of writes over the live store.

This is cxenstored 4.17's rule: the first time a transaction touches a node
(read or write) it records the node's generation (-1 for a missing node);
writes go to a private overlay; the commit fails with EAGAIN when any node it
touched has changed since, and otherwise installs the overlay with one new
generation stamp. Nothing of the overlay is visible to others before commit.
"""

from __future__ import annotations

from xenstore import paths
from xenstore.changes import Change
from xenstore.errors import EAGAIN
from xenstore.perms import Perms
from xenstore.store import Node, Store, inherited_perms, postorder

_MISSING = -1


class Transaction:
    """One open transaction of one connection."""

    def __init__(self, store: Store, tx_id: int) -> None:
        self.store = store
        self.tx_id = tx_id
        #: Nodes this transaction changed: a private copy, or None if removed.
        self.overlay: dict[str, Node | None] = {}
        #: The generation of every node touched, when first touched.
        self.seen: dict[str, int] = {}
        #: What it changed, in order: its watch events fire at commit.
        self.changes: list[Change] = []

    # -- reading ------------------------------------------------------------

    def get(self, path: str) -> Node | None:
        overlay = self.overlay
        if path in overlay:
            return overlay[path]
        node = self.store.nodes.get(path)
        if path not in self.seen:
            self.seen[path] = node.generation if node is not None else _MISSING
        return node

    def nearest_existing(self, path: str) -> tuple[str, Node]:
        while True:
            path = paths.parent(path)
            node = self.get(path)
            if node is not None:
                return path, node

    # -- writing ------------------------------------------------------------

    def _own(self, path: str) -> Node:
        """The private copy of an existing node, made on first write."""
        node = self._existing(path)
        if path not in self.overlay:
            node = node.copy()
            self.overlay[path] = node
        return node

    def create(self, path: str, value: bytes, owner: int | None) -> list[str]:
        missing = [path]
        top = paths.parent(path)
        while self.get(top) is None:
            missing.append(top)
            top = paths.parent(top)
        missing.reverse()
        above = self._own(top)
        above.children[paths.basename(missing[0])] = None
        perms = inherited_perms(above.perms, owner)
        for index, new in enumerate(missing):
            children = {} if new == path else {paths.basename(missing[index + 1]): None}
            self.overlay[new] = Node(value if new == path else b"", perms, 0, children)
        return missing

    def set_value(self, path: str, value: bytes) -> None:
        self._own(path).value = value

    def set_perms(self, path: str, perms: Perms) -> None:
        self._own(path).perms = perms

    def remove(self, path: str) -> list[tuple[str, Node]]:
        removed = postorder(path, self._existing)
        for gone, _ in removed:
            self.overlay[gone] = None
        del self._own(paths.parent(path)).children[paths.basename(path)]
        return removed

    def _existing(self, path: str) -> Node:
        node = self.get(path)
        assert node is not None, path
        return node

    # -- ending ---------------------------------------------------------------

    def commit(self) -> list[str]:
        """Install the overlay, or raise EAGAIN; return the changed paths."""
        nodes = self.store.nodes
        for path, generation in self.seen.items():
            node = nodes.get(path)
            if (node.generation if node is not None else _MISSING) != generation:
                raise EAGAIN(f"transaction {self.tx_id}: {path} changed since it was read")
        if not self.overlay:
            return []
        stamp = self.store.next_generation()
        for path, copy in self.overlay.items():
            if copy is None:
                nodes.pop(path, None)
            else:
                copy.generation = stamp
                nodes[path] = copy
        return list(self.overlay)
