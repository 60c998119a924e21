"""CONTROL fault: commits refused, writes failed and events delayed on purpose."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.harness import Caller
from tests.core.test_control import argument_lists, crowded_server, replies_fit
from tests.core.test_domains import introduce
from tests.core.test_watches import events
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.effects import DelayEvents, Log, Send
from xenstore.daemon.faults import Faults
from xenstore.errors import EACCES, ENOSPC
from xenstore.protocol.codec import Packet, join
from xenstore.protocol.ops import Op


def faulty() -> Caller:
    """A dom0 caller of a server as ``--faults`` makes it."""
    return Caller(Server(Config(faults=True)))


def fault(dom0: Caller, *args: str) -> str:
    return dom0.ok(Op.CONTROL, "fault", *args).decode()


def armed(dom0: Caller) -> list[str]:
    return fault(dom0).rstrip("\0").splitlines()


# -- refused without --faults -----------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("eagain", "1"), ("clear",), ("bogus",)])
def test_without_the_flag_every_fault_command_is_refused(args: tuple[str, ...]) -> None:
    server = Server()
    dom0 = Caller(server)
    assert dom0.error(Op.CONTROL, "fault", *args) == "EACCES"
    assert not server.faults.eagain
    tx = dom0.start()
    dom0.end(tx)  # commits as ever


def test_a_guest_may_not_arm_faults() -> None:
    dom0 = faulty()
    server = dom0.server
    introduce(dom0, 5)
    guest = Caller(server, 5, False)
    assert guest.error(Op.CONTROL, "fault", "eagain", "1") == "EACCES"
    assert armed(dom0) == []


@pytest.mark.parametrize("args", [
    ("eagain",), ("eagain", "x"), ("eagain", "1", "99999"), ("eagain", "1", "2", "3"),
    ("write-errno", "relative", "EACCES"), ("write-errno", "/a//b", "EACCES"),
    ("write-errno", "/a", "ENOTANERRNO"), ("write-errno", "/a"),
    ("event-delay", "-1"), ("event-delay", "nan"), ("event-delay", "inf"),
    ("event-delay", "soon"), ("clear", "now"), ("bogus",),
])
def test_malformed_fault_commands_are_einval(args: tuple[str, ...]) -> None:
    dom0 = faulty()
    assert dom0.error(Op.CONTROL, "fault", *args) == "EINVAL"
    assert armed(dom0) == []


# -- eagain -----------------------------------------------------------------------------


def test_eagain_refuses_the_next_n_commits_then_counts_out() -> None:
    dom0 = faulty()
    server = dom0.server
    fault(dom0, "eagain", "3")
    assert armed(dom0) == ["eagain 3"]
    for left in (2, 1, 0):
        tx = dom0.start()
        dom0.write("/kept", f"try {left}", tx=tx)
        assert dom0.error(Op.TRANSACTION_END, "T", tx=tx) == "EAGAIN"
        # Aborted as a real conflict aborts it: nothing it wrote was applied...
        assert dom0.error(Op.READ, "/kept") == "ENOENT"
        # ...and it is gone.
        assert tx not in server.connections[dom0.conn_id].transactions
        assert armed(dom0) == ([f"eagain {left}"] if left else [])
    tx = dom0.start()
    dom0.write("/kept", "done", tx=tx)
    dom0.end(tx)
    assert dom0.read("/kept") == b"done"
    assert not server.connections[dom0.conn_id].transactions
    assert dom0.ok(Op.CONTROL, "check") == b"OK\0"


def test_eagain_refuses_read_only_commits_but_not_aborts() -> None:
    dom0 = faulty()
    fault(dom0, "eagain", "1")
    tx = dom0.start()
    dom0.end(tx, commit=False)  # an abort is not a commit: nothing counted
    assert armed(dom0) == ["eagain 1"]
    tx = dom0.start()
    dom0.read("/tool", tx=tx)
    assert dom0.error(Op.TRANSACTION_END, "T", tx=tx) == "EAGAIN"
    assert armed(dom0) == []


def test_an_injected_refusal_is_explained_as_one() -> None:
    dom0 = faulty()
    server = dom0.server
    fault(dom0, "eagain", "1")
    tx = dom0.start()
    dom0.error(Op.TRANSACTION_END, "T", tx=tx)
    (line,) = server.conflicts
    assert f"transaction {tx} of connection {dom0.conn_id}" in line
    assert "injected fault" in line
    assert any(isinstance(e, Log) and "injected fault" in e.message for e in dom0.effects)


def test_eagain_for_one_domain_spares_the_others() -> None:
    dom0 = faulty()
    server = dom0.server
    introduce(dom0, 5)
    introduce(dom0, 6)
    five, six = Caller(server, 5, False), Caller(server, 6, False)
    fault(dom0, "eagain", "2", "5")
    assert armed(dom0) == ["eagain 2 5"]
    for caller in (dom0, six):
        caller.end(caller.start())
    for _ in range(2):
        assert five.error(Op.TRANSACTION_END, "T", tx=five.start()) == "EAGAIN"
    five.end(five.start())
    # A refused guest transaction no longer counts against its quota.
    assert server._open_by_domain.get(5, 0) == 0


def test_a_domains_own_count_goes_before_everyones() -> None:
    dom0 = faulty()
    server = dom0.server
    introduce(dom0, 5)
    five = Caller(server, 5, False)
    fault(dom0, "eagain", "1")
    fault(dom0, "eagain", "1", "5")
    assert five.error(Op.TRANSACTION_END, "T", tx=five.start()) == "EAGAIN"
    assert armed(dom0) == ["eagain 1"]
    assert dom0.error(Op.TRANSACTION_END, "T", tx=dom0.start()) == "EAGAIN"
    five.end(five.start())


def test_eagain_again_sets_the_count_and_zero_disarms() -> None:
    dom0 = faulty()
    fault(dom0, "eagain", "5")
    fault(dom0, "eagain", "2")
    assert armed(dom0) == ["eagain 2"]
    fault(dom0, "eagain", "0")
    assert armed(dom0) == []
    dom0.end(dom0.start())


def test_a_quota_refusal_comes_before_the_injected_one() -> None:
    """The fault bites where the conflict check would: after the commit's quota checks."""
    dom0 = faulty()
    server = dom0.server
    introduce(dom0, 5)
    five = Caller(server, 5, False)
    dom0.ok(Op.SET_QUOTA, "5", "nodes", "2")  # its home and one more
    first, second = five.start(), five.start()
    five.write("a", "", tx=first)
    five.write("b", "", tx=second)
    five.end(first)
    fault(dom0, "eagain", "1")
    assert five.error(Op.TRANSACTION_END, "T", tx=second) == ENOSPC.name
    assert armed(dom0) == ["eagain 1"]


