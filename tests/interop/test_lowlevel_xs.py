"""Xen's own Python binding, ``xen.lowlevel.xs``, on our daemon and on cxenstored.

The binding (Debian's xen-utils-4.17, built for CPython 3.11) wraps the C
library libxenstore, which finds the daemon through ``XENSTORED_PATH``. The
scenario runs in a subprocess, so that the variable and the import path are
exactly what we say, and prints a JSON list of observations: what each call
returned, or the exception it raised with its arguments. The list must be the
same on our daemon as on Xen 4.17's C xenstored; a few facts are also checked on
each daemon alone.

libxenstore reads the socket in a thread of its own once a watch exists, and a
connection's own events come before the reply to the request that caused them,
so after a call returns its events are queued: ``check_watch`` (which does not
block) drains them. A new watch's first event comes after the reply to WATCH and
an event caused by another connection at any time: those are waited for with
``read_watch``. ``ls`` of a directory too long for one packet makes libxenstore
fall back from DIRECTORY (E2BIG) to DIRECTORY_PART.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import OurDaemon, reference_daemon

#: Where Debian's xen-utils-4.17 installs the Python packages (``xen.lowlevel.xs``).
XEN_PYTHON_DIR = Path("/usr/lib/xen-4.17/lib/python")
SCENARIO_TIMEOUT = 60

SCRIPT = r'''
import errno, json, sys
import xen.lowlevel.xs as xsmod

B = "/interop/lowlevel"
observations = []


def encode(value):
    if isinstance(value, bytes):
        return {"bytes": value.decode("latin-1")}
    if isinstance(value, (list, tuple)):
        return [encode(item) for item in value]
    if isinstance(value, dict):
        return {key: encode(item) for key, item in sorted(value.items())}
    return value


def rec(label, call):
    try:
        result = call()
    except Exception as exc:
        result = ["raised", type(exc).__name__, list(exc.args)]
    observations.append([label, encode(result)])
    return result


def events(label):
    """Every queued watch event, without blocking."""
    got = []
    while True:
        event = h.check_watch()
        if event is None:
            break
        got.append(event)
    observations.append(["events: " + label, encode(got)])


def next_event(label):
    """Wait for one event (a watch's first one, or one from another connection)."""
    observations.append(["event: " + label, encode(h.read_watch())])


h = xsmod.xs()
other = xsmod.xs()  # a second connection

rec("read /", lambda: h.read("", "/"))
rec("ls /tool", lambda: h.ls("", "/tool"))
rec("get_domain_path 0", lambda: h.get_domain_path(0))
rec("get_domain_path 9", lambda: h.get_domain_path(9))

rec("watch base", lambda: h.watch(B, "base"))
next_event("first of base")
rec("check_watch with nothing queued", h.check_watch)
rec("watch @releaseDomain", lambda: h.watch("@releaseDomain", "released"))
next_event("first of @releaseDomain")

# write / read.
rec("write a", lambda: h.write("", B + "/a", b"1"))
events("write a")
rec("read a", lambda: h.read("", B + "/a"))
rec("read base (implicit parent)", lambda: h.read("", B))
binary = bytes(range(256))
rec("write binary", lambda: h.write("", B + "/bin", binary))
rec("read binary intact", lambda: h.read("", B + "/bin") == binary)
rec("write empty", lambda: h.write("", B + "/empty", b""))
rec("read empty", lambda: h.read("", B + "/empty"))
big = bytes(ord("a") + i % 26 for i in range(4000))
rec("write 4000 bytes", lambda: h.write("", B + "/big", big))
rec("read 4000 bytes intact", lambda: h.read("", B + "/big") == big)
rec("write over a packet", lambda: h.write("", B + "/big", b"x" * 4096))
rec("read big after refused write", lambda: h.read("", B + "/big") == big)
events("writes")
rec("read missing", lambda: h.read("", B + "/missing"))
rec("read below missing", lambda: h.read("", B + "/missing/deeper"))
rec("read bad path", lambda: h.read("", B + "/bad path"))
rec("read double slash", lambda: h.read("", B + "//a"))
rec("read trailing slash", lambda: h.read("", B + "/"))
rec("write bad path", lambda: h.write("", B + "/bad*char", b"x"))
rec("read @releaseDomain", lambda: h.read("", "@releaseDomain"))
rec("read too long a path", lambda: h.read("", "/" + "p" * 3000))
events("errors (none)")

# mkdir and ls.
rec("mkdir d/e/f", lambda: h.mkdir("", B + "/d/e/f"))
events("mkdir")
rec("mkdir existing a", lambda: h.mkdir("", B + "/a"))
rec("a unchanged", lambda: h.read("", B + "/a"))
events("mkdir existing (none)")
rec("ls base", lambda: h.ls("", B))
rec("ls leaf", lambda: h.ls("", B + "/a"))
rec("ls missing", lambda: h.ls("", B + "/missing"))
rec("ls below missing", lambda: h.ls("", B + "/missing/deeper"))
wide = ["%03d" % i + "n" * 120 for i in range(70)]
rec("write 70 long names", lambda: [h.write("", "/interop/wide/" + name, b"") for name in wide]
    and None)
rec("ls wide (DIRECTORY_PART)", lambda: h.ls("", "/interop/wide") == wide)
rec("ls wide length", lambda: len(h.ls("", "/interop/wide")))

# relative paths resolve below /local/domain/0.
rec("write relative", lambda: h.write("", "lowlevel-rel/x", b"r"))
rec("read relative absolutely", lambda: h.read("", "/local/domain/0/lowlevel-rel/x"))
rec("ls relative", lambda: h.ls("", "lowlevel-rel"))

# permissions.
rec("get_permissions a", lambda: h.get_permissions("", B + "/a"))
rec("set_permissions d", lambda: h.set_permissions("", B + "/d", [
    {"dom": 0}, {"dom": 5, "read": True}, {"dom": 6, "write": True},
    {"dom": 7, "read": True, "write": True}]))
events("set_permissions")
rec("get_permissions d", lambda: h.get_permissions("", B + "/d"))
rec("get_permissions d/e (older)", lambda: h.get_permissions("", B + "/d/e"))
rec("write d/new", lambda: h.write("", B + "/d/new", b"n"))
rec("get_permissions d/new (copied)", lambda: h.get_permissions("", B + "/d/new"))
rec("set_permissions owner 4", lambda: h.set_permissions("", B + "/a", [{"dom": 4}]))
rec("get_permissions owner 4", lambda: h.get_permissions("", B + "/a"))
rec("set_permissions missing", lambda: h.set_permissions("", B + "/missing", [{"dom": 0}]))
rec("set_permissions empty", lambda: h.set_permissions("", B + "/a", []))
rec("get_permissions missing", lambda: h.get_permissions("", B + "/missing"))
rec("set_permissions @introduceDomain", lambda: h.set_permissions(
    "", "@introduceDomain", [{"dom": 0}, {"dom": 3, "read": True}]))
events("permissions")

# rm.
rec("rm d", lambda: h.rm("", B + "/d"))
events("rm d")
rec("ls d after rm", lambda: h.ls("", B + "/d"))
rec("rm missing", lambda: h.rm("", B + "/missing"))
rec("rm below missing", lambda: h.rm("", B + "/missing/deeper"))
rec("rm /", lambda: h.rm("", "/"))
events("rm of missing nodes (none)")

# A committed transaction.
t = rec("transaction_start", h.transaction_start)
rec("tx write t1", lambda: h.write(t, B + "/t1", b"tx"))
rec("tx mkdir t2/x", lambda: h.mkdir(t, B + "/t2/x"))
rec("tx rm a", lambda: h.rm(t, B + "/a"))
rec("tx read t1", lambda: h.read(t, B + "/t1"))
rec("tx ls base", lambda: h.ls(t, B))
rec("tx ls wide (DIRECTORY_PART in a transaction)",
    lambda: h.ls(t, "/interop/wide") == wide)
rec("tx get_permissions t1", lambda: h.get_permissions(t, B + "/t1"))
rec("outside read t1", lambda: h.read("", B + "/t1"))
rec("outside read a", lambda: h.read("", B + "/a"))
rec("other connection read t1", lambda: other.read("", B + "/t1"))
events("inside a transaction (none)")
rec("transaction_end commit", lambda: h.transaction_end(t))
events("commit")
rec("read t1 after commit", lambda: h.read("", B + "/t1"))
rec("read a after commit", lambda: h.read("", B + "/a"))

# Aborted.
t = rec("transaction_start 2", h.transaction_start)
rec("tx write t3", lambda: h.write(t, B + "/t3", b"no"))
rec("transaction_end abort", lambda: h.transaction_end(t, 1))
events("abort (none)")
rec("read t3 after abort", lambda: h.read("", B + "/t3"))
rec("end the aborted one again", lambda: h.transaction_end(t))
rec("write in the ended one", lambda: h.write(t, B + "/t3", b"no"))
rec("end an unknown transaction", lambda: h.transaction_end("7fff"))

# Two transactions on one connection, then one that conflicts.
t1 = rec("transaction_start A", h.transaction_start)
t2 = rec("transaction_start B", h.transaction_start)
rec("A writes s", lambda: h.write(t1, B + "/s", b"A"))
rec("B reads s (isolated)", lambda: h.read(t2, B + "/s"))
rec("B reads t1", lambda: h.read(t2, B + "/t1"))
rec("other connection writes t1", lambda: other.write("", B + "/t1", b"other"))
next_event("other connection's write")
rec("B reads t1 again (its snapshot)", lambda: h.read(t2, B + "/t1"))
rec("B writes u", lambda: h.write(t2, B + "/u", b"B"))
rec("A commits", lambda: h.transaction_end(t1))
rec("B commits (conflict)", lambda: h.transaction_end(t2))
events("A's commit only")
rec("read s", lambda: h.read("", B + "/s"))
rec("read u (lost)", lambda: h.read("", B + "/u"))

# More watches: relative, from another connection, unwatch, duplicates.
rec("watch relative", lambda: h.watch("lowlevel-rel", "rel"))
next_event("first of relative")
rec("write relative child", lambda: h.write("", "lowlevel-rel/y", b"y"))
events("relative")
rec("other connection mkdir", lambda: other.mkdir("", B + "/from-other"))
next_event("other connection's mkdir")
rec("watch t1 with a second token", lambda: h.watch(B + "/t1", "t1"))
next_event("first of t1")
rec("write t1", lambda: h.write("", B + "/t1", b"again"))
events("two watches, registration order")
rec("watch it twice", lambda: h.watch(B + "/t1", "t1"))
rec("unwatch t1", lambda: h.unwatch(B + "/t1", "t1"))
rec("unwatch t1 again", lambda: h.unwatch(B + "/t1", "t1"))
rec("write t1 after unwatch", lambda: h.write("", B + "/t1", b"third"))
events("after unwatch")
rec("watch bad path", lambda: h.watch(B + "/bad path", "bad"))
rec("watch @bogus (any @ name may be watched)", lambda: h.watch("@bogus", "bogus"))
next_event("first of @bogus")
rec("unwatch @bogus", lambda: h.unwatch("@bogus", "bogus"))
rec("unwatch never watched", lambda: h.unwatch(B + "/nothing", "zz"))

# Domain operations on domains that were never introduced.
rec("release_domain 9", lambda: h.release_domain(9))
rec("resume_domain 9", lambda: h.resume_domain(9))
rec("set_target 9 10", lambda: h.set_target(9, 10))
events("domain operations (none)")

# The end: remove everything; the base's watch sees its own removal.
rec("rm base", lambda: h.rm("", B))
events("rm base")
rec("rm wide", lambda: h.rm("", "/interop/wide"))
rec("rm relative", lambda: h.rm("", "lowlevel-rel"))
events("rm relative")
rec("ls /interop", lambda: h.ls("", "/interop"))
rec("unwatch base", lambda: h.unwatch(B, "base"))
rec("unwatch @releaseDomain", lambda: h.unwatch("@releaseDomain", "released"))
rec("unwatch relative", lambda: h.unwatch("lowlevel-rel", "rel"))
events("end (none)")
other.close()
h.close()
json.dump(observations, sys.stdout)
'''


def binding_dir() -> Path:
    """The directory to put on PYTHONPATH, or skip/fail saying why it cannot be used."""
    if sys.version_info[:2] != (3, 11):
        pytest.skip(f"xen.lowlevel.xs is built for CPython 3.11, this is {sys.version.split()[0]}")
    found = sorted((XEN_PYTHON_DIR / "xen" / "lowlevel").glob("xs.cpython-311*.so"))
    if not found:
        reason = (f"xen.lowlevel.xs is not installed under {XEN_PYTHON_DIR} "
                  "(apt install xen-utils-4.17)")
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return XEN_PYTHON_DIR


def run_scenario(socket_path: str) -> list[list[Any]]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "XENSTORED_PATH": socket_path,
           "PYTHONPATH": str(binding_dir()), "LC_ALL": "C"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True,
                          text=True, timeout=SCENARIO_TIMEOUT)
    assert proc.returncode == 0, f"scenario failed (rc={proc.returncode}):\n{proc.stderr}"
    observations: list[list[Any]] = json.loads(proc.stdout)
    return observations


def differences(expected: list[list[Any]], got: list[list[Any]]) -> list[str]:
    return [f"{label}:\n  cxenstored: {want!r:.400}\n  ours:       {have!r:.400}"
            for (label, want), (_, have) in zip(expected, got, strict=True) if want != have]


@pytest.fixture(scope="module")
def reference_observations() -> Iterator[list[list[Any]]]:
    binding_dir()
    for ref in reference_daemon("c"):
        yield run_scenario(ref.socket_path)


def test_lowlevel_xs_scenario_matches_cxenstored(
        reference_observations: list[list[Any]]) -> None:
    daemon = OurDaemon()
    try:
        ours = run_scenario(daemon.socket_path)
    finally:
        daemon.stop()
    assert [label for label, _ in ours] == [label for label, _ in reference_observations]
    assert differences(reference_observations, ours) == []


def check_facts(observations: list[list[Any]]) -> None:
    """What the scenario must show on any daemon: the comparison alone could pass on
    two runs that both went wrong the same way."""
    got = dict(observations)
    enoent = ["raised", "Error", [2, os.strerror(2)]]
    einval = ["raised", "Error", [22, os.strerror(22)]]
    base = "/interop/lowlevel"
    assert got["event: first of base"] == [base, "base"]
    assert got["event: first of @releaseDomain"] == ["@releaseDomain", "released"]
    assert got["check_watch with nothing queued"] is None
    assert got["events: write a"] == [[base + "/a", "base"]]
    assert got["read binary intact"] is got["read 4000 bytes intact"] is True
    assert got["read empty"] == {"bytes": ""}
    assert got["write over a packet"][2][0] == 7  # E2BIG, from libxenstore itself
    assert got["read missing"] is None and got["ls missing"] is None  # ENOENT: None
    assert got["read bad path"] == got["read trailing slash"] == einval
    assert got["ls base"] == ["a", "bin", "empty", "big", "d"]
    assert got["ls wide (DIRECTORY_PART)"] is True
    assert got["tx ls wide (DIRECTORY_PART in a transaction)"] is True
    assert got["get_permissions d"] == got["get_permissions d/new (copied)"] == [
        {"dom": 0, "read": 0, "write": 0}, {"dom": 5, "read": 1, "write": 0},
        {"dom": 6, "read": 0, "write": 2}, {"dom": 7, "read": 1, "write": 2}]
    assert got["set_permissions missing"] == enoent
    assert got["events: rm d"] == [[base + "/d", "base"]]
    assert got["rm below missing"] is None  # the binding hides ENOENT
    assert got["rm /"] == einval
    assert got["outside read t1"] is None and got["outside read a"] == {"bytes": "1"}
    assert got["events: inside a transaction (none)"] == []
    assert got["transaction_end commit"] is True
    assert got["events: commit"] == [[base + "/t1", "base"], [base + "/t2/x", "base"],
                                     [base + "/a", "base"]]
    assert got["read t3 after abort"] is None and got["events: abort (none)"] == []
    assert got["end the aborted one again"] == got["end an unknown transaction"] == enoent
    assert got["B reads s (isolated)"] is None
    assert got["B reads t1 again (its snapshot)"] == {"bytes": "tx"}
    assert (got["A commits"], got["B commits (conflict)"]) == (True, False)
    assert got["read u (lost)"] is None
    assert got["events: relative"] == [["lowlevel-rel/y", "rel"]]
    assert got["event: other connection's mkdir"] == [base + "/from-other", "base"]
    assert got["events: two watches, registration order"] == [[base + "/t1", "base"],
                                                              [base + "/t1", "t1"]]
    assert got["watch it twice"][2][0] == 17  # EEXIST
    assert got["unwatch t1 again"] == enoent
    assert got["events: after unwatch"] == [[base + "/t1", "base"]]
    assert got["events: rm base"] == [[base, "base"]]
    assert got["ls /interop"] == []
    assert got["events: end (none)"] == []


def test_lowlevel_xs_scenario_facts(any_daemon: str) -> None:
    check_facts(run_scenario(any_daemon))
