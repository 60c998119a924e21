"""The trio client's watches: registrations by token, and the stream of each one's events.

A connection may hold several watches with one token on different paths; an
event names only the token (and the path that changed), so the path tells them
apart. Events are buffered without bound: none is lost however slowly a watch is
read, and none is ever dropped by the client.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import trio

from xenstore.protocol import requests
from xenstore.protocol.requests import WatchEvent


class Registration:
    """A watch registered on a connection and the channel its events go to."""

    __slots__ = ("active", "send", "token", "wpath")

    def __init__(self, wpath: str, token: str, send: trio.MemorySendChannel[WatchEvent]) -> None:
        self.wpath = wpath
        self.token = token
        self.send = send
        #: The daemon accepted the WATCH.
        self.active = False


def covers(wpath: str, epath: str) -> bool:
    """Whether an event for ``epath`` can belong to a watch on ``wpath``.

    Daemons send the changed path when it is ``wpath`` or below it, and
    ``wpath`` itself for a change above it (a removed ancestor), so an event of
    the watch always has ``wpath`` as a prefix.
    """
    return epath == wpath or epath.startswith(wpath if wpath.endswith("/") else wpath + "/")


class WatchTable:
    """One connection's watches, by token."""

    def __init__(self) -> None:
        self._by_token: dict[str, list[Registration]] = {}

    def register(self, wpath: str, token: str
                 ) -> tuple[Registration, trio.MemoryReceiveChannel[WatchEvent]]:
        send, receive = trio.open_memory_channel[WatchEvent](math.inf)
        watch = Registration(wpath, token, send)
        self._by_token.setdefault(token, []).append(watch)
        return watch, receive

    def forget(self, watch: Registration) -> None:
        watches = self._by_token.get(watch.token, [])
        if watch in watches:
            watches.remove(watch)
            if not watches:
                del self._by_token[watch.token]

    def held_elsewhere(self, watch: Registration) -> bool:
        """Whether another active registration holds the same (wpath, token) on the
        daemon (this one's WATCH got, or would have got, EEXIST)."""
        return any(w.active and w.wpath == watch.wpath
                   for w in self._by_token.get(watch.token, []))

    def close_all(self) -> None:
        for watches in self._by_token.values():
            for watch in watches:
                watch.send.close()

    def deliver(self, payload: bytes) -> None:
        event = requests.watch_event_of(payload)
        if event is None:
            return
        watches = self._by_token.get(event[1])
        if not watches:
            return  # a watch being left: its UNWATCH is on its way
        if len(watches) > 1:
            # One token on several paths: the event names only the token, so
            # the path tells them apart. Should none match (a daemon's special
            # path we do not know), every one gets it rather than none.
            watches = [w for w in watches if covers(w.wpath, event[0])] or watches
        for watch in watches:
            # Unbounded buffer: never blocks, never drops.
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                watch.send.send_nowait(event)


class WatchEvents:
    """The events of one watch, in the order the daemon sent them.

    Iterate with ``async for``, or call :meth:`receive`. The iteration ends when
    the watch is left or the client closed; it raises
    :class:`ConnectionResetError` when the daemon closed the connection, after
    every event received before that has been yielded.
    """

    def __init__(
        self,
        wpath: str,
        token: str,
        receive: trio.MemoryReceiveChannel[WatchEvent],
        lost: Callable[[], Exception | None],
    ) -> None:
        self.wpath = wpath
        self.token = token
        self._receive = receive
        #: Why the connection ended, if the daemon closed it (None otherwise).
        self._lost = lost

    def __aiter__(self) -> WatchEvents:
        return self

    async def __anext__(self) -> WatchEvent:
        try:
            return await self.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def receive(self) -> WatchEvent:
        """Wait for the next event.

        Raises :class:`trio.EndOfChannel` once the watch is left or the client
        closed, :class:`ConnectionResetError` once the daemon closed the
        connection and the events before that were received.
        """
        try:
            return await self._receive.receive()
        except trio.EndOfChannel:
            self._raise_if_lost()
            raise

    def receive_nowait(self) -> WatchEvent:
        """The next event if one is queued, else :class:`trio.WouldBlock`."""
        try:
            return self._receive.receive_nowait()
        except trio.EndOfChannel:
            self._raise_if_lost()
            raise

    def _raise_if_lost(self) -> None:
        error = self._lost()
        if error is not None:
            raise error
