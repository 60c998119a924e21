"""What the live page shows, kept current: the store (read as dom0), the daemon's
monitor lines, the host's domains; and the pages watching, each told every change.

:class:`Feed` follows the daemon's monitor socket (``pyxenstored --monitor``) and
keeps a :class:`~xenstore.lab.storeview.StoreView` right by reading again what
each line touched. Every page gets a snapshot when it connects, then events:
``line`` (a monitor line as the daemon wrote it), ``nodes`` (a
:class:`~xenstore.lab.storeview.Delta`), ``domains`` (the provider's list, when
it changes) and ``status`` (whether the daemon is followed). A page that does
not keep up is cut off; its browser reconnects and starts from a fresh snapshot,
so a slow page never grows this process.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient, open_client
from xenstore.lab.storeview import Affected, Delta, NodeView, StoreView, affected, domains_in

log = logging.getLogger("xenstore.lab.web")

DomainList = list[dict[str, Any]]
#: Where the domains and their states come from: the host's hypervisor, or the store.
DomainsProvider = Callable[[], DomainList | Awaitable[DomainList]]

#: Monitor lines kept for pages that open later.
HISTORY = 300
#: Events a page may have waiting before it is cut off (it reconnects afresh).
VIEWER_BACKLOG = 512
#: Pages at once: each costs a task and its backlog.
VIEWERS_MAX = 32
#: Pause before following the daemon again after losing it.
RETRY = 1.0
#: How often the domains are asked for when nothing happens in the store (a
#: hypervisor's states change without a store write).
DOMAINS_EVERY = 1.0


def sse(event: str, data: object) -> bytes:
    """One Server-Sent Event (JSON never holds a newline, so one ``data`` line)."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def read_node(xs: AsyncClient, path: str) -> tuple[NodeView, list[str]] | None:
    """A node and its children's names; None if it is gone."""
    try:
        value = await xs.read(path)
        perms = await xs.get_perms(path)
        children = await xs.directory(path)
    except errors.ENOENT:
        return None
    return NodeView(path, value.decode("utf-8", "backslashreplace"), tuple(perms)), children


async def walk(xs: AsyncClient, top: str) -> list[NodeView]:
    """``top`` and its subtree, parents before children (a level's reads at once)."""
    found: list[NodeView] = []
    level = [top]

    async def one(into: list[tuple[NodeView, list[str]] | None], index: int, path: str) -> None:
        into[index] = await read_node(xs, path)

    while level:
        read: list[tuple[NodeView, list[str]] | None] = [None] * len(level)
        async with trio.open_nursery() as nursery:
            for index, path in enumerate(level):
                nursery.start_soon(one, read, index, path)
        following: list[str] = []
        for path, got in zip(level, read, strict=True):
            if got is not None:
                found.append(got[0])
                following += [f"{path.rstrip('/')}/{child}" for child in got[1]]
        level = following
    return found


class Viewers:
    """The pages connected to the event stream, each with a bounded backlog."""

    def __init__(self) -> None:
        self._senders: set[trio.MemorySendChannel[bytes]] = set()

    def __len__(self) -> int:
        return len(self._senders)

    def join(self) -> trio.MemoryReceiveChannel[bytes] | None:
        """A new page's channel (None when there are too many pages)."""
        if len(self._senders) >= VIEWERS_MAX:
            return None
        send, receive = trio.open_memory_channel[bytes](VIEWER_BACKLOG)
        self._senders.add(send)
        return receive

    def publish(self, frame: bytes) -> None:
        for send in list(self._senders):
            try:
                send.send_nowait(frame)
            except trio.WouldBlock:  # it does not keep up: cut it off, it comes back afresh
                self._senders.discard(send)
                send.close()
            except (trio.BrokenResourceError, trio.ClosedResourceError):  # it went away
                self._senders.discard(send)
                send.close()


