"""The monitor feed (``pyxenstored --monitor PATH``): who changed what, and who was told.

Watch events cannot say who wrote. Every client connected to the monitor socket
(mode 0600: dom0's owner only) gets one JSON object per line for each request
that changed the store or the watch registry (by default
:data:`~xenstore.daemon.monitor_record.CHANGING`; ``--monitor-all``: every
request), with the watch events it caused; ``CONNECT`` and ``DISCONNECT`` lines
frame each connection's life. The line format is
:mod:`~xenstore.daemon.monitor_record`'s.

It costs the daemon one attribute check per request while nobody is connected
(:attr:`Monitor.active`). A monitor client never slows or grows the daemon:
each has a bounded buffer, and lines that do not fit are dropped; the next line
that fits says how many with ``"dropped": N``. A failure in the feed is logged
and costs the feed (or that client), never a request or the daemon: the accept
loop is supervised and a client's task ends alone.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio

from xenstore.daemon import monitor_record
from xenstore.daemon.listeners import (
    accept_loop,
    bind_unix,
    close_listener,
    identity,
    unlink_if_ours,
)
from xenstore.daemon.supervision import supervised
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

if TYPE_CHECKING:
    from xenstore.daemon.core import Server
    from xenstore.daemon.effects import Effect

log = logging.getLogger("xenstore.daemon")

#: Unsent bytes a monitor client may have waiting; lines beyond are dropped.
BUFFER_MAX = 1024 * 1024


class MonitorClient:
    """One reader of the feed: its socket and the lines it has not been sent yet."""

    __slots__ = ("dropped", "lines", "ready", "size", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[bytes] = []
        self.size = 0
        #: Lines dropped since the last one that fitted.
        self.dropped = 0
        self.ready = trio.Event()

    def put(self, line: bytes, limit: int) -> None:
        """Queue ``line``, or drop it when the buffer is full (and count it)."""
        if self.dropped:
            line = b'{"dropped":%d,' % self.dropped + line[1:]
        if self.size + len(line) > limit:
            self.dropped += 1
            return
        self.dropped = 0
        self.lines.append(line)
        self.size += len(line)
        self.ready.set()


class Monitor:
    """The feed of one daemon: its socket, its clients, and the lines it makes."""

    def __init__(
        self,
        server: Server,
        path: str | None,
        *,
        every_request: bool = False,
        mode: int = 0o600,
        buffer_max: int = BUFFER_MAX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.server = server
        self.path = path
        self.mode = mode
        self.buffer_max = buffer_max
        self.clock = clock
        #: The ops a line is made for; None: every request.
        self.ops: frozenset[int] | None = None if every_request else monitor_record.CHANGING
        #: Whether anyone listens: the shell's only cost per request when nobody does.
        self.active = False
        self.clients: set[MonitorClient] = set()
        self.lines_dropped = 0
        self._seq = 0
        self._failures = 0
        self._listener: socket.socket | None = None
        self._ident: tuple[int, int] | None = None
        self._nursery: trio.Nursery | None = None

    # -- making lines (called by the shell only while active) -----------------

    def handle(self, conn_id: int, packet: Packet) -> list[Effect]:
        """``server.handle``, and the line describing what it did."""
        server = self.server
        if self.ops is not None and packet.op not in self.ops:
            return server.handle(conn_id, packet)
        conn = server.connections[conn_id]
        tx_log = None
        if packet.op == Op.TRANSACTION_END and packet.payload == b"T\0":
            tx = conn.transactions.get(packet.tx_id)
            # The log outlives the commit (which empties the connection's table).
            tx_log = tx.log if tx is not None else None
        effects = server.handle(conn_id, packet)
        try:
            self.publish(monitor_record.request(
                conn_id, conn.domid, packet, effects, self._domid_of, tx_log))
        except Exception:
            self._failed("a request's line")
        return effects

    def connected(self, conn_id: int) -> None:
        conn = self.server.connections.get(conn_id)
        self._publish_safely({"conn": conn_id, "domid": conn.domid if conn else None,
                              "op": "CONNECT"})

    def disconnected(self, conn_id: int, domid: int) -> None:
        self._publish_safely({"conn": conn_id, "domid": domid, "op": "DISCONNECT"})

    def _publish_safely(self, record: dict[str, object]) -> None:
        try:
            self.publish(record)
        except Exception:  # the feed's bug must not cost a connection
            self._failed(f"a {record['op']} line")

    def publish(self, record: dict[str, object]) -> None:
        """Send ``record`` as one line to every client (dropped where it does not fit)."""
        if not self.clients:
            return
        self._seq += 1
        head = {"seq": self._seq, "time": round(self.clock(), 6)}
        line = json.dumps(head | record, separators=(",", ":")).encode() + b"\n"
        for client in self.clients:
            before = client.dropped
            client.put(line, self.buffer_max)
            self.lines_dropped += client.dropped > before

    def _domid_of(self, conn_id: int) -> int | None:
        conn = self.server.connections.get(conn_id)
        return None if conn is None else conn.domid

    def _failed(self, what: str) -> None:
        self._failures += 1
        if self._failures & (self._failures - 1) == 0:  # the 1st, 2nd, 4th... time
            log.exception("internal error in the monitor feed making %s (%d times so far)",
                          what, self._failures)

    def report(self) -> list[str]:
        """For CONTROL memreport."""
        if self.path is None:
            return []
        held = sum(client.size for client in self.clients)
        return [f"monitor clients: {len(self.clients)}, unsent bytes: {held}, "
                f"lines dropped: {self.lines_dropped}"]

    # -- the socket ----------------------------------------------------------------

    def bind(self) -> bool:
        """Listen on the monitor socket; False (logged) if there is none or it fails.

        A monitor that cannot listen must not stop the daemon from serving.
        """
        if self.path is None:
            return False
        try:
            self._listener = bind_unix(self.path, self.mode)
        except (OSError, ValueError) as exc:
            log.error("cannot listen for monitors on %s: %s; running without the "
                      "monitor feed", self.path, exc)
            return False
        self._ident = identity(self.path)
        log.info("monitor feed on %s", self.path)
        return True

    async def serve(self) -> None:
        """Accept monitor clients until cancelled (after :meth:`bind` succeeded)."""
        assert self.path is not None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await supervised("the monitor socket", self._accept)
        finally:
            if self._listener is not None:
                close_listener(self._listener)
                self._listener = None
            unlink_if_ours(self.path, self._ident)
            self.clients.clear()
            self.active = False

    async def _accept(self) -> None:
        assert self.path is not None
        sock = self._listener
        if sock is None:  # started again after a failure
            sock = self._listener = bind_unix(self.path, self.mode)
            self._ident = identity(self.path)
            log.warning("listening for monitors again on %s", self.path)
        try:
            await accept_loop(sock, self._start_client)
        finally:
            close_listener(sock)
            self._listener = None

    def _start_client(self, sock: socket.socket) -> None:
        assert self._nursery is not None
        client = MonitorClient(sock)
        self.clients.add(client)
        self.active = True
        self._nursery.start_soon(self._serve_client, client)

    async def _serve_client(self, client: MonitorClient) -> None:
        """Write a client's lines until it goes away; whatever fails ends this client."""
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(client.sock))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._until_eof, stream, nursery.cancel_scope)
                await self._write(client, stream)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # it went away
        except* Exception:
            log.exception("internal error writing to a monitor client; it is closed")
        finally:
            self.clients.discard(client)
            self.active = bool(self.clients)
            stream.socket.close()

    @staticmethod
    async def _write(client: MonitorClient, stream: trio.SocketStream) -> None:
        while True:
            await client.ready.wait()
            client.ready = trio.Event()
            data = b"".join(client.lines)
            client.lines.clear()
            await stream.send_all(data)
            # Counted until sent: what a client holds stays within its buffer.
            client.size -= len(data)

    @staticmethod
    async def _until_eof(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        """A client that closes its end is forgotten at once, not at the next line."""
        while await stream.receive_some(4096):
            pass  # a monitor has nothing to say: what it sends is ignored
        scope.cancel()
