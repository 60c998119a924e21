"""pyxs, a third-party pure-Python XenStore client, on our daemon and on cxenstored.

The same scripted scenario runs through pyxs's public API (``Client``, its
transactions, ``Monitor`` watches) against our daemon and against Xen 4.17's C
xenstored; what pyxs hands back (values, lists, permissions, commit verdicts,
watch events, and the exceptions it raises with their arguments) must be
identical. A few facts are also checked on each daemon alone, so that two
equally broken runs cannot pass.

pyxs multiplexes everything over one connection (a ``Router`` thread): requests
outside a transaction and inside one share it, so "another writer" below is a
copy of the client with no transaction, on the same socket. Because a
connection's own watch events reach it before the reply to the request that
caused them (on both daemons), the events are all queued when a call returns:
draining the monitor's queue after each step is deterministic. A new watch's
first event is the exception: both daemons send it after the reply to WATCH, so
the scenario waits for it. The scenario runs in a thread with a deadline, so a
reply that never comes fails the test instead of hanging it.
"""

from __future__ import annotations

import copy
import errno
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import OurDaemon, reference_daemon

try:
    import pyxs
except ImportError as exc:  # pragma: no cover - depends on the environment
    pyxs = None
    PYXS_MISSING = f"pyxs is not importable ({exc}); pip install pyxs (in the test extras)"
else:
    PYXS_MISSING = ""

BASE = b"/interop/pyxs"
SCENARIO_TIMEOUT = 60.0

Observation = tuple[str, Any]


def require_pyxs() -> None:
    if pyxs is None:
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(PYXS_MISSING)
        pytest.skip(PYXS_MISSING)


def outcome(call: Callable[[], Any]) -> Any:
    """What a pyxs call returned, or the exception it raised: type name and args."""
    try:
        result = call()
    except Exception as exc:  # every exception pyxs raises is part of the observation
        return ("raised", type(exc).__name__, exc.args)
    if isinstance(result, list):
        return list(result)
    return result


class Recorder:
    def __init__(self, monitor: Any) -> None:
        self.observations: list[Observation] = []
        self.monitor = monitor
        # unwatched=True: pyxs's own filtering would block on a filtered-out event;
        # the queue is drained only while it has something in it.
        self.events_iter = monitor.wait(unwatched=True)

    def record(self, label: str, call: Callable[[], Any]) -> Any:
        result = outcome(call)
        assert label not in dict(self.observations), f"duplicate label {label}"
        self.observations.append((label, result))
        return result

    def first_event(self, label: str) -> None:
        """Wait for a new watch's first event: it comes after the reply to WATCH."""
        event = next(self.events_iter)
        self.observations.append((f"first event: {label}", (event.path, event.token)))

    def events(self, label: str) -> list[tuple[bytes, bytes]]:
        """Every watch event queued so far (all of them precede the last reply)."""
        got = []
        while self.monitor.events.qsize():
            event = next(self.events_iter)
            got.append((event.path, event.token))
        self.observations.append((f"events: {label}", got))
        return got


