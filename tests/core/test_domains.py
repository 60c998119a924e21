"""Domain management in the core: introduce, release, targets, features, quotas."""

from __future__ import annotations

import pytest

from tests.core.harness import Caller
from tests.core.test_watches import events
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close, DiscardOutput, Listen, Send, Unlisten
from xenstore.protocol.ops import Op


def introduce(dom0: Caller, domid: int) -> None:
    dom0.write(f"/local/domain/{domid}", "")
    dom0.set_perms(f"/local/domain/{domid}", f"n{domid}", "r0")
    dom0.ok(Op.INTRODUCE, str(domid), "4096", "7")


@pytest.fixture
def server() -> Server:
    return Server()


@pytest.fixture
def dom0(server: Server) -> Caller:
    return Caller(server)


def test_introduce_validates_and_announces(server: Server, dom0: Caller) -> None:
    for bad in (["abc", "1", "2"], ["32752", "1", "2"], ["-1", "1", "2"], ["5x", "1", "2"],
                ["5", "1", "0"], ["5", "1", "-1"], ["5", "x", "2"], ["5", "1"], ["0", "1", "0"],
                ["5", "1", "4294967296"]):
        assert dom0.error(Op.INTRODUCE, *bad) == "EINVAL", bad
    assert server.domains == {}
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@introduceDomain", "i")
    watcher.ok(Op.WATCH, "@introduceDomain", "i1", "1")
    dom0.ok(Op.INTRODUCE, "5", "-4096", "7", "/local/domain/5")  # old xend's path: ignored
    assert Listen(5) in dom0.effects
    assert events(dom0, of=watcher) == [("@introduceDomain", "i"), ("@introduceDomain/5", "i1")]
    for page in ("4096", "9999"):  # introduced again, whatever the page: no new event
        dom0.ok(Op.INTRODUCE, "5", page, "8")
        assert events(dom0, of=watcher) == []
        assert not any(isinstance(e, Listen) for e in dom0.effects)
    assert server.domains[5].evtchn == 8
    assert dom0.error(Op.INTRODUCE, "5", "1", "0") == "EINVAL"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "5") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "6") == b"F\0"
    # 0 and DOMID_SELF always are; other reserved ids never (cxenstored answers so).
    for domid, answer in (("0", b"T\0"), ("32752", b"T\0"), ("32753", b"F\0"),
                          ("65535", b"F\0"), ("4294967295", b"F\0")):
        assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, domid) == answer, domid
    for text in ("", "abc", "-1", "5x", " 5", "4294967296"):
        assert dom0.error(Op.IS_DOMAIN_INTRODUCED, text) == "EINVAL", text


def test_introduce_0_is_ok_and_touches_nothing(server: Server, dom0: Caller) -> None:
    """dom0 is introduced from the start: OK, no socket, no event, no reset."""
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@introduceDomain", "i")
    watcher.ok(Op.WATCH, "/x", "x")
    tx = watcher.start()
    dom0.ok(Op.INTRODUCE, "0", "0", "1")
    assert [e for e in dom0.effects if not isinstance(e, Send)] == []
    assert events(dom0, of=watcher) == []
    assert len(server.watches) == 2 and tx in server.connections[watcher.conn_id].transactions
    assert 0 not in server.domains


def test_introduce_again_resets_the_domains_connections(server: Server, dom0: Caller) -> None:
    """As cxenstored resets the ring: watches, transactions and unsent output go
    (DiscardOutput); the connections stay, and nothing fires."""
    introduce(dom0, 5)
    introduce(dom0, 6)
    guest, second = Caller(server, 5, False), Caller(server, 5, False)
    other = Caller(server, 6, False)
    guest.ok(Op.WATCH, "name", "w")
    second.ok(Op.WATCH, "@releaseDomain", "r")
    other.ok(Op.WATCH, "name", "o")
    tx = guest.start()
    guest.write("in-tx", "x", tx=tx)
    other_tx = other.start()
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@introduceDomain", "i")
    watcher.ok(Op.WATCH, "/local/domain/5", "home")
    dom0.ok(Op.INTRODUCE, "5", "12345", "9")
    assert {DiscardOutput(guest.conn_id), DiscardOutput(second.conn_id)} <= set(dom0.effects)
    assert DiscardOutput(other.conn_id) not in dom0.effects
    # The discards come before the reply (the shell drops what was queued, not it).
    kinds = [type(e) for e in dom0.effects]
    assert kinds.index(Send) > max(i for i, k in enumerate(kinds) if k is DiscardOutput)
    assert events(dom0, of=watcher) == []
    assert not server.watches.by_conn.get(guest.conn_id)
    assert not server.watches.by_conn.get(second.conn_id)
    assert len(server.watches) == 3  # other's and the watcher's
    assert guest.error(Op.READ, "in-tx", tx=tx) == "ENOENT"
    assert server._open_by_domain.get(5, 0) == 0
    assert other_tx in server.connections[other.conn_id].transactions
    # The connections go on: a new watch, a new transaction, the old watch silent.
    dom0.write("/local/domain/5/name", "v")
    assert events(dom0, of=guest) == []
    guest.ok(Op.WATCH, "name", "again")
    assert events(guest) == [("name", "again")]
    assert guest.start() != 0
    assert server.store.check() == []


