"""CONTROL commands of our own, and check's verdict on a damaged tree."""

from __future__ import annotations

from tests.core.harness import Caller
from tests.core.test_domains import introduce
from tests.core.test_watches import events
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Log, TraceFile
from xenstore.protocol.ops import Op


def test_check_finds_damage() -> None:
    server = Server()
    dom0 = Caller(server)
    assert dom0.ok(Op.CONTROL, "check") == b"OK\0"
    del server.store.nodes["/tool/xenstored"]  # what a bug might do
    assert dom0.error(Op.CONTROL, "check") == "EIO"
    assert any("lists missing child xenstored" in e.message
               for e in dom0.effects if isinstance(e, Log))


def test_domain_lifecycle_commands() -> None:
    server = Server()
    dom0 = Caller(server)
    introduce(dom0, 5)
    dom0.ok(Op.WATCH, "@releaseDomain", "r")
    dom0.ok(Op.CONTROL, "domain-shutdown", "5")
    assert events(dom0) == [("@releaseDomain", "r")]
    assert 5 in server.domains
    dom0.ok(Op.CONTROL, "domain-destroy", "5")
    assert events(dom0) == [("@releaseDomain", "r")]
    assert 5 not in server.domains
    assert dom0.error(Op.CONTROL, "domain-destroy", "5") == "ENOENT"


def test_log_and_logfile_switch_the_trace() -> None:
    server = Server()
    dom0 = Caller(server)
    assert dom0.error(Op.CONTROL, "log", "on") == "EINVAL"  # no file yet
    dom0.ok(Op.CONTROL, "logfile", "/tmp/xs-trace")
    assert TraceFile("/tmp/xs-trace") in dom0.effects
    dom0.ok(Op.CONTROL, "log", "off")
    assert TraceFile(None) in dom0.effects
    dom0.ok(Op.CONTROL, "log", "on")
    assert TraceFile("/tmp/xs-trace") in dom0.effects


def test_quota_of_a_domain_shows_its_usage() -> None:
    server = Server()
    dom0 = Caller(server)
    introduce(dom0, 5)
    guest = Caller(server, 5, False)
    guest.write("a", "")
    guest.ok(Op.WATCH, "a", "t")
    report = dom0.ok(Op.CONTROL, "quota", "5").decode()
    assert report.startswith("Domain 5:\n")
    assert "nodes           :        2\n" in report
    assert "watches         :        1\n" in report