def scenario(socket_path: str) -> list[Observation]:
    with pyxs.Client(unix_socket_path=socket_path) as c:
        other = copy.copy(c)  # same connection (pyxs's router), never in a transaction
        monitor = c.monitor()
        r = Recorder(monitor)
        rec = r.record

        # The initial tree and basic reads.
        rec("read /", lambda: c.read(b"/"))
        rec("list /tool", lambda: c.list(b"/tool"))
        rec("read /tool/xenstored", lambda: c.read(b"/tool/xenstored"))
        rec("get_domain_path 0", lambda: c.get_domain_path(0))
        rec("get_domain_path 7", lambda: c.get_domain_path(7))
        rec("get_domain_path 65535", lambda: c.get_domain_path(65535))
        rec("is_domain_introduced 0", lambda: c.is_domain_introduced(0))
        rec("is_domain_introduced 12", lambda: c.is_domain_introduced(12))

        # A watch before anything exists: the first event is the watched path itself.
        rec("watch base", lambda: monitor.watch(BASE, b"base"))
        r.first_event("watch base")
        rec("watch @introduceDomain", lambda: monitor.watch(b"@introduceDomain", b"intro"))
        r.first_event("watch @introduceDomain")

        # write / read, implicit creation of parents.
        rec("write a", lambda: c.write(BASE + b"/a", b"1"))
        r.events("write a")
        rec("read a", lambda: c.read(BASE + b"/a"))
        rec("read parent", lambda: c.read(BASE))
        rec("read /interop", lambda: c.read(b"/interop"))
        rec("write a again (same value)", lambda: c.write(BASE + b"/a", b"1"))
        r.events("write a again")
        rec("write b", lambda: c.write(BASE + b"/b", b"two words, punctuation: ok!"))
        rec("read b", lambda: c[BASE + b"/b"])
        big = bytes(ord("a") + i % 26 for i in range(3000))
        rec("write big", lambda: c.write(BASE + b"/big", big))
        rec("read big is intact", lambda: c.read(BASE + b"/big") == big)
        rec("write empty value (pyxs refuses it)", lambda: c.write(BASE + b"/e", b""))
        rec("write newline (pyxs refuses it)", lambda: c.write(BASE + b"/e", b"a\nb"))
        rec("write too long for a packet", lambda: c.write(BASE + b"/e", b"x" * 5000))
        r.events("writes")

        # read errors.
        rec("read missing", lambda: c.read(BASE + b"/missing"))
        rec("read missing, default", lambda: c.read(BASE + b"/missing", b"dflt"))
        rec("read below a missing parent", lambda: c.read(BASE + b"/missing/deeper"))
        rec("read bad path (client side)", lambda: c.read(b"/bad path"))
        rec("read trailing slash (client side)", lambda: c.read(BASE + b"/"))
        rec("read a value as a directory", lambda: c.list(BASE + b"/a"))

        # mkdir.
        rec("mkdir d/e/f", lambda: c.mkdir(BASE + b"/d/e/f"))
        r.events("mkdir d/e/f")
        rec("read d/e", lambda: c.read(BASE + b"/d/e"))
        rec("mkdir existing a", lambda: c.mkdir(BASE + b"/a"))
        r.events("mkdir existing")
        rec("a unchanged by mkdir", lambda: c.read(BASE + b"/a"))
        rec("list base", lambda: c.list(BASE))
        rec("list d", lambda: c.list(BASE + b"/d"))
        rec("list d/e/f (empty)", lambda: c.list(BASE + b"/d/e/f"))
        rec("list missing", lambda: c.list(BASE + b"/missing"))
        # A listing longer than a packet (4096 bytes): DIRECTORY answers E2BIG.
        wide = [b"/interop/wide/" + b"%02d" % i + b"x" * 98 for i in range(45)]
        rec("write 45 long names", lambda: [c.write(path, b"w") for path in wide][-1])
        rec("list too long", lambda: c.list(b"/interop/wide"))
        rec("read one of them", lambda: c.read(wide[44]))
        rec("delete wide", lambda: c.delete(b"/interop/wide"))
        rec("delete / (refused)", lambda: c.delete(b"/"))
        rec("write /", lambda: c.write(b"/", b"root"))
        rec("read / after write", lambda: c.read(b"/"))

        # exists.
        rec("exists a", lambda: c.exists(BASE + b"/a"))
        rec("exists d/e/f", lambda: c.exists(BASE + b"/d/e/f"))
        rec("exists missing", lambda: c.exists(BASE + b"/missing"))
        rec("exists missing/deeper", lambda: c.exists(BASE + b"/missing/deeper"))
        rec("walk d", lambda: list(c.walk(BASE + b"/d")))

        # relative paths resolve below /local/domain/0.
        rec("write relative", lambda: c.write(b"pyxs-rel/x", b"rel"))
        rec("read relative as absolute", lambda: c.read(b"/local/domain/0/pyxs-rel/x"))
        rec("list relative", lambda: c.list(b"pyxs-rel"))

        # permissions.
        rec("get_perms a", lambda: c.get_perms(BASE + b"/a"))
        rec("get_perms /", lambda: c.get_perms(b"/"))
        rec("set_perms d", lambda: c.set_perms(BASE + b"/d", [b"n0", b"r5", b"w6", b"b7"]))
        r.events("set_perms d")
        rec("get_perms d", lambda: c.get_perms(BASE + b"/d"))
        rec("get_perms d/e (set before: unchanged)", lambda: c.get_perms(BASE + b"/d/e"))
        rec("write d/new", lambda: c.write(BASE + b"/d/new", b"n"))
        rec("get_perms d/new (inherits d's)", lambda: c.get_perms(BASE + b"/d/new"))
        rec("set_perms owner 3", lambda: c.set_perms(BASE + b"/b", [b"r3"]))
        rec("get_perms owner 3", lambda: c.get_perms(BASE + b"/b"))
        rec("set_perms missing", lambda: c.set_perms(BASE + b"/missing", [b"n0"]))
        rec("set_perms empty list", lambda: c.set_perms(BASE + b"/a", []))
        rec("set_perms malformed (client side)", lambda: c.set_perms(BASE + b"/a", [b"x1"]))
        rec("get_perms missing", lambda: c.get_perms(BASE + b"/missing"))
        rec("get_perms @releaseDomain", lambda: c.get_perms(b"@releaseDomain"))
        rec("read @releaseDomain", lambda: c.read(b"@releaseDomain"))
        rec("write @foo", lambda: c.write(b"@foo", b"x"))
        r.events("permissions")

        # rm.
        rec("delete d (subtree)", lambda: c.delete(BASE + b"/d"))
        r.events("delete d")
        rec("exists d after delete", lambda: c.exists(BASE + b"/d"))
        rec("exists d/e/f after delete", lambda: c.exists(BASE + b"/d/e/f"))
        rec("delete missing child of existing", lambda: c.delete(BASE + b"/nothing"))
        rec("delete below missing parent", lambda: c.delete(BASE + b"/nothing/deeper"))
        r.events("deletes of missing nodes")
        rec("list base after delete", lambda: c.list(BASE))

        # transaction, committed.
        rec("transaction", c.transaction)
        rec("second transaction on the client", c.transaction)
        rec("tx write t1", lambda: c.write(BASE + b"/t1", b"in-tx"))
        rec("tx read t1", lambda: c.read(BASE + b"/t1"))
        rec("tx mkdir t2/x", lambda: c.mkdir(BASE + b"/t2/x"))
        rec("tx delete a", lambda: c.delete(BASE + b"/a"))
        rec("tx list base", lambda: c.list(BASE))
        rec("tx exists a", lambda: c.exists(BASE + b"/a"))
        rec("outside read t1 (not yet)", lambda: other.read(BASE + b"/t1"))
        rec("outside read a (still there)", lambda: other.read(BASE + b"/a"))
        r.events("transaction before commit (none)")
        rec("commit", c.commit)
        r.events("commit")
        rec("read t1 after commit", lambda: c.read(BASE + b"/t1"))
        rec("exists a after commit", lambda: c.exists(BASE + b"/a"))
        rec("list base after commit", lambda: c.list(BASE))

        # transaction, aborted.
        rec("transaction to abort", c.transaction)
        rec("tx write t3", lambda: c.write(BASE + b"/t3", b"never"))
        rec("tx write t1 (abort)", lambda: c.write(BASE + b"/t1", b"never"))
        rec("rollback", c.rollback)
        r.events("rollback (none)")
        rec("t3 after rollback", lambda: c.read(BASE + b"/t3"))
        rec("t1 after rollback", lambda: c.read(BASE + b"/t1"))

        # transaction, conflicting: it read t1, then someone else changed t1.
        rec("transaction to conflict", c.transaction)
        rec("tx read t1 (conflict)", lambda: c.read(BASE + b"/t1"))
        rec("outside write t1", lambda: other.write(BASE + b"/t1", b"outside"))
        r.events("outside write during transaction")
        rec("tx reads its snapshot", lambda: c.read(BASE + b"/t1"))
        rec("tx write t4", lambda: c.write(BASE + b"/t4", b"lost"))
        rec("commit (conflict)", c.commit)
        r.events("failed commit (none)")
        rec("t4 after failed commit", lambda: c.read(BASE + b"/t4"))
        rec("t1 after failed commit", lambda: c.read(BASE + b"/t1"))

        # the ended transaction is gone: use its id again.
        def stale_read() -> Any:
            tx = c.transaction()
            c.commit()
            c.tx_id = tx
            try:
                return c.read(BASE + b"/t1")
            finally:
                c.tx_id = 0

        rec("read in an ended transaction", stale_read)

        def end_without_transaction() -> Any:
            c.tx_id = 0
            return c.commit()

        rec("commit without a transaction", end_without_transaction)

        # more watches: relative paths, a second token, unwatch.
        rec("watch relative", lambda: monitor.watch(b"pyxs-rel", b"rel"))
        r.first_event("watch relative")
        rec("write relative under watch", lambda: c.write(b"pyxs-rel/y", b"2"))
        r.events("relative watch")
        rec("watch t1 with a second token", lambda: monitor.watch(BASE + b"/t1", b"t1"))
        r.first_event("watch t1")
        rec("write t1 watched twice", lambda: c.write(BASE + b"/t1", b"again"))
        r.events("two watches")
        rec("watch missing deep path", lambda: monitor.watch(BASE + b"/no/such", b"deep"))
        r.first_event("watch missing deep path")
        rec("delete base's t2 tree", lambda: c.delete(BASE + b"/t2"))
        r.events("watch on missing path, delete elsewhere")
        rec("unwatch t1", lambda: monitor.unwatch(BASE + b"/t1", b"t1"))
        rec("unwatch unknown", lambda: monitor.unwatch(BASE + b"/t1", b"t1"))
        rec("unwatch wrong token", lambda: monitor.unwatch(BASE, b"nope"))
        rec("write t1 after unwatch", lambda: c.write(BASE + b"/t1", b"third"))
        r.events("after unwatch")
        rec("watch bad special path (client side)", lambda: monitor.watch(b"@bogus", b"b"))
        # (pyxs subscribes the token again before asking: a separate token keeps the
        # duplicate subscription from doubling the events of the watches above.)
        rec("watch dup", lambda: monitor.watch(b"/interop/dup", b"dup"))
        r.first_event("watch dup")
        rec("watch same path and token twice", lambda: monitor.watch(b"/interop/dup", b"dup"))
        r.events("duplicate watch")
        rec("unwatch dup", lambda: monitor.unwatch(b"/interop/dup", b"dup"))

        # Removing the watched base: its watch fires once, for the base itself; the watch
        # on a path below it that never existed does not fire.
        rec("delete base", lambda: c.delete(BASE))
        r.events("delete base")
        rec("list /interop after", lambda: c.list(b"/interop"))
        rec("watched", lambda: sorted(monitor.watched))
        rec("unwatch base", lambda: monitor.unwatch(BASE, b"base"))
        rec("unwatch @introduceDomain", lambda: monitor.unwatch(b"@introduceDomain", b"intro"))
        rec("unwatch relative", lambda: monitor.unwatch(b"pyxs-rel", b"rel"))
        rec("unwatch deep", lambda: monitor.unwatch(BASE + b"/no/such", b"deep"))
        rec("delete relative", lambda: c.delete(b"pyxs-rel"))
        r.events("end (none)")
        return r.observations


