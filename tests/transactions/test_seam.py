"""The seam between the store and transactions: what each may ask of the other.

A transaction reads its snapshot through ``Store.at``, the current generations
through ``Store.generations`` and commits through ``Store.apply``; both views
answer ``pending_usage``; a refused commit raises a typed ``TransactionConflict``;
a node's bytes are counted by ``node_bytes`` alone.
"""

from __future__ import annotations

import inspect

import pytest

from xenstore.errors import EAGAIN
from xenstore.perms import owner_only
from xenstore.store import Store, node_bytes
from xenstore.transactions import Conflict, Transaction, TransactionConflict


def test_the_store_alone_assigns_generations() -> None:
    for mutator in (Store.write, Store.mkdir, Store.set_perms, Store.remove):
        assert "gen" not in inspect.signature(mutator).parameters, mutator


def test_a_commit_is_one_apply_under_one_generation() -> None:
    store = Store()
    store.write("/d/old", b"x", None)
    log = [
        ("write", "/d/a/b", b"1", 5),
        ("mkdir", "/d/m", None, None),
        ("mkdir", "/d/old", None, None),  # already there: no change
        ("perms", "/d/a", owner_only(7), None),
        ("write", "/d/a/b", b"2", 5),
        ("rm", "/d/old", None, None),
    ]
    before = store.generation
    changes = store.apply(log)
    assert store.generation == before + 1
    # One change per node, in the order of first change, with its last details.
    assert [c.path for c in changes] == ["/d/a/b", "/d/m", "/d/a", "/d/old"]
    assert store.value("/d/a/b") == b"2" and not store.exists("/d/old")
    assert store.generations("/d/a/b") == (before + 1,) * 3
    assert store.generations("/d/old") is None
    assert store.check() == []


def test_the_store_has_nothing_pending_and_a_transaction_counts_its_own() -> None:
    store = Store()
    assert store.pending_usage(5) == (0, 0)
    store.write("/d", b"", 5)
    tx = Transaction(store, 1)
    tx.write("/d/a/b", b"val", 5)
    expected = node_bytes("/d/a", b"", tx.perms("/d/a")) + node_bytes(
        "/d/a/b", b"val", tx.perms("/d/a/b"))
    assert tx.pending_usage(5) == (2, expected)
    assert tx.pending_usage(6) == (0, 0)
    tx.write("/d/a/b", b"longer value", 5)
    assert tx.pending_usage(5) == (2, expected + len(b"longer value") - len(b"val"))
    # What it pends is what the store accounts once it commits.
    held = store.owned_bytes[5]
    tx.commit()
    assert store.owned_bytes[5] == held + tx.pending_usage(5)[1]
    assert store.owned[5] == 1 + 2


def test_node_bytes_is_what_the_store_accounts() -> None:
    store = Store()
    store.write("/a/b", b"value", 3)
    assert store.owned_bytes[3] == node_bytes("/a", b"", store.perms("/a")) + node_bytes(
        "/a/b", b"value", store.perms("/a/b"))
    assert store.owned_bytes[0] == sum(
        node_bytes(path, node.value, node.perms) for path, node in store.nodes.items()
        if node.perms[0].domid == 0
    )


def test_a_refused_commit_raises_a_typed_eagain_with_its_conflicts() -> None:
    store = Store()
    store.write("/a", b"0", None)
    tx = Transaction(store, 7)
    assert tx.value("/a") == b"0"
    assert not tx.exists("/gone")
    tx.write("/x", b"1", None)
    store.write("/a", b"1", None)
    store.write("/gone", b"", None)
    with pytest.raises(EAGAIN) as caught:  # everyone's `except EAGAIN` still catches it
        tx.commit()
    refused = caught.value
    assert isinstance(refused, TransactionConflict)
    assert refused.name == "EAGAIN" and refused.tx_id == 7
    assert refused.conflicts == [
        Conflict("/a", "value", store.generation - 1),
        Conflict("/gone", "existence", store.generation),
    ]
    assert "transaction 7: the value of /a it read was changed by commit" in str(refused)
    assert store.open_snapshots == 0 and not store.exists("/x")


def test_a_transaction_reads_its_snapshot_through_the_store() -> None:
    store = Store()
    store.write("/a", b"0", None)
    tx = Transaction(store, 1)
    store.write("/a", b"1", None)
    store.remove("/a", detail=False)
    assert store.at("/a", tx.snapshot) is not None
    assert tx.value("/a") == b"0"
    assert store.snapshots() == [tx.snapshot]
    tx.close()
    assert store.snapshots() == [] and store.history == {}
