"""Domain management in the core: introduce, release, targets, features, quotas."""

from __future__ import annotations

import pytest

from tests.core.harness import Caller
from tests.core.test_watches import events
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close, Listen, Unlisten
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
    for bad in (["0", "1", "2"], ["abc", "1", "2"], ["32752", "1", "2"], ["-1", "1", "2"],
                ["5", "1", "0"], ["5", "x", "2"], ["5", "1"]):
        assert dom0.error(Op.INTRODUCE, *bad) == "EINVAL", bad
    watcher = Caller(server)
    watcher.ok(Op.WATCH, "@introduceDomain", "i")
    watcher.ok(Op.WATCH, "@introduceDomain", "i1", "1")
    dom0.ok(Op.INTRODUCE, "5", "4096", "7")
    assert Listen(5) in dom0.effects
    assert events(dom0, of=watcher) == [("@introduceDomain", "i"), ("@introduceDomain/5", "i1")]
    dom0.ok(Op.INTRODUCE, "5", "4096", "8")  # same page: rebinding, no new event
    assert events(dom0, of=watcher) == []
    assert dom0.error(Op.INTRODUCE, "5", "9999", "7") == "EINVAL"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "5") == b"T\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "6") == b"F\0"
    assert dom0.ok(Op.IS_DOMAIN_INTRODUCED, "0") == b"T\0"


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
    assert dom0.error(Op.SET_TARGET, "10", "5") == "ENOENT"


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
