"""Watches in the core: depth, specials, permission filtering, transactions, cost."""

from __future__ import annotations

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.protocol.ops import Op


def events(caller: Caller, of: Caller | None = None) -> list[tuple[str, str]]:
    """The watch events the last request sent to ``of`` (default: the caller)."""
    target = (of or caller).conn_id
    out = []
    for effect in caller.effects:
        if (
            isinstance(effect, Send)
            and effect.conn_id == target
            and effect.packet.op == Op.WATCH_EVENT
        ):
            epath, token, _ = effect.packet.payload.split(b"\0")
            out.append((epath.decode(), token.decode()))
    return out


def watch(caller: Caller, path: str, token: str, depth: int | None = None) -> None:
    fields = [path, token] if depth is None else [path, token, str(depth)]
    caller.ok(Op.WATCH, *fields)
    assert events(caller) == [(path, token)]  # the first event, at once


def test_depth_limits_the_levels_that_match() -> None:
    a = Caller(Server())
    watch(a, "/d", "any")
    watch(a, "/d", "d0", depth=0)
    watch(a, "/d", "d1", depth=1)
    watch(a, "/d", "d2", depth=2)
    a.write("/d", "")
    assert events(a) == [("/d", "any"), ("/d", "d0"), ("/d", "d1"), ("/d", "d2")]
    a.write("/d/x", "")
    assert events(a) == [("/d/x", "any"), ("/d/x", "d1"), ("/d/x", "d2")]
    a.write("/d/x/y", "")
    assert events(a) == [("/d/x/y", "any"), ("/d/x/y", "d2")]
    a.write("/d/x/y/z", "")
    assert events(a) == [("/d/x/y/z", "any")]
    # A removal fires every watch on the removed node, whatever its depth.
    a.ok(Op.RM, "/d")
    assert events(a) == [("/d", "any"), ("/d", "d0"), ("/d", "d1"), ("/d", "d2")]


def test_depth_on_the_root() -> None:
    a = Caller(Server())
    watch(a, "/", "r1", depth=1)
    a.write("/top", "")
    assert events(a) == [("/top", "r1")]
    a.write("/top/below", "")
    assert events(a) == []


def test_bad_depth_and_argument_counts() -> None:
    a = Caller(Server())
    assert a.error(Op.WATCH, "/x", "t", "-1") == "EINVAL"
    assert a.error(Op.WATCH, "/x", "t", "one") == "EINVAL"
    assert a.error(Op.WATCH, "/x", "t", "1", "more") == "EINVAL"
    assert a.error(Op.WATCH, "/x") == "EINVAL"
    assert a.error(Op.UNWATCH, "/x") == "EINVAL"


def test_special_events_and_their_depth_form() -> None:
    server = Server()
    a = Caller(server)
    watch(a, "@introduceDomain", "intro")
    watch(a, "@releaseDomain", "rel")
    watch(a, "@releaseDomain", "rel1", depth=1)
    watch(a, "@releaseDomain/7", "only7")

    def fired(name: str, domid: int) -> list[tuple[str, str]]:
        a.effects = server.fire_special(name, domid)
        return events(a)

    assert fired("@introduceDomain", 7) == [("@introduceDomain", "intro")]
    assert fired("@releaseDomain", 7) == [
        ("@releaseDomain", "rel"), ("@releaseDomain/7", "rel1"), ("@releaseDomain/7", "only7"),
    ]
    assert fired("@releaseDomain", 8) == [("@releaseDomain", "rel"), ("@releaseDomain/8", "rel1")]
    a.write("/local/domain/7", "")  # an ordinary change fires no special watch
    assert events(a) == []


def test_special_events_reach_guests_only_with_a_grant() -> None:
    server = Server()
    dom0 = Caller(server)
    guest = Caller(server, domid=3, privileged=False)
    guest.ok(Op.WATCH, "@introduceDomain", "i")
    assert [e.conn_id for e in server.fire_special("@introduceDomain", 4)] == []
    dom0.set_perms("@introduceDomain", "n0", "r3")
    assert [e.conn_id for e in server.fire_special("@introduceDomain", 4)] == [guest.conn_id]


def test_relative_watches_report_relative_paths() -> None:
    server = Server()
    dom0 = Caller(server)
    dom0.write("/local/domain/3", "")
    dom0.set_perms("/local/domain/3", "n3")
    guest = Caller(server, domid=3, privileged=False)
    guest.ok(Op.WATCH, "device", "dev")
    assert events(guest) == [("device", "dev")]
    dom0.write("/local/domain/3/device/vif/0", "x")
    assert events(dom0, of=guest) == [("device/vif/0", "dev")]
    guest.ok(Op.UNWATCH, "device", "dev")
    dom0.write("/local/domain/3/device/vif/1", "x")
    assert events(dom0, of=guest) == []


