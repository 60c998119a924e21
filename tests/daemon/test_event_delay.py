"""CONTROL fault event-delay in the shell: watch events late and in order, replies not.

Times are asserted as "at least the delay" with generous upper bounds, never
as exact figures: a slow machine may be late, never early.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from tests.conftest import short_tempdir
from tests.rawsocket import call
from xenstore.daemon.config import Config
from xenstore.daemon.core import Server
from xenstore.daemon.delayed import DelayedEvents
from xenstore.daemon.effects import Send
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op

DELAY = 0.3
#: Where a reply must overtake events: long enough for a few round trips on any machine.
LONG_DELAY = 1.0
#: Far more than any machine needs to deliver on time, far less than a hang.
LATE = 15.0


@asynccontextmanager
async def serving(faults: bool = True) -> AsyncIterator[tuple[str, Shell]]:
    path = os.path.join(short_tempdir(), "s")
    shell = Shell(Server(Config(faults=faults)), ShellOptions(socket_path=path))
    async with trio.open_nursery() as nursery:
        await nursery.start(shell.serve)
        yield path, shell
        nursery.cancel_scope.cancel()


async def connect(path: str) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.connect(path)
    return sock


async def control(path: str, *args: str) -> Packet:
    sock = await connect(path)
    with sock:
        return await call(sock, Packet(Op.CONTROL, 1, 0, join(*args)))


class Arrivals:
    """Every packet a connection receives, with the time it came."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.got: list[tuple[float, Packet]] = []
        self._framer = Framer()

    async def until(self, count: int) -> None:
        """Read until ``count`` packets have come in all."""
        with trio.fail_after(LATE):
            while len(self.got) < count:
                data = await self.sock.recv(65536)
                assert data, "the daemon hung up"
                now = trio.current_time()
                self.got.extend((now, packet) for packet in self._framer.feed(data))

    def events(self) -> list[tuple[float, bytes]]:
        return [(t, p.payload) for t, p in self.got if p.op == Op.WATCH_EVENT]


async def test_events_come_late_in_order_and_replies_overtake_them() -> None:
    async with serving() as (path, shell):
        reply = await control(path, "fault", "event-delay", str(LONG_DELAY))
        assert reply.payload == b"OK\0"
        watcher = await connect(path)
        arrivals = Arrivals(watcher)
        started = trio.current_time()
        await watcher.send(encode(Packet(Op.WATCH, 1, 0, join("/w", "t"))))
        await arrivals.until(1)
        # The reply came first, then (held) the registration's first event.
        assert arrivals.got[0][1] == Packet(Op.WATCH, 1, 0, b"OK\0")

        writer = await connect(path)
        written = []
        for i in range(3):
            written.append(trio.current_time())
            await call(writer, Packet(Op.WRITE, 1, 0, b"/w/%d\0x" % i))
        # The watcher's own request is answered while its events are still held.
        await watcher.send(encode(Packet(Op.READ, 2, 0, b"/w/2\0")))
        await arrivals.until(2)
        assert arrivals.got[1][1] == Packet(Op.READ, 2, 0, b"x")
        assert not arrivals.events()
        assert len(shell.delayed) >= 3

        await arrivals.until(6)
        events = arrivals.events()
        assert [payload for _, payload in events] == [
            join("/w", "t"), join("/w/0", "t"), join("/w/1", "t"), join("/w/2", "t")
        ]
        assert events[0][0] - started >= LONG_DELAY
        for (came, _), sent in zip(events[1:], written, strict=True):
            assert LONG_DELAY <= came - sent < LATE
        assert len(shell.delayed) == 0
        writer.close()
        watcher.close()


async def test_events_made_after_the_delay_is_cleared_wait_behind_those_held() -> None:
    async with serving() as (path, _):
        await control(path, "fault", "event-delay", str(DELAY))
        watcher = await connect(path)
        arrivals = Arrivals(watcher)
        await watcher.send(encode(Packet(Op.WATCH, 1, 0, join("/w", "t"))))
        await arrivals.until(1)
        await control(path, "fault", "clear")
        writer = await connect(path)
        await call(writer, Packet(Op.WRITE, 1, 0, b"/w\0x"))
        await arrivals.until(3)
        assert [payload for _, payload in arrivals.events()] == [join("/w", "t")] * 2
        # Once none are held, events come on time again.
        await call(writer, Packet(Op.WRITE, 1, 0, b"/w\0y"))
        sent = trio.current_time()
        await arrivals.until(4)
        assert arrivals.events()[-1][0] - sent < LATE
        writer.close()
        watcher.close()