# -- write-errno ------------------------------------------------------------------------


WRITE_LIKE = [
    pytest.param(Op.WRITE, ("/be/vif/0/state", "4"), id="WRITE"),
    pytest.param(Op.MKDIR, ("/be/vif/0/new",), id="MKDIR"),
    pytest.param(Op.RM, ("/be/vif/0",), id="RM"),
    pytest.param(Op.SET_PERMS, ("/be/vif/0/state", "n0"), id="SET_PERMS"),
]


@pytest.mark.parametrize(("op", "fields"), WRITE_LIKE)
def test_write_errno_fails_each_write_like_op_under_the_path(
    op: Op, fields: tuple[str, ...]
) -> None:
    dom0 = faulty()
    server = dom0.server
    dom0.write("/be/vif/0/state", "1")
    fault(dom0, "write-errno", "/be/vif", "EROFS")
    assert armed(dom0) == ["write-errno /be/vif EROFS"]
    generation = server.store.generation
    assert dom0.error(op, *fields) == "EROFS"
    assert server.store.generation == generation  # nothing changed
    assert dom0.read("/be/vif/0/state") == b"1"
    dom0.ok(Op.READ, "/be/vif/0/state")  # reads are not refused
    fault(dom0, "write-errno", "/be/vif", "off")
    dom0.ok(op, *fields)


@pytest.mark.parametrize(("op", "fields"), WRITE_LIKE)
def test_write_errno_fails_the_op_inside_a_transaction_not_the_commit(
    op: Op, fields: tuple[str, ...]
) -> None:
    dom0 = faulty()
    dom0.write("/be/vif/0/state", "1")
    fault(dom0, "write-errno", "/be", "EACCES")
    tx = dom0.start()
    dom0.write("/elsewhere", "x", tx=tx)
    assert dom0.error(op, *fields, tx=tx) == "EACCES"
    dom0.end(tx)  # the transaction stayed usable; what else it did commits
    assert dom0.read("/elsewhere") == b"x"
    assert dom0.read("/be/vif/0/state") == b"1"