def test_events_are_filtered_by_what_the_watcher_may_read() -> None:
    server = Server()
    dom0 = Caller(server)
    guest = Caller(server, domid=5, privileged=False)
    dom0.write("/open", "")
    dom0.set_perms("/open", "n0", "r5")
    dom0.write("/closed", "")
    guest.ok(Op.WATCH, "/open", "o")
    guest.ok(Op.WATCH, "/closed", "c")
    dom0.write("/open/x", "")  # readable through its parent /open
    assert events(dom0, of=guest) == [("/open/x", "o")]
    dom0.write("/closed/x", "")  # neither it nor its parent is readable
    assert events(dom0, of=guest) == []
    dom0.write("/closed/x/y", "")
    assert events(dom0, of=guest) == []


def test_set_perms_is_judged_by_old_and_new_perms() -> None:
    server = Server()
    dom0 = Caller(server)
    guest = Caller(server, domid=5, privileged=False)
    dom0.write("/p/node", "")
    dom0.set_perms("/p/node", "n0", "r5")
    guest.ok(Op.WATCH, "/p/node", "t")
    # Taking away the guest's read access still tells it (the old perms let it read).
    dom0.set_perms("/p/node", "n0")
    assert events(dom0, of=guest) == [("/p/node", "t")]
    # Now it may read neither the node nor /p: it hears nothing.
    dom0.write("/p/node", "secret")
    assert events(dom0, of=guest) == []
    # Granting access again is heard (the new perms let it read).
    dom0.set_perms("/p/node", "n0", "r5")
    assert events(dom0, of=guest) == [("/p/node", "t")]


def test_removal_is_judged_by_the_removed_nodes_perms() -> None:
    server = Server()
    dom0 = Caller(server)
    guest = Caller(server, domid=5, privileged=False)
    dom0.write("/fe/dev/state", "")
    dom0.set_perms("/fe/dev", "n0", "r5")
    dom0.set_perms("/fe/dev/state", "n0", "r5")
    guest.ok(Op.WATCH, "/fe/dev/state", "st")
    guest.ok(Op.WATCH, "/fe/dev", "dev")
    dom0.ok(Op.RM, "/fe/dev")  # / and /fe are unreadable to the guest; the nodes were
    assert events(dom0, of=guest) == [("/fe/dev/state", "st"), ("/fe/dev", "dev")]


def test_transaction_events_fire_at_commit_only() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    watch(b, "/t", "w")
    tx = a.start()
    a.write("/t/x", "1", tx=tx)
    a.ok(Op.RM, "/t/x", tx=tx)
    a.write("/t/y", "2", tx=tx)
    assert events(a, of=b) == []
    a.end(tx)
    # One event per node the commit changed, in the order they were first changed.
    assert events(a, of=b) == [("/t/x", "w"), ("/t/y", "w")]
    tx = a.start()
    a.write("/t/z", "3", tx=tx)
    a.end(tx, commit=False)
    assert events(a, of=b) == []


def test_own_events_come_before_the_reply_and_watch_event_after() -> None:
    a = Caller(Server())
    a.ok(Op.WATCH, "/o", "t")
    ops = [e.packet.op for e in a.effects if isinstance(e, Send)]
    assert ops == [Op.WATCH, Op.WATCH_EVENT]
    a.write("/o", "")
    ops = [e.packet.op for e in a.effects if isinstance(e, Send)]
    assert ops == [Op.WATCH_EVENT, Op.WRITE]


def test_every_change_is_an_event_none_merged() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    watch(b, "/m", "t")
    total = []
    for _ in range(50):
        a.write("/m", "same")
        total += events(a, of=b)
    assert total == [("/m", "t")] * 50


def test_reset_watches_and_disconnect_drop_watches() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    watch(a, "/r", "t")
    a.ok(Op.RESET_WATCHES, "")
    b.write("/r", "")
    assert events(b, of=a) == []
    watch(a, "/r", "t")  # no EEXIST: it was dropped
    server.disconnect(a.conn_id)
    assert len(server.watches) == 0
    b.write("/r", "")


def test_ten_thousand_unrelated_watches_cost_a_write_nothing() -> None:
    server = Server()
    a, b = Caller(server), Caller(server)
    for i in range(10_000):
        b.ok(Op.WATCH, f"/unrelated/n{i}", "t")
    watch(b, "/target", "mine")
    registry = server.watches
    registry.examined = 0
    a.write("/target/leaf", "")
    assert events(a, of=b) == [("/target/leaf", "mine")]
    assert registry.examined <= 2
    registry.examined = 0
    a.write("/unrelated/n5/below", "")
    assert registry.examined <= 2
    # Removing a subtree consults the sorted index, not every watch.
    registry.examined = 0
    a.write("/elsewhere/a/b/c", "")
    a.ok(Op.RM, "/elsewhere")
    assert registry.examined == 0
    registry.examined = 0
    a.ok(Op.RM, "/unrelated")
    assert registry.examined <= 3 * 10_000  # ...and touches only the watches inside