class Feed:
    """The store, the monitor lines and the domains, as the pages see them."""

    def __init__(self, socket_path: str, monitor_path: str,
                 domains: DomainsProvider | None = None) -> None:
        self.socket_path = socket_path
        self.monitor_path = monitor_path
        self.view = StoreView()
        self.provider: DomainsProvider = domains or (lambda: domains_in(self.view))
        self.domains: DomainList = []
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.viewers = Viewers()
        self.connected = False
        self._xs: AsyncClient | None = None
        self._complaints = 0
        self._provider_failures = 0

    # -- what a page gets -------------------------------------------------------------

    def subscribe(self) -> tuple[bytes, trio.MemoryReceiveChannel[bytes]] | None:
        """The snapshot for a new page and its channel of later events (no event can
        fall between the two: nothing awaits here)."""
        receive = self.viewers.join()
        if receive is None:
            return None
        return sse("snapshot", self.snapshot()), receive

    def snapshot(self) -> dict[str, Any]:
        return {"nodes": self.view.snapshot(), "domains": self.domains,
                "log": list(self.history), "status": self._status()}

    def _status(self) -> dict[str, Any]:
        return {"daemon": "connected" if self.connected else "waiting",
                "socket": self.socket_path, "monitor": self.monitor_path}

    def _set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.viewers.publish(sse("status", self._status()))

    # -- following the daemon ----------------------------------------------------------

    async def run(self) -> None:
        """Follow the daemon for ever: a lost daemon is waited for and followed again.

        This is the page's supervisor: whatever fails costs one attempt, logged.
        """
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._poll_domains)
            while True:
                try:
                    await self._follow_once()
                except OSError as exc:
                    self._complain(f"the daemon is not there ({exc}); trying again")
                except errors.XenStoreError as exc:
                    self._complain(f"the daemon refused a read ({exc}); following it again")
                except Exception:
                    log.exception("internal error following the daemon; following it again")
                self._set_connected(False)
                self._xs = None
                await trio.sleep(RETRY)

    def _complain(self, message: str) -> None:
        self._complaints += 1
        if self._complaints & (self._complaints - 1) == 0:  # the 1st, 2nd, 4th... time
            log.warning("%s", message)

    async def _follow_once(self) -> None:
        # The monitor first: no change can fall between the snapshot and the lines.
        async with await trio.open_unix_socket(self.monitor_path) as monitor, \
                open_client(self.socket_path) as xs:
            self._xs = xs
            await self._refresh(Affected(everything=True))
            self._set_connected(True)
            self._complaints = 0
            log.info("following the daemon at %s (monitor %s)", self.socket_path,
                     self.monitor_path)
            pending = b""
            async for chunk in monitor:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                await self._take([json.loads(raw) for raw in complete if raw.strip()])
            log.warning("the daemon closed its monitor feed")

    async def _take(self, lines: list[dict[str, Any]]) -> None:
        """A batch of monitor lines: shown at once, then what they touched read again."""
        reread: list[str] = []
        gone: list[str] = []
        everything = False
        for line in lines:
            self.history.append(line)
            self.viewers.publish(sse("line", line))
            one = affected(line)
            reread += one.reread
            gone += one.gone
            everything = everything or one.everything
        await self._refresh(Affected(tuple(dict.fromkeys(reread)), tuple(gone), everything))
        await self._update_domains()

    async def _refresh(self, what: Affected) -> None:
        xs = self._xs
        assert xs is not None
        delta = Delta()
        view = self.view
        if what.everything:
            view.replace("/", await walk(xs, "/"), delta)
        else:
            for path in what.gone:
                view.remove(path, delta)
            for path in what.reread:
                if path in view:  # a node written again: its children did not change
                    got = await read_node(xs, path)
                    if got is None:
                        view.remove(path, delta)
                    else:
                        view.put([got[0]], delta)
                else:  # new: with the ancestors the write made
                    top = view.topmost_missing(path)
                    view.replace(top, await walk(xs, top), delta)
        if delta:
            self.viewers.publish(sse("nodes", delta.as_json()))
        if what.everything:
            await self._update_domains()

    # -- the domains -----------------------------------------------------------------------

    async def _poll_domains(self) -> None:
        while True:
            await self._update_domains()
            await trio.sleep(DOMAINS_EVERY)

    async def _update_domains(self) -> None:
        try:
            got = self.provider()
            domains = await got if inspect.isawaitable(got) else got
        except Exception:
            self._provider_failures += 1
            if self._provider_failures & (self._provider_failures - 1) == 0:
                log.exception("the domains provider failed (%d times so far); the page "
                              "keeps the last list", self._provider_failures)
            return
        if domains != self.domains:
            self.domains = list(domains)
            self.viewers.publish(sse("domains", self.domains))
