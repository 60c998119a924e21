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


def drop_listing(store: Store) -> None:
    children = store.nodes["/a"].children
    assert children is not None
    del children["/a/d"]


def orphan(store: Store) -> None:
    del store.nodes["/a/b"]  # /a/b/c is left without its parent, /a lists a ghost


def no_perms(store: Store) -> None:
    store.nodes["/e"].perms = ()


def future(store: Store) -> None:
    store.nodes["/e"].vgen = store.generation + 7


def miscount(store: Store) -> None:
    store.owned[5] += 3


def stray(store: Store) -> None:
    store.nodes["/x/y"] = Node(b"", owner_only(5), store.generation)


@pytest.mark.parametrize("damage", [drop_listing, orphan, no_perms, future, miscount, stray])
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
    drop_listing(store)
    store.repair()
    assert {"/a", "/a/b", "/a/b/c", "/a/d", "/e"} <= set(store.nodes)
    assert store.nodes["/a/d"].value == b"v"
