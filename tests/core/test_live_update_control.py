"""CONTROL live-update: the steps xenstore-control sends a daemon, answered as cxenstored 4.17."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.daemon.effects import ExecLiveUpdate
from xenstore.daemon.live_update import check_binary, exec_argv
from xenstore.protocol.ops import Op

BINARY = "/usr/sbin/new-xenstored"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(clock: Clock) -> Server:
    server = Server()
    server.control.live_update.clock = clock
    server.control.live_update.probe = (
        lambda name: None if name == BINARY else "File not accessible.")
    return server


def lu(caller: Caller, *args: str) -> bytes:
    return caller.ok(Op.CONTROL, "live-update", *args).rstrip(b"\0")


def execs(caller: Caller) -> list[ExecLiveUpdate]:
    return [e for e in caller.effects if isinstance(e, ExecLiveUpdate)]


def test_a_session_starts_at_once_without_transactions(server: Server) -> None:
    dom0 = Caller(server)
    assert lu(dom0, "-f", BINARY) == b"OK"
    assert lu(dom0, "-c", "-N -P") == b"OK"
    assert lu(dom0, "-s", "-t", "60") == b"OK"
    assert execs(dom0) == [ExecLiveUpdate(dom0.conn_id, BINARY, "-N -P")]
    assert server.control.live_update.session is None


def test_steps_out_of_session_are_refused_by_text(server: Server) -> None:
    dom0, other = Caller(server), Caller(server)
    assert lu(dom0, "-s") == b"Not in live-update session."
    assert lu(dom0, "-c", "x") == b"Not in live-update session."
    assert lu(dom0, "-a") == b"No live-update session active."
    assert lu(dom0, "-f", "/nonexistent") == b"File not accessible."
    assert lu(dom0, "-f", BINARY) == b"OK"
    assert lu(other, "-f", BINARY) == b"live-update session already active."
    assert lu(other, "-s") == b"Not in live-update session."
    assert lu(other, "-c", "x") == b"Not in live-update session."
    assert lu(dom0, "-a") == b"OK"
    assert lu(dom0, "-s") == b"Not in live-update session."


@pytest.mark.parametrize("args", [
    (), ("-a", "x"), ("-f",), ("-f", "a", "b"), ("-c",), ("-s", "-t"), ("-s", "-t", "x"),
    ("-s", "-X"), ("-b", "100"), ("-d", "1", "x"), ("nonsense",),
])
def test_malformed_steps_are_einval(server: Server, args: tuple[str, ...]) -> None:
    dom0 = Caller(server)
    lu(dom0, "-f", BINARY)
    assert dom0.error(Op.CONTROL, "live-update", *args) == "EINVAL"


def test_open_transactions_make_it_busy_then_refused(server: Server, clock: Clock) -> None:
    dom0, other = Caller(server), Caller(server)
    other.start()
    assert lu(dom0, "-f", BINARY) == b"OK"
    assert lu(dom0, "-s", "-t", "5") == b"BUSY"
    clock.now += 4
    assert lu(dom0, "-s", "-t", "5") == b"BUSY"
    clock.now += 1
    assert lu(dom0, "-s", "-t", "5") == (b"Domains with long running transactions:\n"
                                          b"Domain 0: 5 s")
    assert not execs(dom0)
    assert server.control.live_update.session is None  # the refusal ends it


def test_force_goes_ahead_once_the_timeout_passed(server: Server, clock: Clock) -> None:
    dom0, other = Caller(server), Caller(server)
    tx = other.start()
    lu(dom0, "-f", BINARY)
    assert lu(dom0, "-s", "-F", "-t", "2") == b"BUSY"
    clock.now += 0.9
    assert lu(dom0, "-s", "-F", "-t", "2") == b"BUSY"
    clock.now += 0.1  # a second early: xenstore-control counts whole seconds of time()
    assert lu(dom0, "-s", "-F", "-t", "2") == b"OK"
    # Forced with a transaction open: the dump carries it (ours -> ours keeps it).
    assert execs(dom0) == [ExecLiveUpdate(dom0.conn_id, BINARY, None, transactions=True)]
    assert tx


def test_a_transaction_ending_lets_it_start(server: Server) -> None:
    dom0, other = Caller(server), Caller(server)
    tx = other.start()
    lu(dom0, "-f", BINARY)
    assert lu(dom0, "-s", "-t", "60") == b"BUSY"
    other.end(tx)
    assert lu(dom0, "-s", "-t", "60") == b"OK"


def test_the_session_ends_with_its_connection(server: Server) -> None:
    dom0, other = Caller(server), Caller(server)
    lu(dom0, "-f", BINARY)
    server.disconnect(dom0.conn_id)
    assert lu(other, "-f", BINARY) == b"OK"


def test_exec_argv() -> None:
    assert exec_argv("/b", None, ["-N", "-P"]) == ["/b", "-N", "-P", "-U"]
    assert exec_argv("/b", "-N\t -U  -P", ["ignored"]) == ["/b", "-N", "-U", "-P"]
    assert exec_argv("/b", "", []) == ["/b", "-U"]


def test_check_binary(tmp_path: Path) -> None:
    path = tmp_path / "bin"
    assert check_binary(str(path)) == "File not accessible."
    path.write_text("")
    assert check_binary(str(path)) == "File not executable."
    os.chmod(path, stat.S_IRUSR | stat.S_IXUSR)
    assert check_binary(str(path)) is None
