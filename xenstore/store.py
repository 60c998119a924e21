"""The tree: nodes with values, permissions, ordered children and generations.

Nodes live in one flat ``dict`` keyed by canonical path, so a READ is one
lookup whatever the depth; each node also keeps its children's names in an
insertion-ordered ``dict`` (O(1) add and remove, order as cxenstored lists
them). Every mutation is stamped with a new value of the store's generation
counter; a node's ``generation`` is the stamp of its last change (value, perms
or child list), which DIRECTORY_PART reports and transactions compare.

The store knows nothing of callers or permissions checks: the core decides
who may do what, then asks the store (or a transaction's view of it) to do it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from xenstore import paths
from xenstore.perms import Perm, Perms, intern, owner_only


class Node:
    """One node. ``children`` maps child names to ``None`` (an ordered set)."""

    __slots__ = ("children", "generation", "perms", "value")

    def __init__(
        self,
        value: bytes,
        perms: Perms,
        generation: int,
        children: dict[str, None] | None = None,
    ) -> None:
        self.value = value
        self.perms = perms
        self.generation = generation
        self.children: dict[str, None] = {} if children is None else children

    def copy(self) -> Node:
        return Node(self.value, self.perms, self.generation, dict(self.children))

    def __repr__(self) -> str:
        return f"Node({self.value!r}, {self.perms}, gen={self.generation}, {list(self.children)})"


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
            stack.extend((paths.child(top, name), False) for name in reversed(node.children))
    return out


def inherited_perms(parent: Perms, owner: int | None) -> Perms:
    """Perms of a node created under ``parent``: a copy, owned by ``owner`` if given.

    An unprivileged creator owns what it creates (as cxenstored); a privileged
    creator keeps the parent's owner.
    """
    if owner is None or parent[0].domid == owner:
        return parent
    return intern((Perm(owner, parent[0].access), *parent[1:]))


class View(Protocol):
    """What the core reads and changes: the store itself, or a transaction over it."""

    def get(self, path: str) -> Node | None: ...

    def nearest_existing(self, path: str) -> tuple[str, Node]: ...

    def create(self, path: str, value: bytes, owner: int | None) -> list[str]: ...

    def set_value(self, path: str, value: bytes) -> None: ...

    def set_perms(self, path: str, perms: Perms) -> None: ...

    def remove(self, path: str) -> list[tuple[str, Node]]: ...


class Store:
    """The committed tree.

    Each mutating call is one change and gets a new generation stamp, unless
    the caller passes one (a transaction's commit stamps all its nodes alike).
    """

    def __init__(self) -> None:
        self.generation = 0
        root_perms = owner_only(0)
        self.nodes: dict[str, Node] = {"/": Node(b"", root_perms, 0)}
        # The initial tree of cxenstored: /tool/xenstored.
        self.create("/tool/xenstored", b"", None)

    def next_generation(self) -> int:
        self.generation += 1
        return self.generation

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def __len__(self) -> int:
        return len(self.nodes)

    def nearest_existing(self, path: str) -> tuple[str, Node]:
        """The closest existing ancestor of a missing ``path``."""
        nodes = self.nodes
        while True:
            path = paths.parent(path)
            node = nodes.get(path)
            if node is not None:
                return path, node

    def create(
        self, path: str, value: bytes, owner: int | None, stamp: int | None = None
    ) -> list[str]:
        """Create ``path`` and its missing ancestors; return the created paths, top first.

        Each new node copies its parent's perms (all equal to those of the
        nearest existing ancestor); only the last one gets ``value``.
        """
        if stamp is None:
            stamp = self.next_generation()
        nodes = self.nodes
        missing = [path]
        top = paths.parent(path)
        while top not in nodes:
            missing.append(top)
            top = paths.parent(top)
        missing.reverse()
        perms = inherited_perms(nodes[top].perms, owner)
        above = nodes[top]
        above.children[paths.basename(missing[0])] = None
        above.generation = stamp
        for index, new in enumerate(missing):
            children = {} if new == path else {paths.basename(missing[index + 1]): None}
            nodes[new] = Node(value if new == path else b"", perms, stamp, children)
        return missing

    def set_value(self, path: str, value: bytes) -> None:
        node = self.nodes[path]
        node.value = value
        node.generation = self.next_generation()

    def set_perms(self, path: str, perms: Perms) -> None:
        node = self.nodes[path]
        node.perms = perms
        node.generation = self.next_generation()

    def remove(self, path: str, stamp: int | None = None) -> list[tuple[str, Node]]:
        """Remove ``path`` and its subtree; return the removed nodes in post-order.

        Post-order in child order (each node after its children) is the order
        in which cxenstored deletes them, and so the order of their events.
        """
        if stamp is None:
            stamp = self.next_generation()
        nodes = self.nodes
        removed = postorder(path, nodes.__getitem__)
        for gone, _ in removed:
            del nodes[gone]
        above = nodes[paths.parent(path)]
        del above.children[paths.basename(path)]
        above.generation = stamp
        return removed

    def walk(self, path: str) -> Iterator[str]:
        """``path`` and every path below it, parents before children."""
        nodes = self.nodes
        stack = [path]
        while stack:
            top = stack.pop()
            yield top
            children = nodes[top].children
            if children:
                stack.extend(paths.child(top, name) for name in reversed(children))

    def check(self) -> list[str]:
        """The tree's invariants, as a list of violations (empty when sound).

        Every node but the root is listed by its parent, every listed child
        exists, no node is newer than the generation counter, and every node
        has at least its owner's permission entry.
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
            for name in node.children:
                if paths.child(path, name) not in nodes:
                    problems.append(f"{path}: lists missing child {name}")
            if path != "/":
                above = nodes.get(paths.parent(path))
                if above is None or paths.basename(path) not in above.children:
                    problems.append(f"{path}: not listed by its parent")
        return problems

