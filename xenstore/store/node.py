"""One node of the tree, and what is reckoned from one: its bytes, its children's
names, its subtree, the perms of a node made under it."""

from __future__ import annotations

from collections.abc import Callable

from xenstore import paths
from xenstore.perms import Perm, Perms, intern


class Node:
    """One node. ``children`` maps the children's paths to ``None`` (an ordered set),
    or is ``None`` for a node without children: most nodes are leaves, and an empty
    dict costs 64 bytes each.

    ``vgen``, ``pgen`` and ``cgen`` are the generations of the commits that last
    changed its value (or made it), its perms and its child list.
    """

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


def node_bytes(path: str, value: bytes, perms: Perms) -> int:
    """What a node holds against its owner's memory quota, as cxenstored sizes it:
    its path, its value, and 8 bytes per permission entry.

    The one place this is written: the store's accounts, a transaction's pending
    usage and the recount that checks them all call it. A new value changes it by
    the difference of the two values' lengths, which the hot WRITE path uses.
    """
    return len(path) + len(value) + 8 * len(perms)


def child_names(path: str, children: dict[str, None] | None) -> list[str]:
    """The children's names, in order, from a child dict keyed by their paths."""
    if not children:
        return []
    cut = 1 if path == paths.ROOT else len(path) + 1
    return [below[cut:] for below in children]


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


def inherited_perms(parent: Perms, owner: int | None) -> Perms:
    """Perms of a node created under ``parent``: a copy, owned by ``owner`` if given.

    An unprivileged creator owns what it creates (as cxenstored); a privileged
    creator keeps the parent's owner.
    """
    if owner is None or parent[0].domid == owner:
        return parent
    return intern((Perm(owner, parent[0].access), *parent[1:]))
