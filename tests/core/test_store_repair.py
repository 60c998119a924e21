"""Store.repair: after a bug broke an invariant, every one of them holds again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from xenstore.perms import owner_only
from xenstore.store import Node, Store


def built() -> Store:
    store = Store()
    for path in ("/a/b/c", "/a/d", "/e"):
        store.write(path, b"v", 5)
    assert store.check() == [] and store.repair() == []
    return store


def unindex(store: Store) -> None:
    del store.dirs["/a/b"]  # /a/b/c is still in the tree, but a lookup misses it


def drop_subtree(store: Store) -> None:
    children = store.dirs["/a"].children
    assert children is not None
    del children["b"]  # /a/b stays indexed, its nodes still counted


def empty_children(store: Store) -> None:
    store.nodes["/e"].children = {}


def no_perms(store: Store) -> None:
    store.nodes["/e"].perms = ()


def future(store: Store) -> None:
    store.nodes["/e"].vgen = store.generation + 7


def miscount(store: Store) -> None:
    store.owned[5] += 3


def stray(store: Store) -> None:
    store.dirs["/x/y"] = Node(b"", owner_only(5), store.generation)


def versions_out_of_order(store: Store) -> None:
    store.open_snapshot()
    store.write("/e", b"w", 5)  # a saved version of /e for the snapshot
    store.history["/e"].insert(0, (store.generation, None))


def versions_unqueued(store: Store) -> None:
    store.open_snapshot()
    store.write("/e", b"w", 5)
    store.versions.order.clear()


def versions_without_snapshot(store: Store) -> None:
    snapshot = store.open_snapshot()
    store.write("/e", b"w", 5)
    store.versions.snapshots.remove(snapshot)  # closed without pruning, as a bug might


@pytest.mark.parametrize("damage", [
    unindex, drop_subtree, empty_children, no_perms, future, miscount, stray,
    versions_out_of_order, versions_unqueued, versions_without_snapshot,
])
def test_repair_makes_a_damaged_tree_sound(damage: Callable[[Store], None]) -> None:
    store = built()
    damage(store)
    assert store.check() != []
    assert store.repair() != []
    assert store.check() == []
    assert store.repair() == []
    # Usable afterwards: a write and a remove keep it sound.
    store.write("/a/new", b"n", 5)
    store.remove("/a", detail=True)
    assert store.check() == []


def test_repair_keeps_what_is_sound() -> None:
    store = built()
    unindex(store)
    assert "/a/b/c" not in store.nodes
    store.repair()
    assert {"/a", "/a/b", "/a/b/c", "/a/d", "/e"} <= set(store.nodes)
    assert store.nodes["/a/b/c"].value == b"v"


def test_repair_keeps_the_versions_a_snapshot_reads() -> None:
    store = built()
    snapshot = store.open_snapshot()
    store.write("/e", b"new", 5)
    store.versions.order.clear()
    assert store.repair() != [] and store.check() == []
    old = store.at("/e", snapshot)
    assert old is not None and old.value == b"v"
    store.close_snapshot(snapshot)
    assert store.history == {} and store.check() == []
