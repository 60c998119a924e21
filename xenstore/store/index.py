"""Every node of a store by path, as a read-only mapping (:attr:`Store.nodes`).

The store indexes only the nodes with children by path; this view answers for
any path through :meth:`Store.node`, and iterates the tree in order. It is for
the core's rare whole-tree passes (a domain's clean-up, invariant checks) and for
tests; the store's own hot paths use its structures directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from xenstore.store.node import Node


class Store(Protocol):
    """What the view reads of :class:`~xenstore.store.tree.Store` (named here, not
    imported: the store makes the view)."""

    count: int

    def node(self, path: str) -> Node | None: ...

    def items(self) -> Iterator[tuple[str, Node]]: ...


class Nodes:
    """``path -> Node`` for every node of ``store``, looked up, not stored."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getitem__(self, path: str) -> Node:
        node = self._store.node(path)
        if node is None:
            raise KeyError(path)
        return node

    def get(self, path: str, default: Node | None = None) -> Node | None:
        node = self._store.node(path)
        return default if node is None else node

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self._store.node(path) is not None

    def __len__(self) -> int:
        return self._store.count

    def __iter__(self) -> Iterator[str]:
        return (path for path, _ in self._store.items())

    def items(self) -> Iterator[tuple[str, Node]]:
        return self._store.items()

    def values(self) -> Iterator[Node]:
        return (node for _, node in self._store.items())