def test_introduce_again_keeps_the_domains_state(server: Server, dom0: Caller) -> None:
    """Its quotas, target, shutdown state and nodes are the domain's, not its ring's."""
    introduce(dom0, 5)
    introduce(dom0, 9)
    Caller(server, 5, False).write("kept", "1")
    dom0.ok(Op.SET_QUOTA, "9", "nodes", "7")
    dom0.ok(Op.SET_TARGET, "9", "5")
    server.domain_died(9, dead=False)
    dom0.ok(Op.INTRODUCE, "9", "1", "2")
    assert server.domains[9].target == 5 and server.domains[9].shutdown
    assert server.domains[9].quotas == {"nodes": 7}
    assert Caller(server, 9, False).read("/local/domain/5/kept") == b"1"


def test_guests_may_not_manage_domains(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    guest = Caller(server, 5, False)
    for op, args in [(Op.INTRODUCE, ["6", "1", "2"]), (Op.RELEASE, ["5"]),
                     (Op.IS_DOMAIN_INTRODUCED, ["5"]), (Op.RESUME, ["5"]),
                     (Op.SET_TARGET, ["5", "6"]), (Op.GET_QUOTA, []),
                     (Op.SET_QUOTA, ["nodes", "1"]), (Op.GET_FEATURE, []),
                     (Op.SET_FEATURE, ["6", "0"])]:
        assert guest.error(op, *args) == "EACCES", op
    assert guest.ok(Op.GET_DOMAIN_PATH, "7") == b"/local/domain/7\0"


def test_release_closes_cleans_up_and_announces(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    guest = Caller(server, 5, False)
    guest.write("device/vif", "1")
    guest.ok(Op.WATCH, "device", "d")
    dom0.write("/shared", "")
    dom0.set_perms("/shared", "n0", "r5", "b6")
    dom0.write("/local/domain/0/backend/vif/5", "")
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@releaseDomain", "r")
    watcher.ok(Op.WATCH, "/local/domain/5", "home")
    dom0.ok(Op.RELEASE, "5")
    assert Close(guest.conn_id, "domain 5 released") in dom0.effects
    assert Unlisten(5) in dom0.effects
    assert guest.conn_id not in server.connections
    assert len(server.watches) == 2  # only the watcher's
    assert events(dom0, of=watcher) == [("/local/domain/5", "home"), ("@releaseDomain", "r")]
    # What it owned is gone (with events); ACL entries naming it are dropped.
    assert dom0.error(Op.READ, "/local/domain/5") == "ENOENT"
    assert dom0.get_perms("/shared") == ["n0", "b6"]
    assert dom0.error(Op.RELEASE, "5") == "ENOENT"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "5") == b"F\0"
    assert server.store.check() == []


def test_keep_orphans_hands_nodes_to_dom0() -> None:
    server = Server(Config(keep_orphans=True))
    dom0 = Caller(server)
    introduce(dom0, 5)
    Caller(server, 5, False).write("data", "kept")
    dom0.ok(Op.RELEASE, "5")
    assert dom0.read("/local/domain/5/data") == b"kept"
    assert dom0.get_perms("/local/domain/5/data") == ["n0", "r0"]
    assert server.store.check() == []


def test_shutdown_fires_release_once_until_resumed(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@releaseDomain/5", "only5")
    watcher.effects = server.domain_died(5, dead=False)
    assert events(watcher) == [("@releaseDomain/5", "only5")]
    watcher.effects = server.domain_died(5, dead=False)
    assert events(watcher) == []
    dom0.ok(Op.RESUME, "5")
    watcher.effects = server.domain_died(5, dead=False)
    assert events(watcher) == [("@releaseDomain/5", "only5")]
    watcher.effects = server.domain_died(5, dead=True)
    assert events(watcher) == [("@releaseDomain/5", "only5")]
    assert 5 not in server.domains


def test_special_events_reach_guests_as_current_cxenstored(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    introduce(dom0, 6)
    guest = Caller(server, 5, False)
    guest.ok(Op.WATCH, "@releaseDomain", "r")
    guest.ok(Op.WATCH, "@introduceDomain", "i")
    dom0.ok(Op.INTRODUCE, "7", "1", "1")
    assert events(dom0, of=guest) == []  # @introduceDomain needs a grant
    dom0.set_perms("@introduceDomain", "n0", "r5")
    dom0.ok(Op.INTRODUCE, "8", "1", "1")
    assert events(dom0, of=guest) == [("@introduceDomain", "i")]
    dom0.ok(Op.RELEASE, "6")  # @releaseDomain is readable by everyone
    assert events(dom0, of=guest) == [("@releaseDomain", "r")]


def test_set_target_gives_the_targets_rights(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    introduce(dom0, 9)
    stubdom = Caller(server, 9, False)
    assert stubdom.error(Op.READ, "/local/domain/5") == "EACCES"
    dom0.ok(Op.SET_TARGET, "9", "5")
    assert stubdom.ok(Op.READ, "/local/domain/5") == b""
    stubdom.write("/local/domain/5/from-stubdom", "x")
    assert Caller(server, 9, False).read("/local/domain/5/from-stubdom") == b"x"
    # Both must be introduced: ENOENT for either, and nothing changes.
    assert dom0.error(Op.SET_TARGET, "10", "5") == "ENOENT"
    assert dom0.error(Op.SET_TARGET, "9", "10") == "ENOENT"
    assert dom0.error(Op.SET_TARGET, "9", "32752") == "ENOENT"
    assert server.domains[9].target == 5
    for bad in (["9"], ["9", "5", "6"], ["abc", "5"], ["9", "-1"], ["9x", "5"]):
        assert dom0.error(Op.SET_TARGET, *bad) == "EINVAL", bad


def test_set_target_with_dom0(server: Server, dom0: Caller) -> None:
    """dom0 is always introduced, so cxenstored accepts it on either side; a
    domain targeting dom0 gets dom0's rights over dom0's nodes."""
    introduce(dom0, 5)
    dom0.write("/secret", "s")
    guest = Caller(server, 5, False)
    assert guest.error(Op.READ, "/secret") == "EACCES"
    dom0.ok(Op.SET_TARGET, "0", "5")  # dom0's connections are privileged already
    dom0.ok(Op.SET_TARGET, "0", "0")
    assert all(c.target is None for c in server.connections.values())
    dom0.ok(Op.SET_TARGET, "5", "0")
    assert guest.read("/secret") == b"s"
    assert Caller(server, 5, False).read("/secret") == b"s"
    assert dom0.error(Op.SET_TARGET, "0", "6") == "ENOENT"
    assert dom0.error(Op.SET_TARGET, "6", "0") == "ENOENT"


def test_release_and_resume_arguments(server: Server, dom0: Caller) -> None:
    """0 is EINVAL (as cxenstored), a domain not introduced ENOENT (reserved ids too)."""
    for op in (Op.RELEASE, Op.RESUME):
        for domid in ("0", "00"):
            assert dom0.error(op, domid) == "EINVAL", (op, domid)
        for domid in ("5", "32752", "65535", "100000"):
            assert dom0.error(op, domid) == "ENOENT", (op, domid)
        for bad in ("", "abc", "-1", "5x", " 5", "4294967296"):
            assert dom0.error(op, bad) == "EINVAL", (op, bad)
        assert dom0.error(op, "5", "6") == "EINVAL"
    introduce(dom0, 5)
    dom0.ok(Op.RESUME, "5")
    dom0.ok(Op.RELEASE, "5")
    assert dom0.error(Op.RELEASE, "5") == "ENOENT"
    assert dom0.error(Op.RESUME, "5") == "ENOENT"


def test_features(server: Server, dom0: Caller) -> None:
    assert dom0.ok(Op.GET_FEATURE) == b"0\0"
    dom0.ok(Op.SET_FEATURE, "5", "0")
    assert dom0.ok(Op.GET_FEATURE, "5") == b"0\0"
    assert dom0.error(Op.SET_FEATURE, "5", "1") == "EINVAL"  # nothing to offer
    introduce(dom0, 5)
    assert dom0.error(Op.SET_FEATURE, "5", "0") == "EBUSY"
    assert dom0.error(Op.GET_FEATURE, "6") == "ENOENT"


def test_quota_ops(server: Server, dom0: Caller) -> None:
    names = dom0.ok(Op.GET_QUOTA).rstrip(b"\0").decode().split(" ")
    assert {"nodes", "watches", "transactions", "node-size", "permissions"} <= set(names)
    assert dom0.ok(Op.GET_QUOTA, "nodes") == b"1000\0"
    dom0.ok(Op.SET_QUOTA, "nodes", "50")
    assert dom0.ok(Op.GET_QUOTA, "nodes") == b"50\0"
    introduce(dom0, 5)
    assert dom0.ok(Op.GET_QUOTA, "5", "nodes") == b"50\0"
    dom0.ok(Op.SET_QUOTA, "5", "nodes", "3")
    assert dom0.ok(Op.GET_QUOTA, "5", "nodes") == b"3\0"
    assert dom0.ok(Op.GET_QUOTA, "nodes") == b"50\0"
    assert dom0.error(Op.GET_QUOTA, "bogus") == "EINVAL"
    assert dom0.error(Op.GET_QUOTA, "6", "nodes") == "ENOENT"
    assert dom0.error(Op.SET_QUOTA, "nodes", "x") == "EINVAL"


def test_every_guest_quota(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    for name, value in [("nodes", "4"), ("watches", "2"), ("permissions", "2"),
                        ("node-size", "64"), ("transactions", "1")]:
        dom0.ok(Op.SET_QUOTA, "5", name, value)
    guest = Caller(server, 5, False)
    other = Caller(server, 5, False)  # quotas are the domain's, across connections
    guest.write("a", "")  # /local/domain/5 (owned) + a: 2 nodes
    guest.write("b/c", "")  # 4
    assert guest.error(Op.WRITE, "d", "") == "ENOSPC"
    assert other.error(Op.MKDIR, "e") == "ENOSPC"
    guest.ok(Op.WATCH, "a", "1")
    other.ok(Op.WATCH, "a", "2")
    assert guest.error(Op.WATCH, "a", "3") == "ENOSPC"
    assert guest.error(Op.SET_PERMS, "a", "n5", "r0", "r6") == "ENOSPC"
    guest.set_perms("a", "n5", "r0")
    assert guest.error(Op.WRITE, "a", "x" * 60) == "ENOSPC"
    guest.write("a", "x" * 20)
    guest.start()
    assert other.error(Op.TRANSACTION_START, "") == "ENOSPC"
    # dom0 is exempt from all of them (though what it creates there counts as 5's).
    for i in range(10):
        dom0.write(f"/local/domain/5/dom0/{i}", "y" * 3000)
    assert server.store.owned[5] == 15
    # Removing nodes gives room again.
    dom0.ok(Op.RM, "/local/domain/5/dom0")
    guest.ok(Op.RM, "b")
    guest.write("d", "")
    # None of this stops other domains.
    introduce(dom0, 6)
    Caller(server, 6, False).write("fine", "")


def test_memory_quota(server: Server, dom0: Caller) -> None:
    introduce(dom0, 5)
    dom0.ok(Op.SET_QUOTA, "5", "memory", "3000")
    guest = Caller(server, 5, False)
    guest.write("a", "x" * 1000)
    guest.write("b", "x" * 1000)
    assert guest.error(Op.WRITE, "c", "x" * 1000) == "ENOMEM"
    assert guest.error(Op.WATCH, "a", "t" * 1000) == "ENOMEM"
    assert any("memory quota hit" in getattr(e, "message", "") for e in guest.effects)
    guest.ok(Op.RM, "b")
    guest.write("c", "x" * 1000)
    guest.ok(Op.WATCH, "a", "t" * 100)
