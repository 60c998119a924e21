"""Crash-only hygiene: a bug met while handling one request costs that request only.

An internal error (any exception that is not a XenStore error) is answered with
EIO under the request's ids, logged naming the request, and leaves the tree sound
and the daemon serving, in the core and over a real socket.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator

import pytest
import trio

from tests.conftest import short_tempdir
from xenstore import errors
from xenstore.aclient import open_client
from xenstore.daemon.core import Connection, Server
from xenstore.daemon.effects import Log, Outbox, Send
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op
from xenstore.transactions import Transaction


def broken_handler(conn: Connection, tx: Transaction | None, payload: bytes,
                   out: Outbox) -> bytes:
    raise RuntimeError("injected bug")


def test_an_internal_error_in_the_core_costs_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Server()
    conn = server.connect()
    server.handle(conn, Packet(Op.WRITE, 1, 0, b"/a\0before"))
    tx_id = int(server.handle(conn, Packet(Op.TRANSACTION_START, 2, 0, b"\0"))[-1]
                .packet.payload[:-1])  # type: ignore[union-attr]
    monkeypatch.setitem(server._dispatch, Op.READ, broken_handler)
    monkeypatch.setattr(server, "fast_read", False)  # the bug is in READ's general handler
    for req_id, tx in ((77, 0), (78, tx_id)):
        effects = server.handle(conn, Packet(Op.READ, req_id, tx, b"/a\0"))
        assert effects[-1] == Send(conn, Packet(Op.ERROR, req_id, tx, b"EIO\0"))
        (log,) = [e for e in effects if isinstance(e, Log)]
        assert log.level >= logging.WARNING
        assert "internal error" in log.message and f"req_id={req_id}" in log.message
        assert "READ" in log.message and "/a" in log.message and "injected bug" in log.message
    assert server.store.check() == []
    # The next requests are served, in and out of the transaction.
    assert server.handle(conn, Packet(Op.WRITE, 79, tx_id, b"/a\0after")) == [
        Send(conn, Packet(Op.WRITE, 79, tx_id, b"OK\0"))]
    assert server.handle(conn, Packet(Op.TRANSACTION_END, 80, tx_id, b"T\0"))[-1] == Send(
        conn, Packet(Op.TRANSACTION_END, 80, tx_id, b"OK\0"))
    monkeypatch.undo()
    assert server.handle(conn, Packet(Op.READ, 81, 0, b"/a\0")) == [
        Send(conn, Packet(Op.READ, 81, 0, b"after"))]


def test_an_internal_error_after_the_change_leaves_the_tree_sound() -> None:
    """A bug while firing watches: the write is done, the writer told EIO (the outcome
    is unknown to it, as for any EIO), the tree sound, watchers still served."""
    server = Server()
    writer, watcher = server.connect(), server.connect()
    server.handle(watcher, Packet(Op.WATCH, 1, 0, b"/w\0tok\0"))

    # A watch that is not one: firing trips on it (AttributeError, or TypeError where
    # the core is compiled) once the write is done.
    watches = server.watches.by_path["/w"]
    watches.append(None)  # type: ignore[arg-type]
    effects = server.handle(writer, Packet(Op.WRITE, 5, 0, b"/w\0v"))
    assert effects[-1] == Send(writer, Packet(Op.ERROR, 5, 0, b"EIO\0"))
    assert server.store.check() == []
    assert server.store.value("/w") == b"v"
    watches.pop()
    effects = server.handle(writer, Packet(Op.WRITE, 6, 0, b"/w\0v2"))
    assert Send(writer, Packet(Op.WRITE, 6, 0, b"OK\0")) in effects
    assert any(isinstance(e, Send) and e.conn_id == watcher for e in effects)


def test_an_internal_error_half_way_through_a_change_leaves_the_tree_sound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug that interrupts a change after a new directory went in but before its
    child did: the core repairs the tree (the tree from the root is the truth), logs
    what it repaired, and goes on serving."""
    server = Server()
    conn = server.connect()
    intern = sys.intern

    def broken_intern(name: str) -> str:
        if name == "b":
            raise RuntimeError("injected bug in naming the second new node")
        return intern(name)

    # Names are interned through the sys module, which compiled code looks up too.
    with monkeypatch.context() as patch:
        patch.setattr(sys, "intern", broken_intern)
        effects = server.handle(conn, Packet(Op.WRITE, 1, 0, b"/a/b\0v"))
    assert server.store.exists("/a") and not server.store.exists("/a/b")
    assert effects[-1] == Send(conn, Packet(Op.ERROR, 1, 0, b"EIO\0"))
    assert server.store.check() == []
    repairs = [e for e in effects if isinstance(e, Log) and e.level == logging.ERROR]
    assert repairs and all("repaired after the internal error" in e.message for e in repairs)
    # Served as before, and the tree is sound after more changes.
    effects = server.handle(conn, Packet(Op.WRITE, 2, 0, b"/a/b\0w"))
    assert effects[-1] == Send(conn, Packet(Op.WRITE, 2, 0, b"OK\0"))
    effects = server.handle(conn, Packet(Op.READ, 3, 0, b"/a/b\0"))
    assert effects[-1] == Send(conn, Packet(Op.READ, 3, 0, b"w"))
    assert server.store.check() == []


@pytest.fixture
def socket_path() -> Iterator[str]:
    directory = short_tempdir()
    yield os.path.join(directory, "socket")
    shutil.rmtree(directory, ignore_errors=True)


async def test_an_internal_error_over_a_socket_is_logged_and_answered_eio(
    socket_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server()
    shell = Shell(server, ShellOptions(socket_path=socket_path))
    server._dispatch[Op.READ] = broken_handler
    server.fast_read = False  # the bug is in READ's general handler
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(shell.serve)
            async with open_client(socket_path) as victim, open_client(socket_path) as other:
                await victim.write("/a", "x")
                with pytest.raises(errors.EIO):
                    await victim.read("/a")
                (record,) = [r for r in caplog.records if "internal error" in r.getMessage()]
                assert record.levelno >= logging.WARNING
                message = record.getMessage()  # names the request: op, ids, payload
                assert "READ" in message or f"op={Op.READ.value}," in message
                assert "req_id=" in message and "/a" in message and "injected bug" in message
                # The same connection goes on, and so does everyone else.
                await victim.write("/a", "y")
                assert await other.directory("/") == ["tool", "a"]
                assert len(shell.peers) == 2
                assert server.store.check() == []
            nursery.cancel_scope.cancel()
