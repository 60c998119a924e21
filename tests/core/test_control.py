"""CONTROL commands of our own, check's verdict on a damaged tree, and reply sizes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.harness import Caller
from tests.core.test_domains import introduce
from tests.core.test_watches import events
from xenstore.daemon.control import HELP
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Effect, Log, Send, TraceFile
from xenstore.daemon.replies import newest_that_fit
from xenstore.protocol.codec import Packet, join
from xenstore.protocol.ops import PAYLOAD_MAX, Op


def test_check_finds_damage() -> None:
    server = Server()
    dom0 = Caller(server)
    assert dom0.ok(Op.CONTROL, "check") == b"OK\0"
    server.store.dirs["/tool"].children = {}  # its only child lost, as a bug might do
    assert dom0.error(Op.CONTROL, "check") == "EIO"  # what a bug might do, above
    assert any("/tool: an empty child dict" in e.message
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


# -- no reply outgrows a message ---------------------------------------------------

#: Every CONTROL command, from the table itself: a command added later is covered.
COMMANDS = sorted(Server().control_commands())
DOMAINS = 300


def long_path(i: int) -> str:
    """A path of 100 to 2000 bytes (dom0's path-max is 2048), made of 50-byte names."""
    names = (100 + i * 97 % 1900) // 51 + 1
    return f"/c{i:03d}" + "".join(f"/{j:02d}" + "p" * 47 for j in range(names))


def refuse_commits(server: Server, count: int) -> None:
    """``count`` commits refused: each transaction read a node another connection wrote."""
    dom0, other = Caller(server), Caller(server)
    for i in range(count):
        path = long_path(i)
        dom0.write(path, "old")
        tx = dom0.start()
        dom0.read(path, tx=tx)
        other.write(path, "new")
        dom0.write(path, "mine", tx=tx)
        assert dom0.error(Op.TRANSACTION_END, "T", tx=tx) == "EAGAIN"


def crowded_server() -> Server:
    """A server holding much: every list a CONTROL command could print is long."""
    server = Server()
    dom0 = Caller(server)
    refuse_commits(server, 120)
    assert len(server.conflicts) == server.conflicts.maxlen == 100
    for domid in range(1, DOMAINS + 1):
        introduce(dom0, domid)
        dom0.ok(Op.SET_QUOTA, str(domid), "nodes", str(1000 + domid))
    for domid in (1, 5, DOMAINS):
        guest = Caller(server, domid, False)
        for i in range(20):
            guest.write(f"data/{i}", "x" * 100)
            guest.ok(Op.WATCH, f"data/{i}", "t")
        guest.start()
    for i in range(1000):
        dom0.ok(Op.WATCH, f"/watched/{i}", "w")
    return server


def argument_lists(command: bytes, tmp: Path) -> list[list[bytes]]:
    """What any command might be given: nothing, domids, settings, files, the longest."""
    longest = PAYLOAD_MAX - len(command) - 2  # the request itself must fit
    return [
        [],
        [b"0"], [b"1"], [b"5"], [str(DOMAINS).encode()], [b"99999"],
        [b"on"], [b"off"], [b"x"],
        [str(tmp / "report").encode()],
        [b"set", b"nodes", b"7"], [b"set", b"memory", b"2147483647"],
        [b"y" * longest],
        [b"a", b"b"],
    ]


def replies_fit(effects: list[Effect]) -> None:
    for effect in effects:
        if isinstance(effect, Send):
            assert len(effect.packet.payload) <= PAYLOAD_MAX, effect.packet[:3]


@pytest.mark.parametrize("command", COMMANDS, ids=bytes.decode)
def test_every_control_reply_fits(
    command: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # for any command that names a file
    server = crowded_server()
    conn_id = server.connect()
    for args in argument_lists(command, tmp_path):
        effects = server.handle(conn_id, Packet(Op.CONTROL, 1, 0, join(command, *args)))
        replies_fit(effects)
        (reply,) = [e.packet for e in effects if isinstance(e, Send) and e.conn_id == conn_id]
        # Fitting by luck of E2BIG does not count: the guard is for bugs only.
        assert reply.payload != b"E2BIG\0", (command, args)
        assert not any(isinstance(e, Log) and "internal error" in e.message for e in effects)


def test_help_lists_every_command() -> None:
    # live-update is a conversation, answered apart (it needs the connection).
    listed = {line.split("\t")[0].encode() for line in HELP.splitlines()}
    assert listed == {*COMMANDS, b"live-update"}


def test_conflicts_shows_the_newest_that_fit() -> None:
    server = crowded_server()
    reply = Caller(server).ok(Op.CONTROL, "conflicts")
    assert len(reply) <= PAYLOAD_MAX and reply.endswith(b"\n\0")
    *shown, note = reply[:-2].decode().split("\n")
    assert shown == list(server.conflicts)[-len(shown):]
    left_out = len(server.conflicts) - len(shown)
    assert note == (f"({left_out} earlier conflicts left out; "
                    "the daemon's log has every one when it runs with -V)")
    assert shown[-1].startswith("transaction ") and long_path(119) in shown[-1]


def test_conflicts_that_fit_are_all_shown() -> None:
    server = Server()
    refuse_commits(server, 2)
    reply = Caller(server).ok(Op.CONTROL, "conflicts").decode()
    assert reply == "".join(line + "\n" for line in server.conflicts) + "\0"
    assert "left out" not in reply


def test_conflicts_not_logged_says_no_more() -> None:
    server = crowded_server()
    server.config.log_conflicts = False
    note = Caller(server).ok(Op.CONTROL, "conflicts")[:-2].decode().split("\n")[-1]
    assert note.endswith(" earlier conflicts left out)")


def test_newest_that_fit() -> None:
    def note(count: int) -> str:
        return f"{count} more"

    assert newest_that_fit([], note) == b"\0"
    assert newest_that_fit(["a", "b"], note) == b"a\nb\n\0"
    exact = "x" * (PAYLOAD_MAX - 2)  # with its newline and the NUL: the limit
    assert newest_that_fit([exact], note) == exact.encode() + b"\n\0"
    lines = ["old", "a" * 3100, "b" * 1000]
    assert newest_that_fit(lines, note) == b"b" * 1000 + b"\n2 more\n\0"
    cut = newest_that_fit(["old", "z" * 9000], note)
    assert len(cut) == PAYLOAD_MAX and cut.endswith(b"z...\n1 more\n\0")
    assert newest_that_fit(["z" * 9000], note).endswith(b"z...\n\0")  # nothing left out


def test_an_oversized_reply_becomes_e2big(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server()
    introduce(Caller(server), 5)
    guest = Caller(server, 5, False)
    dom0 = Caller(server)

    def huge(*_: object) -> bytes:
        return b"x" * 5000

    monkeypatch.setitem(server._dispatch, Op.READ, huge)
    assert guest.error(Op.READ, "x") == "E2BIG"
    replies_fit(guest.effects)
    (log,) = [e for e in guest.effects if isinstance(e, Log)]
    assert log.message.startswith("internal error on READ ") and "5000 bytes" in log.message
    assert log.domid == 5  # a guest's lines are rate-limited
    monkeypatch.setattr(server.control, "_control_help", huge)
    assert dom0.error(Op.CONTROL, "help") == "E2BIG"
    replies_fit(dom0.effects)
    assert any(isinstance(e, Log) and e.message.startswith("internal error on CONTROL ")
               and e.domid is None for e in dom0.effects)
    assert dom0.ok(Op.CONTROL, "check") == b"OK\0"  # nothing else is harmed


def test_memreport_to_a_file_is_the_shells_to_write() -> None:
    """The core does no I/O: CONTROL memreport FILE answers OK and hands the shell the
    text to write (tests/chaos reads such files from a real daemon)."""
    from xenstore.daemon.effects import WriteReport

    server = Server()
    conn = server.connect()
    effects = server.handle(conn, Packet(Op.CONTROL, 1, 0, b"memreport\0/tmp/report\0"))
    (report,) = [e for e in effects if isinstance(e, WriteReport)]
    assert report.path == "/tmp/report"
    assert report.text.startswith("nodes: 3\n") and "domains: 0\n" in report.text
    assert effects[-1].packet.payload == b"OK\0"  # type: ignore[union-attr]
