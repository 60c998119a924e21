"""The hot loop: one task waits for every connection's socket and serves each ready
one per wake-up.

A task per connection costs a trio wake-up per request (registering the socket
with trio's epoll, a pass of trio's run loop, rescheduling the task): ~6 µs of
the ~13 µs of daemon CPU a lock-step READ took, and with many busy connections
the daemon spent its time switching between their tasks. Here the connections'
sockets sit in an epoll of our own, and one task serves all of them:

- **Through trio** (always correct): the task waits until trio finds our epoll
  readable, then serves every ready socket in one round (a read each, every
  request in it through the core), then writes everything the round produced.
- **In place** (when :mod:`~xenstore.daemon.runloop` can see trio's run loop):
  once trio has nothing else to do (``wait_all_tasks_blocked``: the task then
  runs alone), it blocks in its own ``epoll_wait`` instead, with trio's epoll
  descriptor in the same set and trio's next deadline as the timeout, and serves
  round after round without a trio wake-up. It hands back to trio as soon as
  trio has anything to do: I/O for trio (its descriptor is ready), a task a
  round made runnable, a deadline due.

What must wait (a connection stalled on its unread output, a guest held by its
write rate) is not done here: the shell takes such a connection out of the loop
and gives it a task of its own until it may be served in place again.
"""

from __future__ import annotations

import contextlib
import math
import select
import selectors
import socket
from collections.abc import Callable

import trio

from xenstore.daemon import runloop

__all__ = ["HotLoop"]

#: How long to wait for trio to have nothing else to do before serving in place;
#: if it stays busy that long, the loop goes on waiting through trio.
IDLE_WAIT = 0.002

_EPOLL = getattr(select, "epoll", None)
_IN = getattr(select, "EPOLLIN", selectors.EVENT_READ)


class _Selector:
    """``select.epoll``'s interface over :mod:`selectors`, where there is no epoll
    (serving through trio only: this is not the fast path)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def fileno(self) -> int:
        return self._selector.fileno()

    def register(self, fd: int, events: int) -> None:
        self._selector.register(fd, selectors.EVENT_READ)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float = -1) -> list[tuple[int, int]]:
        ready = self._selector.select(None if timeout < 0 else timeout)
        return [(key.fd, mask) for key, mask in ready]

    def close(self) -> None:
        self._selector.close()


def _poller() -> select.epoll | _Selector:
    return _EPOLL() if _EPOLL is not None else _Selector()


class HotLoop:
    """Serves the sockets :meth:`add` gives it: ``serve(fd)`` for each one ready (it
    reads once and must not block), then ``settle()`` once a round (write what the
    round produced, end connections it closed)."""

    def __init__(self, serve: Callable[[int], None], settle: Callable[[], None],
                 *, in_place: bool = True) -> None:
        self._serve = serve
        self._settle = settle
        self._in_place = in_place and _EPOLL is not None
        #: The sockets and the bell, and trio's epoll while serving in place.
        self._mine = _poller()
        #: The sockets and the bell: what trio waits on for this loop.
        self._shared = _poller()
        self._bell, self._bell_rung = socket.socketpair()
        self._bell.setblocking(False)
        self._bell_rung.setblocking(False)
        self._bell_fd = self._bell_rung.fileno()
        self._trio_fd = -1
        for poller in (self._mine, self._shared):
            poller.register(self._bell_fd, _IN)
        #: Sockets registered now (for memreport and tests).
        self.count = 0
        #: Rounds served in place, without a trio wake-up (for memreport and tests).
        self.rounds_in_place = 0
        #: True while a round is served (what it closes is ended at its end).
        self.in_round = False
        #: How many descriptors the current round found ready.
        self.round_size = 0

    def add(self, fd: int) -> None:
        self._mine.register(fd, _IN)
        self._shared.register(fd, _IN)
        self.count += 1

    def discard(self, fd: int) -> None:
        """Stop watching ``fd`` (before it is closed, or while it waits elsewhere)."""
        removed = False
        for poller in (self._mine, self._shared):
            with contextlib.suppress(OSError, KeyError, ValueError):
                poller.unregister(fd)
                removed = True
        if removed:
            self.count -= 1

    def ring(self) -> None:
        """Make the loop run a round soon (``settle`` has work that came from elsewhere)."""
        with contextlib.suppress(OSError):
            self._bell.send(b"\0")

    def close(self) -> None:
        for thing in (self._mine, self._shared, self._bell, self._bell_rung):
            thing.close()

    async def run(self) -> None:
        """Serve until cancelled."""
        loop = runloop.probe() if self._in_place else None
        if loop is not None and loop.epoll_fd != self._trio_fd:
            self._mine.register(loop.epoll_fd, _IN)
            self._trio_fd = loop.epoll_fd
        poll, shared_fd = self._mine.poll, self._shared.fileno()
        while True:
            await trio.lowlevel.wait_readable(shared_fd)
            self._round(poll(0))
            if loop is None:
                continue
            with trio.move_on_after(IDLE_WAIT) as waited:
                await loop.wait_idle(0)
            if not waited.cancelled_caught and not loop.idle_waiters:
                self._serve_in_place(loop)

    def _serve_in_place(self, loop: runloop.RunLoop) -> None:
        """Block in our own epoll while trio has nothing to do, serving each round."""
        seconds = trio.lowlevel.current_statistics().seconds_to_next_deadline
        now = trio.current_time
        until = now() + seconds
        poll, runq = self._mine.poll, loop.runq
        while True:
            if math.isinf(until):
                timeout = -1.0
            else:
                timeout = until - now()
                if timeout <= 0:
                    return
            events = poll(timeout)
            if not events:  # a deadline of trio's is due
                return
            self.rounds_in_place += 1
            if self._round(events) or runq:
                return

    def _round(self, events: list[tuple[int, int]]) -> bool:
        """Serve the ready sockets; True if trio's own descriptor was among them."""
        trio_ready = False
        trio_fd, bell_fd, serve = self._trio_fd, self._bell_fd, self._serve
        self.in_round = True
        self.round_size = len(events)
        try:
            for fd, _ in events:
                if fd == trio_fd:
                    trio_ready = True
                elif fd == bell_fd:
                    with contextlib.suppress(OSError):
                        self._bell_rung.recv(4096)
                else:
                    serve(fd)
            self._settle()
        finally:
            self.in_round = False
        return trio_ready
