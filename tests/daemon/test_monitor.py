"""The monitor feed (``--monitor``) over real sockets: what a line says, that a slow
reader costs the daemon nothing, and that the feed's failures cost only the feed."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from tests.rawsocket import call
from xenstore.client import Client
from xenstore.daemon import monitor as monitor_module
from xenstore.daemon import monitor_record
from xenstore.daemon.core import Server
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Packet, join
from xenstore.protocol.ops import Op

Line = dict[str, Any]
DEADLINE = 10.0


class Reader:
    """A monitor client: the lines it has read, parsed."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buffer = b""
        self.lines: list[Line] = []

    async def until(self, found: Callable[[Line], bool]) -> Line:
        """Read lines until one satisfies ``found`` (fails after DEADLINE)."""
        with trio.fail_after(DEADLINE):
            while True:
                while b"\n" in self.buffer:
                    raw, self.buffer = self.buffer.split(b"\n", 1)
                    line = json.loads(raw)
                    self.lines.append(line)
                    if found(line):
                        return line
                data = await self.sock.recv(65536)
                assert data, "the monitor feed closed"
                self.buffer += data


async def connect(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(path)
    return sock


@asynccontextmanager
async def daemon(**options: Any) -> AsyncIterator[tuple[Shell, str, str]]:
    """An in-process daemon with a monitor socket: (shell, its socket, the monitor's)."""
    directory = short_tempdir()
    path, monitor_path = os.path.join(directory, "socket"), os.path.join(directory, "monitor")
    shell = Shell(Server(), ShellOptions(socket_path=path, monitor_path=monitor_path, **options))
    async with trio.open_nursery() as nursery:
        await nursery.start(shell.serve)
        yield shell, path, monitor_path
        nursery.cancel_scope.cancel()


async def poll(condition: Callable[[], bool]) -> None:
    """Return once ``condition()`` holds (fails after DEADLINE).

    The daemon has no event to wait on for these (a client counted, a log line
    written): polling is the honest way for a test to watch them.
    """
    with trio.fail_after(DEADLINE):
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.002)


async def monitor_reader(shell: Shell, monitor_path: str) -> Reader:
    """A connected monitor client, once the daemon counts it."""
    reader = Reader(await connect(monitor_path))
    await poll(lambda: shell.monitor.active)
    return reader


async def test_a_write_says_who_wrote_and_which_watchers_were_told() -> None:
    async with daemon() as (shell, path, monitor_path):
        watcher = await connect(path)
        await call(watcher, Packet(Op.WATCH, 1, 0, join("/a", "tok")))
        reader = await monitor_reader(shell, monitor_path)
        writer = await connect(path)
        connected = await reader.until(lambda line: line["op"] == "CONNECT")
        writer_conn = connected["conn"]
        assert connected["domid"] == 0
        assert (await call(writer, Packet(Op.READ, 2, 0, b"/tool\0"))).op == Op.READ
        await call(writer, Packet(Op.WRITE, 3, 0, b"/a/b\0hello"))
        line = await reader.until(lambda line: line["op"] == "WRITE")
        assert line["conn"] == writer_conn and line["domid"] == 0
        assert line["path"] == "/a/b" and line["value"] == "hello" and line["reply"] == "OK"
        assert line["req_id"] == 3 and line["tx"] == 0
        assert isinstance(line["time"], float) and abs(line["time"] - time.time()) < 60
        [event] = line["events"]
        assert event["domid"] == 0 and event["path"] == "/a/b" and event["token"] == "tok"
        assert event["conn"] not in (writer_conn, None)
        # Reads are not shown by default.
        assert not [seen for seen in reader.lines if seen["op"] == "READ"]
        # An error is shown by name, and a line's seq counts every line.
        await call(writer, Packet(Op.RM, 4, 0, b"/no/such\0"))
        failed = await reader.until(lambda line: line["op"] == "RM")
        assert failed["reply"] == "ENOENT" and failed["events"] == []
        assert failed["seq"] == line["seq"] + 1
        writer.close()
        gone = await reader.until(lambda line: line["op"] == "DISCONNECT")
        assert gone["conn"] == writer_conn
        watcher.close()
        reader.sock.close()


