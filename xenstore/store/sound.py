"""Whether the store is sound, and making it sound again after a bug (the
store's :meth:`~xenstore.store.tree.Store.check` and
:meth:`~xenstore.store.tree.Store.repair`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from xenstore import paths
from xenstore.perms import owner_only
from xenstore.store.node import Node, node_bytes
from xenstore.store.versions import Versions


class Store(Protocol):
    """What is checked and repaired of :class:`~xenstore.store.tree.Store` (named
    here, not imported: the store calls this module)."""

    generation: int
    dirs: dict[str, Node]
    count: int
    listings: dict[str, bytes]
    versions: Versions
    owned: dict[int, int]
    owned_bytes: dict[int, int]

    def items(self) -> Iterator[tuple[str, Node]]: ...


def check(store: Store) -> list[str]:
    """The tree's invariants, as a list of violations (empty when sound).

    Every node has at least its owner's permission entry and is no newer than
    the generation counter; exactly the root and the nodes with children are
    indexed in :attr:`Store.dirs` (none has an empty child dict); the count and the
    owner accounts match a recount, and the saved versions are sound
    (:meth:`Versions.problems`).
    """
    problems = []
    if paths.ROOT not in store.dirs:
        return ["the root is missing"]
    indexed = 0
    count = 0
    for path, node in store.items():
        count += 1
        if not node.perms:
            problems.append(f"{path}: no permissions")
        if node.generation > store.generation:
            problems.append(f"{path}: generation {node.generation} from the future")
        if node.children is not None and not node.children:
            problems.append(f"{path}: an empty child dict")
        if node.children or path == paths.ROOT:
            indexed += 1
            if store.dirs.get(path) is not node:
                problems.append(f"{path}: has children but is not indexed")
        for name in node.children or ():
            if not name or "/" in name:
                problems.append(f"{path}: lists a child named {name!r}")
    if indexed != len(store.dirs):
        problems.append(f"{len(store.dirs) - indexed} indexed paths not in the tree")
    if count != store.count:
        problems.append(f"{store.count} nodes counted but the tree has {count}")
    problems += store.versions.problems(store.generation)
    counted, held = recount(store)
    if counted != store.owned or held != store.owned_bytes:
        problems.append(
            f"owner accounts {store.owned} {store.owned_bytes} but the tree has {counted} {held}"
        )
    return problems


def recount(store: Store) -> tuple[dict[int, int], dict[int, int]]:
    """Nodes and bytes per owner, counted from the tree (nodes without perms skipped)."""
    counted: dict[int, int] = {}
    held: dict[int, int] = {}
    for path, node in store.items():
        if not node.perms:
            continue
        owner = node.perms[0].domid
        counted[owner] = counted.get(owner, 0) + 1
        held[owner] = held.get(owner, 0) + node_bytes(path, node.value, node.perms)
    return counted, held


def repair(store: Store) -> list[str]:
    """Make the tree sound again after a bug interrupted a change half-way.

    The tree from the root is taken as the truth: the index of nodes with
    children is made again from it, an empty child dict is dropped, a node
    without perms gets dom0's, and the count and owner accounts are
    recounted. The change that was interrupted may be left half done, but
    every invariant of :func:`check` holds again. Returns what was repaired
    (empty when nothing was wrong); O(nodes), for the rare bug, never for a
    request's normal path.
    """
    done: list[str] = []
    if paths.ROOT not in store.dirs:
        store.dirs[paths.ROOT] = Node(b"", owner_only(0), store.generation)
        done.append("the root was missing: made again")
    dirs: dict[str, Node] = {}
    count = 0
    for path, node in store.items():
        count += 1
        if node.children is not None and not node.children:
            node.children = None
            done.append(f"{path}: had an empty child dict; dropped")
        if node.children or path == paths.ROOT:
            dirs[path] = node
        if not node.perms:
            node.perms = owner_only(0)
            done.append(f"{path}: had no permissions; given to dom0")
        if node.generation > store.generation:
            store.generation = node.generation
            done.append(f"{path}: newer than the generation counter; counter moved")
    if dirs.keys() != store.dirs.keys() or any(
        store.dirs[path] is not node for path, node in dirs.items()
    ):
        store.dirs = dirs
        done.append("the index of nodes with children did not match the tree; made again")
    if count != store.count:
        store.count = count
        done.append("nodes recounted")
    store.listings.clear()
    done += store.versions.repair(store.generation)
    counted, held = recount(store)
    if counted != store.owned or held != store.owned_bytes:
        store.owned, store.owned_bytes = counted, held
        done.append("owner accounts recounted")
    return done
