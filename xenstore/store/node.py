"""One node of the tree, and what is reckoned from one: its bytes, its children's
names, its subtree, the perms of a node made under it."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator

from xenstore import paths
from xenstore.perms import Perm, Perms, intern

#: Values up to this long are shared between nodes through :func:`shared_value`.
SHARED_VALUE_MAX = 40
#: How many distinct values the table keeps before it starts again.
SHARED_VALUES_MAX = 1 << 14

class One:
    """The children of a node that has exactly one: its name and node, read as a dict
    is (``get``, ``[name]``, ``in``, iteration, ``items``, ``len``). Half the
    directories of a Xen host's store have one child, and a one-entry dict costs 200
    bytes with its GC header, this 48. Never changed in place: :func:`add_child` and
    :func:`drop_child` replace it, so a saved version may share it."""

    __slots__ = ("name", "node")

    def __init__(self, name: str, node: Node) -> None:
        self.name = name
        self.node = node

    def get(self, name: str, default: Node | None = None) -> Node | None:
        return self.node if name == self.name else default

    def __getitem__(self, name: str) -> Node:
        if name == self.name:
            return self.node
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name == self.name

    def __iter__(self) -> Iterator[str]:
        return iter((self.name,))

    def __len__(self) -> int:
        return 1

    def items(self) -> tuple[tuple[str, Node]]:
        return ((self.name, self.node),)

    def __repr__(self) -> str:
        return f"One({self.name!r})"


#: A node's children: a dict from name to node, or :class:`One` for a single child.
Children = dict[str, "Node"] | One


def children_of(pairs: Iterable[tuple[str, Node]]) -> Children | None:
    """Children holding ``pairs`` in order (None for none)."""
    kids = dict(pairs)
    if len(kids) == 1:
        ((name, node),) = kids.items()
        return One(name, node)
    return kids or None


def add_child(parent: Node, name: str, child: Node) -> None:
    """Give ``parent`` the new child ``name`` (after the others)."""
    kids = parent.children
    if kids is None:
        parent.children = One(name, child)
    elif isinstance(kids, One):
        parent.children = {kids.name: kids.node, name: child}
    else:
        kids[name] = child


def drop_child(parent: Node, name: str) -> None:
    """Take child ``name`` from ``parent`` (KeyError if it has none such)."""
    kids = parent.children
    if kids is None:
        raise KeyError(name)
    if isinstance(kids, One):
        if kids.name != name:
            raise KeyError(name)
        parent.children = None
        return
    del kids[name]
    if len(kids) == 1:
        ((left, node),) = kids.items()
        parent.children = One(left, node)
    elif not kids:
        parent.children = None


class Node:
    """One node. ``children`` maps the children's names (interned: the same few
    names recur under every domain) to their nodes, in insertion order (a
    :class:`One` when there is one child), or is ``None`` for a node without
    children: most nodes are leaves, and an empty dict costs 64 bytes each. A node
    does not hold its own path: a leaf lives
    only in its parent's ``children``; the store indexes only the nodes with
    children by path (:attr:`Store.dirs <xenstore.store.tree.Store.dirs>`).

    ``vgen``, ``pgen`` and ``cgen`` are the generations of the commits that last
    changed its value (or made it), its perms and its child list.
    """

    __slots__ = ("cgen", "children", "perms", "pgen", "value", "vgen")

    def __init__(
        self,
        value: bytes,
        perms: Perms,
        gen: int,
        children: Children | None = None,
    ) -> None:
        self.value = value
        self.perms = perms
        self.vgen = self.pgen = self.cgen = gen
        self.children: Children | None = children or None

    @property
    def generation(self) -> int:
        """The last change of any kind: what DIRECTORY_PART reports."""
        return max(self.vgen, self.pgen, self.cgen)

    def copy(self) -> Node:
        kids = self.children
        # A One is never changed in place: the copy may share it.
        twin = Node(self.value, self.perms, self.vgen,
                    dict(kids) if type(kids) is dict else kids)
        twin.pgen, twin.cgen = self.pgen, self.cgen
        return twin

    def __repr__(self) -> str:
        return (
            f"Node({self.value!r}, {self.perms}, v{self.vgen} p{self.pgen} c{self.cgen}, "
            f"{list(self.children or ())})"
        )


def shared_value(values: dict[bytes, bytes], value: bytes) -> bytes:
    """An equal value already held by another node, if the table ``values`` (the
    store's) knows one, else ``value``, now known.

    Values recur across domains ("connected", "online", a MAC, a script's path):
    a short value is kept once, the way perms are interned. The table is capped
    and starts again when full, so values nobody repeats cannot grow it.
    """
    if len(value) > SHARED_VALUE_MAX:
        return value
    shared = values.get(value)
    if shared is not None:
        return shared
    if len(values) >= SHARED_VALUES_MAX:
        values.clear()
    values[value] = value
    return value


def name_of(path: str) -> str:
    """The last component of a (non-root) path, interned: names recur under every domain."""
    return sys.intern(path[path.rfind("/") + 1:])


def node_bytes(path: str, value: bytes, perms: Perms) -> int:
    """What a node holds against its owner's memory quota, as cxenstored sizes it:
    its path, its value, and 8 bytes per permission entry.

    The one place this is written: the store's accounts, a transaction's pending
    usage and the recount that checks them all call it. A new value changes it by
    the difference of the two values' lengths, which the hot WRITE path uses.
    """
    return len(path) + len(value) + 8 * len(perms)


def child_names(path: str, children: Children | None) -> list[str]:
    """The children's names, in order (``path``, the parent's, is not needed since
    children are keyed by name; kept so callers read the same)."""
    return list(children) if children else []


def below(path: str, name: str) -> str:
    """The path of child ``name`` of ``path``."""
    return f"/{name}" if path == paths.ROOT else f"{path}/{name}"


def postorder(path: str, node: Node) -> list[tuple[str, Node]]:
    """The subtree of ``node`` at ``path``, children before parents, in child order."""
    out: list[tuple[str, Node]] = []
    stack: list[tuple[str, Node, bool]] = [(path, node, False)]
    while stack:
        top, at, expanded = stack.pop()
        children = at.children
        if expanded or not children:
            out.append((top, at))
        else:
            stack.append((top, at, True))
            stack.extend((below(top, name), child, False)
                         for name, child in reversed(children.items()))
    return out


def preorder(path: str, node: Node) -> Iterator[tuple[str, Node]]:
    """The subtree of ``node`` at ``path``, parents before children, in child order."""
    stack = [(path, node)]
    while stack:
        top, at = stack.pop()
        yield top, at
        children = at.children
        if children:
            stack.extend((below(top, name), child) for name, child in reversed(children.items()))


def inherited_perms(parent: Perms, owner: int | None) -> Perms:
    """Perms of a node created under ``parent``: a copy, owned by ``owner`` if given.

    An unprivileged creator owns what it creates (as cxenstored); a privileged
    creator keeps the parent's owner.
    """
    if owner is None or parent[0].domid == owner:
        return parent
    return intern((Perm(owner, parent[0].access), *parent[1:]))