async def test_a_long_value_is_cut_and_a_commit_lists_its_changes() -> None:
    async with daemon() as (shell, path, monitor_path):
        reader = await monitor_reader(shell, monitor_path)
        dom0 = await connect(path)
        await call(dom0, Packet(Op.WRITE, 1, 0, b"/big\0" + b"x" * 1000))
        line = await reader.until(lambda line: line["op"] == "WRITE")
        assert line["value"] == "x" * monitor_record.VALUE_MAX and line["value_bytes"] == 1000
        started = await call(dom0, Packet(Op.TRANSACTION_START, 2, 0, b"\0"))
        tx_id = int(started.payload.rstrip(b"\0"))
        await call(dom0, Packet(Op.WRITE, 3, tx_id, b"/t/x\0one"))
        await call(dom0, Packet(Op.RM, 4, tx_id, b"/big\0"))
        await call(dom0, Packet(Op.SET_PERMS, 5, tx_id, join("/t", "n0", "r3")))
        in_tx = await reader.until(lambda line: line["op"] == "WRITE" and line["tx"] == tx_id)
        assert in_tx["path"] == "/t/x"
        await call(dom0, Packet(Op.TRANSACTION_END, 6, tx_id, b"T\0"))
        commit = await reader.until(lambda line: line["op"] == "TRANSACTION_END")
        assert commit["commit"] is True and commit["reply"] == "OK"
        assert commit["changes"] == [
            {"op": "WRITE", "path": "/t/x", "value": "one"},
            {"op": "RM", "path": "/big"},
            {"op": "SET_PERMS", "path": "/t", "perms": "n0 r3"},
        ]
        dom0.close()
        reader.sock.close()


async def test_nobody_monitoring_costs_nothing_and_a_closed_monitor_is_forgotten() -> None:
    async with daemon() as (shell, path, monitor_path):
        assert stat.S_ISSOCK(os.lstat(monitor_path).st_mode)
        assert not shell.monitor.active
        dom0 = await connect(path)
        await call(dom0, Packet(Op.WRITE, 1, 0, b"/a\0v"))  # made no line: nobody listens
        reader = await monitor_reader(shell, monitor_path)
        reader.sock.close()
        await poll(lambda: not shell.monitor.active)
        assert shell.monitor.clients == set()
        dom0.close()
    assert not os.path.exists(monitor_path)  # noqa: ASYNC240 (removed when the daemon stops)


async def test_a_monitor_that_never_reads_is_bounded_and_told_what_it_missed() -> None:
    async with daemon() as (shell, path, monitor_path):
        shell.monitor.buffer_max = 16 * 1024
        slow = await monitor_reader(shell, monitor_path)
        slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        dom0 = await connect(path)
        value = b"v" * 150
        started = time.monotonic()
        for req_id in range(1, 3001):
            await call(dom0, Packet(Op.WRITE, req_id, 0, b"/n\0" + value))
            assert shell.monitor.clients and all(
                client.size <= shell.monitor.buffer_max for client in shell.monitor.clients)
        elapsed = time.monotonic() - started
        assert shell.monitor.lines_dropped > 0
        assert elapsed < 30  # answered all along, never held up by the monitor
        # Read it all now: lines came in order, and the first after a gap says how
        # many were dropped; nothing is lost without being counted. A line written
        # while the buffer is still full is dropped too: write until one comes through.
        last: Line | None = None
        for attempt in range(1, 100):
            await call(dom0, Packet(Op.WRITE, 9000 + attempt, 0, b"/last\0"))
            with trio.move_on_after(0.2):
                last = await slow.until(lambda line: line.get("path") == "/last")
            if last is not None:
                break
        assert last is not None
        writes = [line for line in slow.lines if line["op"] == "WRITE"]
        told = sum(line.get("dropped", 0) for line in writes)
        assert told > 0 and len(writes) + told == 3000 + attempt
        seqs = [line["seq"] for line in writes]
        assert seqs == sorted(seqs)
        dom0.close()
        slow.sock.close()


async def test_a_guest_is_named_by_its_domain_and_its_paths_made_absolute() -> None:
    directory = short_tempdir()
    async with daemon(domain_dir=directory) as (shell, path, monitor_path):
        reader = await monitor_reader(shell, monitor_path)
        dom0 = await connect(path)
        await call(dom0, Packet(Op.WRITE, 1, 0, b"/local/domain/7\0"))
        await call(dom0, Packet(Op.SET_PERMS, 2, 0, join("/local/domain/7", "n7", "r0")))
        await call(dom0, Packet(Op.INTRODUCE, 3, 0, join("7", "4096", "1")))
        introduced = await reader.until(lambda line: line["op"] == "INTRODUCE")
        assert introduced["args"] == ["7", "4096", "1"] and introduced["reply"] == "OK"
        await call(dom0, Packet(Op.WATCH, 4, 0, join("/local/domain/7/device", "dev")))
        guest = await connect(os.path.join(directory, "7"))
        await call(guest, Packet(Op.WRITE, 1, 0, b"device/vbd/51712/state\x004"))
        line = await reader.until(lambda line: line["op"] == "WRITE" and line["domid"] == 7)
        assert line["path"] == "/local/domain/7/device/vbd/51712/state"
        assert [(e["domid"], e["path"], e["token"]) for e in line["events"]] == [
            (0, "/local/domain/7/device/vbd/51712/state", "dev")]
        await call(guest, Packet(Op.WRITE, 2, 0, b"/tool/x\0no"))
        refused = await reader.until(lambda line: line.get("path") == "/tool/x")
        assert refused["reply"] == "EACCES" and refused["domid"] == 7
        guest.close()
        dom0.close()
        reader.sock.close()


