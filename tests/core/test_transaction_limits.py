"""Transaction limits, snapshots that cost nothing to take, and the conflict explainer."""

from __future__ import annotations

from tests.core.harness import Caller
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Log
from xenstore.protocol.ops import Op


def guest_server(**limits: int) -> tuple[Server, Caller]:
    config = Config()
    config.quotas.update({name.replace("_", "-"): value for name, value in limits.items()})
    server = Server(config)
    dom0 = Caller(server)
    dom0.write("/local/domain/4", "")
    dom0.set_perms("/local/domain/4", "n4")
    return server, dom0


def test_ten_open_transactions_per_unprivileged_domain_across_connections() -> None:
    server, dom0 = guest_server()
    first, second = Caller(server, 4, False), Caller(server, 4, False)
    ids = [first.start() for _ in range(6)] + [second.start() for _ in range(4)]
    assert len(ids) == 10
    assert first.error(Op.TRANSACTION_START, "") == "ENOSPC"
    assert second.error(Op.TRANSACTION_START, "") == "ENOSPC"
    assert Caller(server, 6, False).start() == 1  # another domain has its own count
    first.end(ids[0], commit=False)
    assert second.start() > 0  # ending one frees a place
    server.disconnect(first.conn_id)  # so does disconnecting
    assert [second.start() for _ in range(5)]
    assert [dom0.start() for _ in range(50)]  # privileged callers are exempt


def test_transactions_limit_is_configurable() -> None:
    server, _ = guest_server(transactions=2)
    guest = Caller(server, 4, False)
    guest.start()
    guest.start()
    assert guest.error(Op.TRANSACTION_START, "") == "ENOSPC"


def test_nodes_touched_per_transaction() -> None:
    server, dom0 = guest_server(transaction_nodes=5)
    guest = Caller(server, 4, False)
    tx = guest.start()
    for i in range(4):  # touches its home and four new nodes: five
        guest.write(f"n{i}", "x", tx=tx)
    assert guest.error(Op.WRITE, "n9", "x", tx=tx) == "ENOSPC"
    assert guest.error(Op.READ, "n0", tx=tx) == "ENOSPC"
    # dom0 is exempt
    tx0 = dom0.start()
    for i in range(20):
        dom0.write(f"/many/n{i}", "x", tx=tx0)
    dom0.end(tx0)


def test_starting_a_transaction_touches_no_node() -> None:
    """A snapshot is a number: starting costs the same with 100 nodes as with 600,000."""

    class Counting(dict):  # type: ignore[type-arg]
        touched = 0

        def __getitem__(self, key: str) -> object:
            Counting.touched += 1
            return super().__getitem__(key)

        def get(self, key: str, default: object = None) -> object:
            Counting.touched += 1
            return super().get(key, default)

        def __iter__(self):  # type: ignore[no-untyped-def]
            Counting.touched += 1
            return super().__iter__()

    for size in (100, 600_000):
        server = Server()
        store = server.store
        for i in range(size):
            store.write(f"/d/n{i // 1000}/m{i}", b"v", None)
        store.dirs = Counting(store.dirs)
        Counting.touched = 0
        caller = Caller(server)
        for _ in range(10):
            caller.start()
        assert Counting.touched == 0, size
        assert store.history == {}


def test_versions_are_kept_only_while_a_snapshot_needs_them() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    a.write("/v", "0")
    tx = a.start()
    for i in range(100):
        b.write("/v", str(i))  # one saved version covers all of these
    assert len(server.store.history["/v"]) == 1
    assert a.read("/v", tx=tx) == b"0"
    a.end(tx, commit=False)
    assert server.store.history == {}


def test_a_refused_commit_is_explained() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    a.write("/acct", "10")
    tx = a.start()
    a.write("/acct", str(int(a.read("/acct", tx=tx)) + 1), tx=tx)
    b.write("/acct", "99")
    assert a.error(Op.TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    logged = [e.message for e in a.effects if isinstance(e, Log)]
    assert len(logged) == 1
    assert "the value of /acct it read was changed by commit" in logged[0]
    assert f"connection {b.conn_id} (domain 0) WRITE /acct" in logged[0]
    explained = a.ok(Op.CONTROL, "conflicts").decode()
    assert logged[0] in explained