def run_scenario(socket_path: str) -> list[Observation]:
    """The scenario in a thread, so that a hang (a reply that never comes) fails."""
    result: list[list[Observation]] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(scenario(socket_path))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(SCENARIO_TIMEOUT)
    assert not thread.is_alive(), f"pyxs scenario hung for {SCENARIO_TIMEOUT}s"
    if errors:
        raise errors[0]
    return result[0]


def differences(expected: list[Observation], got: list[Observation]) -> list[str]:
    out = [f"{label}:\n  cxenstored: {want!r}\n  ours:       {have!r}"
           for (label, want), (_, have) in zip(expected, got, strict=True) if want != have]
    return out


@pytest.fixture(scope="module")
def reference_observations() -> Iterator[list[Observation]]:
    require_pyxs()
    for ref in reference_daemon("c"):
        yield run_scenario(ref.socket_path)


def our_observations() -> list[Observation]:
    daemon = OurDaemon()
    try:
        return run_scenario(daemon.socket_path)
    finally:
        daemon.stop()


def test_pyxs_scenario_matches_cxenstored(reference_observations: list[Observation]) -> None:
    ours = our_observations()
    assert [label for label, _ in ours] == [label for label, _ in reference_observations]
    assert differences(reference_observations, ours) == []


def test_pyxs_scenario_facts(any_daemon: str) -> None:
    """What the scenario must show on either daemon, whatever the other says."""
    require_pyxs()
    got = dict(run_scenario(any_daemon))
    enoent = ("raised", "PyXSError", (errno.ENOENT, os.strerror(errno.ENOENT)))
    # Watches: the first event is the watched path itself, even when it does not exist.
    assert got["first event: watch base"] == (BASE, b"base")
    assert got["first event: watch @introduceDomain"] == (b"@introduceDomain", b"intro")
    assert got["first event: watch missing deep path"] == (BASE + b"/no/such", b"deep")
    assert got["events: write a"] == [(BASE + b"/a", b"base")]
    assert got["events: write a again"] == [(BASE + b"/a", b"base")]  # same value fires too
    assert got["events: mkdir existing"] == []
    # Reads, writes, implicit parents, mkdir, listings.
    assert (got["read a"], got["read /interop"], got["read big is intact"]) == (b"1", b"", True)
    assert got["write empty value (pyxs refuses it)"][:2] == ("raised", "ValueError")
    assert got["read missing"] == got["read below a missing parent"] == enoent
    assert got["read missing, default"] == b"dflt"
    assert got["a unchanged by mkdir"] == b"1"
    assert got["list base"] == [b"a", b"b", b"big", b"d"]
    assert got["list too long"] == ("raised", "PyXSError",
                                    (errno.E2BIG, os.strerror(errno.E2BIG)))
    assert got["delete / (refused)"][2][0] == errno.EINVAL
    assert (got["exists a"], got["exists missing"], got["exists missing/deeper"]) == (
        True, False, False)
    assert got["read relative as absolute"] == b"rel"
    # Permissions: a new node copies its parent's.
    assert got["get_perms a"] == [b"n0"]
    assert got["get_perms d"] == got["get_perms d/new (inherits d's)"] == [
        b"n0", b"r5", b"w6", b"b7"]
    assert got["get_perms d/e (set before: unchanged)"] == [b"n0"]
    assert got["get_perms owner 3"] == [b"r3"]
    assert got["set_perms missing"] == enoent
    # rm: the subtree goes, one event for the removed node; a missing leaf is fine.
    assert got["events: delete d"] == [(BASE + b"/d", b"base")]
    assert got["exists d/e/f after delete"] is False
    assert got["delete missing child of existing"] is None
    assert got["delete below missing parent"] == enoent
    # Transactions: isolated, events at commit only, none on abort or failure.
    assert got["second transaction on the client"][2][0] == errno.EALREADY
    assert (got["tx read t1"], got["tx exists a"]) == (b"in-tx", False)
    assert got["outside read t1 (not yet)"] == enoent
    assert got["outside read a (still there)"] == b"1"
    assert got["events: transaction before commit (none)"] == []
    assert got["commit"] is True
    assert got["events: commit"] == [(BASE + b"/t1", b"base"), (BASE + b"/t2/x", b"base"),
                                     (BASE + b"/a", b"base")]
    assert (got["read t1 after commit"], got["exists a after commit"]) == (b"in-tx", False)
    assert got["events: rollback (none)"] == []
    assert (got["t3 after rollback"], got["t1 after rollback"]) == (enoent, b"in-tx")
    assert got["tx reads its snapshot"] == b"in-tx"
    assert got["commit (conflict)"] is False
    assert got["events: failed commit (none)"] == []
    assert (got["t4 after failed commit"], got["t1 after failed commit"]) == (
        enoent, b"outside")
    assert got["read in an ended transaction"] == enoent
    # More watches: relative epaths, registration order, unwatch, EEXIST.
    assert got["events: relative watch"] == [(b"pyxs-rel/y", b"rel")]
    assert got["events: two watches"] == [(BASE + b"/t1", b"base"), (BASE + b"/t1", b"t1")]
    assert got["events: watch on missing path, delete elsewhere"] == [(BASE + b"/t2", b"base")]
    assert got["unwatch unknown"] == enoent
    assert got["events: after unwatch"] == [(BASE + b"/t1", b"base")]
    assert got["watch same path and token twice"][2][0] == errno.EEXIST
    assert got["events: delete base"] == [(BASE, b"base")]
    assert got["list /interop after"] == []
    assert got["events: end (none)"] == []