async def test_events_for_a_connection_gone_meanwhile_are_dropped() -> None:
    async with serving() as (path, shell):
        await control(path, "fault", "event-delay", str(DELAY))
        watcher = await connect(path)
        await call(watcher, Packet(Op.WATCH, 1, 0, join("/w", "t")))
        writer = await connect(path)
        await call(writer, Packet(Op.WRITE, 1, 0, b"/w\0x"))
        assert len(shell.delayed) == 2
        watcher.close()
        for _ in range(int(LATE / 0.05)):  # until they are due, and dropped
            if not len(shell.delayed):
                break
            await trio.sleep(0.05)
        assert len(shell.delayed) == 0
        # The daemon goes on, and another watcher hears its events.
        other = await connect(path)
        arrivals = Arrivals(other)
        await other.send(encode(Packet(Op.WATCH, 1, 0, join("/w", "u"))))
        await arrivals.until(2)
        assert arrivals.events()[0][1] == join("/w", "u")
        other.close()
        writer.close()


async def test_a_daemon_without_faults_refuses_the_command_and_delays_nothing() -> None:
    async with serving(faults=False) as (path, shell):
        reply = await control(path, "fault", "event-delay", "5")
        assert reply == Packet(Op.ERROR, 1, 0, b"EACCES\0")
        assert not shell.delayed.active


# -- DelayedEvents alone, on trio's test clock -------------------------------------------


def event(conn_id: int, n: int) -> Send:
    return Send(conn_id, Packet(Op.WATCH_EVENT, 0, 0, join(f"/e{n}", "t")))


async def test_a_shortened_delay_never_reorders(autojump_clock: trio.testing.MockClock) -> None:
    delivered: list[tuple[float, Send]] = []
    delayed = DelayedEvents(lambda sends: delivered.extend((trio.current_time(), s)
                                                           for s in sends))
    async with trio.open_nursery() as nursery:
        delayed.nursery = nursery
        start = trio.current_time()
        delayed.set_delay(10)
        delayed.hold(event(1, 0))
        delayed.set_delay(1)
        delayed.hold(event(1, 1))  # due at 1 s, but not before the first
        delayed.set_delay(0)
        assert delayed.active  # some are held: events made now must wait behind them
        delayed.hold(event(2, 2))
    assert [(t - start, s) for t, s in delivered] == [
        (10, event(1, 0)), (10, event(1, 1)), (10, event(2, 2))
    ]
    assert not delayed.active and len(delayed) == 0


async def test_discard_forgets_one_connections_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    delivered: list[Send] = []
    delayed = DelayedEvents(delivered.extend)
    async with trio.open_nursery() as nursery:
        delayed.nursery = nursery
        delayed.set_delay(1)
        for n in range(4):
            delayed.hold(event(1 + n % 2, n))
        delayed.discard(1)
        assert len(delayed) == 2
    assert delivered == [event(2, 1), event(2, 3)]


async def test_a_failure_delivering_costs_those_events_not_the_daemon(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    delivered: list[Send] = []

    def deliver(sends: list[Send]) -> None:
        if sends[0] == event(1, 0):
            raise RuntimeError("a bug")
        delivered.extend(sends)

    delayed = DelayedEvents(deliver)
    async with trio.open_nursery() as nursery:
        delayed.nursery = nursery
        delayed.set_delay(1)
        delayed.hold(event(1, 0))
        await trio.sleep(0.5)
        delayed.hold(event(1, 1))
    assert delivered == [event(1, 1)]
    assert any(r.levelno == logging.ERROR and "delayed watch events" in r.getMessage()
               for r in caplog.records)


async def test_without_a_nursery_events_go_at_once() -> None:
    delivered: list[Send] = []
    delayed = DelayedEvents(delivered.extend)
    delayed.set_delay(5)
    delayed.hold(event(1, 0))
    assert delivered == [event(1, 0)]
