"""Basic transactions: isolation, discard, ids, and cxenstored's conflict rule."""

from __future__ import annotations

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.protocol.ops import Op


def test_writes_are_invisible_until_commit_and_discarded_on_abort() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    tx = a.start()
    a.write("/t/x", "1", tx=tx)
    a.ok(Op.MKDIR, "/t/y", tx=tx)
    assert a.read("/t/x", tx=tx) == b"1"
    assert a.directory("/t", tx=tx) == ["x", "y"]
    assert b.error(Op.READ, "/t/x") == "ENOENT"
    assert a.error(Op.READ, "/t") == "ENOENT"  # outside the transaction
    a.end(tx)
    assert b.read("/t/x") == b"1"
    assert b.directory("/t") == ["x", "y"]

    tx = a.start()
    a.write("/t/x", "2", tx=tx)
    a.ok(Op.RM, "/t/y", tx=tx)
    a.end(tx, commit=False)
    assert b.read("/t/x") == b"1"
    assert b.directory("/t") == ["x", "y"]


def test_ids_count_from_one_per_connection_and_ended_ids_are_gone() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    assert [a.start(), a.start(), b.start()] == [1, 2, 1]
    a.end(1)
    assert a.error(Op.READ, "/tool", tx=1) == "ENOENT"
    assert a.error(Op.TRANSACTION_END, "T", tx=1) == "ENOENT"
    assert a.error(Op.TRANSACTION_START, "", tx=2) == "EBUSY"
    assert a.error(Op.TRANSACTION_END, "X", tx=2) == "EINVAL"


def test_commit_fails_when_a_touched_node_changed() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    a.write("/n", "0")
    tx = a.start()
    assert a.read("/n", tx=tx) == b"0"
    a.write("/n", "1", tx=tx)
    b.write("/n", "0")  # the same value still counts as a change in cxenstored
    assert a.error(Op.TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert b.read("/n") == b"0"
    # The failed transaction is over.
    assert a.error(Op.TRANSACTION_END, "T", tx=tx) == "ENOENT"


def test_commit_succeeds_when_untouched_nodes_changed() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    a.write("/p/n", "0")
    a.write("/q", "0")
    tx = a.start()
    a.write("/p/n", "1", tx=tx)
    b.write("/q", "1")
    a.end(tx)
    assert b.read("/p/n") == b"1"


def test_removal_in_a_transaction_takes_the_subtree_at_commit() -> None:
    server = Server()
    a = Caller(server)
    a.write("/d/e/f", "x")
    tx = a.start()
    a.ok(Op.RM, "/d/e", tx=tx)
    assert a.error(Op.READ, "/d/e/f", tx=tx) == "ENOENT"
    assert a.read("/d/e/f") == b"x"
    a.end(tx)
    assert a.error(Op.READ, "/d/e/f") == "ENOENT"
    assert a.directory("/d") == []


def test_disconnect_drops_open_transactions() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    tx = a.start()
    a.write("/gone", "x", tx=tx)
    server.disconnect(a.conn_id)
    assert b.error(Op.READ, "/gone") == "ENOENT"
    assert server.connections.keys() == {b.conn_id}
