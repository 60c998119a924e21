"""The server's invariant checker reports each kind of damage, and nothing on a sound server."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.core.harness import Caller
from xenstore.daemon import invariants
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Log
from xenstore.perms import Perm
from xenstore.protocol.ops import Op


class Scene:
    """A server after a realistic session: a guest, transactions, watches, a disconnect."""

    def __init__(self) -> None:
        self.server = Server()
        self.dom0 = Caller(self.server)
        self.dom0.write("/local/domain/5", "")
        self.dom0.set_perms("/local/domain/5", "n5", "r0")
        self.dom0.ok(Op.INTRODUCE, "5", "4096", "7")
        self.guest = Caller(self.server, 5, privileged=False)
        self.guest.write("data", "x")
        self.guest.ok(Op.WATCH, "data", "tok")
        self.dom0.ok(Op.WATCH, "/local", "all")
        self.tx = self.guest.start()
        self.guest.write("data", "in tx", tx=self.tx)
        self.guest.write("data", "outside")  # a saved version for the snapshot
        self.dom0_tx = self.dom0.start()
        gone = Caller(self.server)
        gone.ok(Op.WATCH, "/", "w")
        gone.start()
        self.server.disconnect(gone.conn_id)


def test_a_sound_server_has_no_problems() -> None:
    scene = Scene()
    assert invariants.problems(scene.server) == []
    assert invariants.problems(scene.server, scene.server.store.generation) == []
    assert invariants.problems(Server()) == []


def corrupt_tree(s: Scene) -> None:
    s.server.store.dirs["/tool"].children = {}  # its only child lost


def empty_perms(s: Scene) -> None:
    s.server.store.nodes["/tool"].perms = ()


def unknown_access(s: Scene) -> None:
    s.server.store.nodes["/tool"].perms = (Perm(0, 7),)


def reserved_owner(s: Scene) -> None:
    s.server.store.nodes["/tool"].perms = (Perm(0x7FF0, 0),)


def not_a_perm(s: Scene) -> None:
    s.server.store.nodes["/tool"].perms = ((0, 1),)  # type: ignore[assignment]


def bad_special_perms(s: Scene) -> None:
    s.server.special_perms["@releaseDomain"] = ()


def versions_out_of_order(s: Scene) -> None:
    s.server.store.history["/local/domain/5/data"].append((0, None))


def versions_not_queued(s: Scene) -> None:
    s.server.store.versions.order.clear()


def snapshot_leak(s: Scene) -> None:
    s.server.store.open_snapshot()


def transaction_lost(s: Scene) -> None:
    # Dropped without closing its snapshot or its domain's count, as a bug might.
    del s.server.connections[s.guest.conn_id].transactions[s.tx]


def transaction_misfiled(s: Scene) -> None:
    txs = s.server.connections[s.dom0.conn_id].transactions
    txs[99] = txs.pop(s.dom0_tx)


def domain_count_wrong(s: Scene) -> None:
    s.server._open_by_domain[5] += 1


def watch_of_a_closed_connection(s: Scene) -> None:
    s.server.watches.add(999, "/a", b"t", None, None)


def watch_not_by_path(s: Scene) -> None:
    s.server.watches.by_path["/local"].clear()


def watch_not_in_index(s: Scene) -> None:
    s.server.watches._index.remove("/local")


def unprivileged_set_wrong(s: Scene) -> None:
    s.server.watches.unprivileged.discard(s.guest.conn_id)


def watch_misfiled(s: Scene) -> None:
    (watch,) = s.server.watches.by_conn[s.dom0.conn_id].values()
    watch.token = b"other"


def target_out_of_step(s: Scene) -> None:
    s.server.domains[5].target = 6


def features_pending_for_a_domain(s: Scene) -> None:
    s.server.pending_features[5] = 0


DAMAGE: dict[str, tuple[Callable[[Scene], None], str]] = {
    "tree": (corrupt_tree, "/tool: an empty child dict"),
    "empty perms": (empty_perms, "/tool: perms () are not a non-empty tuple"),
    "unknown access": (unknown_access, "unknown access bits"),
    "reserved owner": (reserved_owner, "owned by reserved domid 32752"),
    "not a perm": (not_a_perm, "is not a Perm"),
    "special perms": (bad_special_perms, "@releaseDomain: perms () are not"),
    "versions out of order": (versions_out_of_order, "out of order"),
    "versions not queued": (versions_not_queued, "queued to prune"),
    "snapshot leak": (snapshot_leak, "open snapshots"),
    "transaction lost": (transaction_lost, "open snapshots"),
    "transaction misfiled": (transaction_misfiled, "filed as 99"),
    "domain count": (domain_count_wrong, "transactions per domain counted {5: 2}"),
    "watch leak": (watch_of_a_closed_connection, "watches of closed connections [999]"),
    "watch by path": (watch_not_by_path, "watches by connection but"),
    "watch index": (watch_not_in_index, "the subtree index"),
    "unprivileged set": (unprivileged_set_wrong, "unprivileged watchers"),
    "watch misfiled": (watch_misfiled, "filed under"),
    "target": (target_out_of_step, "acts for None, its domain for 6"),
    "features": (features_pending_for_a_domain, "features pending"),
}


@pytest.mark.parametrize("kind", DAMAGE)
def test_each_kind_of_damage_is_reported(kind: str) -> None:
    scene = Scene()
    damage, expected = DAMAGE[kind]
    damage(scene)
    found = invariants.problems(scene.server)
    assert any(expected in problem for problem in found), found


def test_transaction_lost_also_breaks_the_domain_count() -> None:
    scene = Scene()
    transaction_lost(scene)
    found = invariants.problems(scene.server)
    assert any("transactions per domain counted {5: 1} but open {}" in p for p in found), found


def test_the_generation_may_not_go_back() -> None:
    server = Server()
    now = server.store.generation
    assert invariants.problems(server, now) == []
    assert invariants.problems(server, now + 1) == [
        f"generation went back from {now + 1} to {now}"
    ]


def test_many_problems_of_a_kind_are_summed_up() -> None:
    server = Server()
    dom0 = Caller(server)
    for n in range(8):
        dom0.write(f"/many/{n}", "")
    for node in server.store.nodes.values():
        node.perms = (Perm(0, 7),)  # the owner and the accounting stay the same
    found = invariants.problems(server)
    assert len(found) == invariants.SHOWN + 1
    assert found[-1].startswith("... and ") and found[-1].endswith("more nodes with bad perms")


def test_control_check_reports_more_than_the_tree() -> None:
    scene = Scene()
    assert scene.dom0.ok(Op.CONTROL, "check") == b"OK\0"
    watch_of_a_closed_connection(scene)
    assert scene.dom0.error(Op.CONTROL, "check") == "EIO"
    assert any(
        "check: watches of closed connections [999]" in e.message
        for e in scene.dom0.effects if isinstance(e, Log)
    )


def test_a_check_that_trips_on_the_damage_is_reported() -> None:
    scene = Scene()
    # Damage no check expects: a node that is not a node at all.
    scene.server.store.dirs["/"].children["tool"] = None  # type: ignore[index,assignment]
    found = invariants.problems(scene.server)
    # AttributeError; TypeError where the core is compiled (its reads are typed).
    assert any(p.startswith(("checking the tree failed: AttributeError",
                             "checking the tree failed: TypeError")) for p in found), found