def test_write_errno_matches_whole_components_only() -> None:
    dom0 = faulty()
    fault(dom0, "write-errno", "/a/b", "ENOSPC")
    assert dom0.error(Op.WRITE, "/a/b", "") == "ENOSPC"
    assert dom0.error(Op.WRITE, "/a/b/c/d", "") == "ENOSPC"
    dom0.write("/a/bc", "")
    dom0.write("/a/c", "")
    dom0.write("/a", "")
    dom0.ok(Op.RM, "/a/bc")
    # Removing an ancestor is not a write under the path.
    dom0.ok(Op.RM, "/a")


def test_the_longest_armed_path_wins_and_root_covers_everything() -> None:
    dom0 = faulty()
    fault(dom0, "write-errno", "/", "EBUSY")
    fault(dom0, "write-errno", "/x/y", "eperm")  # names in any case
    assert armed(dom0) == ["write-errno / EBUSY", "write-errno /x/y EPERM"]
    assert dom0.error(Op.WRITE, "/x/y/z", "") == "EPERM"
    assert dom0.error(Op.WRITE, "/x", "") == "EBUSY"
    assert dom0.error(Op.MKDIR, "/") == "EBUSY"


def test_write_errno_applies_to_a_guests_relative_paths() -> None:
    dom0 = faulty()
    server = dom0.server
    introduce(dom0, 5)
    five = Caller(server, 5, False)
    fault(dom0, "write-errno", "/local/domain/5/device", "EIO")
    assert five.error(Op.WRITE, "device/vif/0/state", "1") == "EIO"
    five.write("data/x", "1")


# -- event-delay and the listing -----------------------------------------------------------


def test_event_delay_is_handed_to_the_shell_and_events_still_come() -> None:
    """The core has no clock: it only says how late, and makes its events as ever."""
    dom0 = faulty()
    fault(dom0, "event-delay", "0.25")
    assert DelayEvents(0.25) in dom0.effects
    assert armed(dom0) == ["event-delay 0.25"]
    dom0.ok(Op.WATCH, "/w", "t")
    assert events(dom0) == [("/w", "t")]
    fault(dom0, "event-delay", "0")
    assert DelayEvents(0.0) in dom0.effects
    assert armed(dom0) == []


def test_clear_disarms_everything() -> None:
    dom0 = faulty()
    server = dom0.server
    fault(dom0, "eagain", "3")
    fault(dom0, "eagain", "1", "0")
    fault(dom0, "write-errno", "/a", "EACCES")
    fault(dom0, "event-delay", "1.5")
    assert armed(dom0) == [
        "eagain 3", "eagain 1 0", "write-errno /a EACCES", "event-delay 1.5"
    ]
    fault(dom0, "clear")
    assert DelayEvents(0.0) in dom0.effects
    assert armed(dom0) == []
    assert server.faults == Faults(enabled=True)
    dom0.write("/a", "")
    dom0.end(dom0.start())


def test_a_long_listing_fits_in_one_reply() -> None:
    dom0 = faulty()
    for i in range(100):
        fault(dom0, "write-errno", f"/p{i:03d}/" + "x" * 100, "EACCES")
    reply = dom0.ok(Op.CONTROL, "fault")
    *shown, note = reply.decode().rstrip("\0").splitlines()
    assert shown[-1] == "write-errno /p099/" + "x" * 100 + " EACCES"
    assert note == f"({100 - len(shown)} earlier faults left out)"


@pytest.mark.parametrize("enabled", [False, True])
def test_every_fault_reply_fits(
    enabled: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As test_control's check of every command, with faults on as well as off."""
    monkeypatch.chdir(tmp_path)
    server = crowded_server()
    server.faults.enabled = enabled
    conn_id = server.connect()
    for args in argument_lists(b"fault", tmp_path):
        effects = server.handle(conn_id, Packet(Op.CONTROL, 1, 0, join(b"fault", *args)))
        replies_fit(effects)
        (reply,) = [e.packet for e in effects if isinstance(e, Send) and e.conn_id == conn_id]
        if not enabled:
            assert reply.payload == EACCES.name.encode() + b"\0", args
        elif args:  # none of them is a whole fault command
            assert reply.payload == b"EINVAL\0", args
        else:
            assert reply == Packet(Op.CONTROL, 1, 0, b"\0")  # nothing armed