async def test_a_failure_making_a_line_costs_the_line_not_the_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise RuntimeError("injected fault: line")

    async with daemon() as (shell, path, monitor_path):
        reader = await monitor_reader(shell, monitor_path)
        dom0 = await connect(path)
        monkeypatch.setattr(monitor_record, "request", broken)
        with caplog.at_level(logging.ERROR, "xenstore.daemon"):
            assert (await call(dom0, Packet(Op.WRITE, 1, 0, b"/a\0v"))).payload == b"OK\0"
            assert (await call(dom0, Packet(Op.READ, 2, 0, b"/a\0"))).payload == b"v"
        assert "internal error in the monitor feed" in caplog.text
        monkeypatch.undo()
        await call(dom0, Packet(Op.WRITE, 3, 0, b"/b\0w"))
        assert (await reader.until(lambda line: line["op"] == "WRITE"))["path"] == "/b"
        dom0.close()
        reader.sock.close()


async def test_a_failed_accept_loop_is_made_again_and_a_failed_writer_costs_its_client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    start_client = monitor_module.Monitor._start_client
    fired = []

    def faulty(self: monitor_module.Monitor, sock: socket.socket) -> None:
        if not fired:
            fired.append(True)
            raise RuntimeError("injected fault: monitor accept")
        start_client(self, sock)

    monkeypatch.setattr(monitor_module.Monitor, "_start_client", faulty)
    async with daemon() as (shell, path, monitor_path):
        with caplog.at_level(logging.INFO, "xenstore.daemon"):
            first = await connect(monitor_path)
            with trio.fail_after(DEADLINE):
                assert await first.recv(10) == b""  # closed: it met the failure
            await poll(lambda: "listening for monitors again" in caplog.text)
        assert "internal error in the monitor socket" in caplog.text
        reader = await monitor_reader(shell, monitor_path)
        assert stat.S_IMODE(os.stat(monitor_path).st_mode) == 0o600

        write = monitor_module.Monitor._write
        kept: list[monitor_module.MonitorClient] = []

        async def broken_write(client: monitor_module.MonitorClient, stream: Any) -> None:
            if client in kept:  # the reader's own writer, which may not have started yet
                await write(client, stream)
            raise RuntimeError("injected fault: monitor writer")

        kept.extend(shell.monitor.clients)
        monkeypatch.setattr(monitor_module.Monitor, "_write", staticmethod(broken_write))
        other = await connect(monitor_path)
        with trio.fail_after(DEADLINE):
            assert await other.recv(10) == b""  # its writer failed: it alone is closed
        assert "internal error writing to a monitor client" in caplog.text
        dom0 = await connect(path)
        await call(dom0, Packet(Op.WRITE, 1, 0, b"/still\0here"))
        assert (await reader.until(lambda line: line["op"] == "WRITE"))["path"] == "/still"
        first.close()
        other.close()
        dom0.close()
        reader.sock.close()


def test_the_flag_on_the_real_daemon() -> None:
    """``pyxenstored --monitor PATH``: a 0600 socket; a bad path is logged, not fatal."""
    monitor_dir = short_tempdir()
    monitor_path = os.path.join(monitor_dir, "monitor")
    ours = OurDaemon("--monitor", monitor_path)
    try:
        assert stat.S_IMODE(os.stat(monitor_path).st_mode) == 0o600
        feed = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        feed.settimeout(DEADLINE)
        feed.connect(monitor_path)
        deadline = time.monotonic() + DEADLINE
        data = b""
        with Client(ours.socket_path, timeout=DEADLINE) as dom0:
            while b'"op":"WRITE"' not in data:
                assert time.monotonic() < deadline, data
                dom0.write("/x", "1")  # until the daemon has taken the feed's client
                feed.settimeout(0.2)
                with contextlib.suppress(TimeoutError):
                    data += feed.recv(65536)
        line = json.loads(data.split(b"\n")[0])
        assert line["op"] in ("WRITE", "CONNECT", "DISCONNECT")
        feed.close()
    finally:
        ours.stop()
    broken = OurDaemon("--monitor", "/nonexistent/dir/monitor")
    try:
        with Client(broken.socket_path, timeout=DEADLINE) as dom0:
            dom0.write("/x", "1")
    finally:
        broken.stop()
        os.rmdir(monitor_dir)
    assert "cannot listen for monitors on /nonexistent/dir/monitor" in broken.stderr_text
