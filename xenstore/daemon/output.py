"""The output side of the shell: replies and events out, and their bounds.

What the core gives a connection while one read is answered collects in the
connection's ``out`` and is written with one non-blocking ``send``; only bytes
the kernel will not take wait in its backlog, drained by a flusher task when
the socket is writable again.

Output is bounded three ways, so that no client can grow the daemon's memory
by not reading (the XSA-326 family of advisories):

- replies: a connection whose backlog passes ``stall_at`` (any backlog at all
  for a guest) is not read again until it drains, so its further requests wait
  in the kernel's socket buffer, not here (the reading side, in the shell);
- watch events, which others cause: a connection's backlog over ``backlog_max``
  disconnects it;
- everyone together: when all backlogs add up to more than ``backlog_total``,
  the connection holding the most is disconnected (a thousand never-reading
  watchers must not hold a thousand ``backlog_max``).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable

import trio

from xenstore.daemon.shell_options import BACKLOG_MAX, BACKLOG_TOTAL, STALL_AT, ShellOptions
from xenstore.protocol.codec import Framer

log = logging.getLogger("xenstore.daemon")

#: Output made while answering one read is sent (and the backlog checked) once it
#: reaches this much: one read may hold thousands of requests, each with a reply of up
#: to 4 KiB, and one write may make thousands of watch events.
FLUSH_AT = 256 * 1024

#: A packet's header: four u32, the last its payload's length.
_HEADER_BYTES = 16
_LENGTH = struct.Struct("<I")


def _boundary(buf: bytes | bytearray, start: int, at_least: int) -> int:
    """The first packet boundary in ``buf`` at or after ``at_least``, walking the
    headers of the whole packets that begin at boundary ``start``."""
    offset = start
    while offset < at_least:
        offset += _HEADER_BYTES + _LENGTH.unpack_from(buf, offset + 12)[0]
    return offset


class Peer:
    """The I/O side of one connection."""

    __slots__ = (
        "backlog", "closing", "conn_id", "domid", "drained", "ended", "fd", "flushing", "framer",
        "head", "out", "parked", "scope", "sock", "stalls",
    )

    def __init__(self, conn_id: int, sock: socket.socket, domid: int | None = None) -> None:
        self.conn_id = conn_id
        self.sock = sock
        #: Its descriptor, kept: the hot loop knows it by this, also after a close.
        self.fd = sock.fileno()
        #: The guest domain behind a domain socket; None for the dom0 socket.
        self.domid = domid
        self.drained = trio.Event()
        #: Output produced while handling the current read, sent in one go.
        self.out: list[bytes] = []
        #: What the kernel would not take yet.
        self.backlog = bytearray()
        #: Of a guest's backlog, how many bytes at its start finish a packet the
        #: kernel took part of: a reset (DiscardOutput) keeps them. Kept for guests
        #: only, as only a guest's connections are reset.
        self.head = 0
        self.flushing = False
        self.closing = False
        #: Served by a task of its own while it must wait (not by the hot loop).
        self.parked = False
        #: Disconnected from the server and its socket closed.
        self.ended = False
        #: Cancels its own task's wait, when it has one.
        self.scope = trio.CancelScope()
        #: How often it was not read for its unread replies (for the log).
        self.stalls = 0
        #: Cuts what it sends into requests (a live update hands on its partial one).
        self.framer = Framer()

    @property
    def who(self) -> str:
        """The connection as log lines name it."""
        side = "dom0" if self.domid is None else f"domain {self.domid}"
        return f"connection {self.conn_id} ({side})"


__all__ = ["BACKLOG_MAX", "BACKLOG_TOTAL", "FLUSH_AT", "STALL_AT", "Output", "Peer"]


class Output:
    """The shell's writing and output bounds: an object the shell holds.

    ``peers`` is the shell's own table of connections; :attr:`nursery` is where
    writer tasks run (set by the shell when it serves).
    """

    def __init__(self, options: ShellOptions, peers: dict[int, Peer]) -> None:
        self.options = options
        self.peers = peers
        self.nursery: trio.Nursery | None = None
        #: Told of each connection as it is released (the shell ends it then).
        self.released: Callable[[Peer], None] = lambda peer: None
        #: Connections given output while the current round is answered (appended to
        #: with :meth:`post`, or where that is inlined).
        self.dirty: list[Peer] = []
        #: Bytes in every connection's ``out``, made since the last flush.
        self.pending_bytes = 0
        #: Bytes in every connection's backlog together.
        self.backlog_bytes = 0

    def post(self, peer: Peer, data: bytes) -> None:
        """``data`` for ``peer``, written at the next :meth:`flush_dirty`."""
        if not peer.out:
            self.dirty.append(peer)
        self.pending_bytes += len(data)
        peer.out.append(data)

    def flush_dirty(self) -> None:
        """Write what each connection got during this batch, in place when possible."""
        dirty, self.dirty = self.dirty, []
        self.pending_bytes = 0
        for peer in dirty:
            out = peer.out
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            if not peer.closing:
                self.send(peer, data)

    def send(self, peer: Peer, data: bytes) -> None:
        """Write ``data`` to ``peer`` now, after its backlog; keep what the kernel will not
        take (the caller has no earlier output of it waiting in ``out``)."""
        if peer.backlog:
            self._queue(peer, data)
            return
        try:
            sent = peer.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close_peer(peer.conn_id, "send failed")
            return
        if sent < len(data):
            if peer.domid is not None:
                peer.head = _boundary(data, 0, sent) - sent
            self._queue(peer, memoryview(data)[sent:])

    def _queue(self, peer: Peer, data: bytes | memoryview) -> None:
        peer.backlog += data
        self.backlog_bytes += len(data)
        if len(peer.backlog) > self.options.backlog_max:
            self.close_peer(
                peer.conn_id,
                f"{len(peer.backlog)} bytes of unread output (limit {self.options.backlog_max})",
            )
            return
        if self.backlog_bytes > self.options.backlog_total:
            self._shed()
            if peer.closing:
                return
        if not peer.flushing and self.nursery is not None:
            peer.flushing = True
            self.nursery.start_soon(self._flush, peer)

    async def _flush(self, peer: Peer) -> None:
        try:
            while peer.backlog and not peer.closing:
                await trio.lowlevel.wait_writable(peer.sock)
                try:
                    sent = peer.sock.send(peer.backlog)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    self.close_peer(peer.conn_id, "send failed")
                    return
                if peer.domid is not None:
                    head = peer.head
                    peer.head = (head - sent if sent <= head
                                 else _boundary(peer.backlog, head, sent) - sent)
                del peer.backlog[:sent]
                self.backlog_bytes -= sent
            if not peer.backlog:
                peer.drained.set()
                peer.drained = trio.Event()
        except trio.ClosedResourceError:
            pass  # the reader task closed the connection meanwhile
        except Exception:  # a bug here costs this connection, not the daemon
            log.exception("internal error writing to %s", peer.who)
            self.close_peer(peer.conn_id, "internal error while writing to it")
        finally:
            peer.flushing = False

    def _shed(self) -> None:
        """Disconnect the connections holding the most unsent output until all of it
        fits ``backlog_total`` again."""
        limit = self.options.backlog_total
        while self.backlog_bytes > limit:
            peer = max(self.peers.values(), key=lambda p: 0 if p.closing else len(p.backlog))
            if peer.closing or not peer.backlog:
                break
            self.close_peer(
                peer.conn_id,
                f"{len(peer.backlog)} bytes of unread output, the most of any connection, "
                f"while all connections hold {self.backlog_bytes} (limit {limit})",
            )

    def discard_output(self, conn_id: int) -> None:
        """Forget what ``conn_id`` was given and not sent yet (its domain was reset).

        Whole packets only: the rest of one the kernel took part of still goes,
        so that the client's stream stays in step. (Only a guest's connection is
        reset; of dom0's, whose ``head`` is not kept, the backlog stays.)
        """
        peer = self.peers.get(conn_id)
        if peer is None or peer.closing:
            return
        if peer.out:
            self.pending_bytes -= sum(map(len, peer.out))
            peer.out.clear()
            self.dirty.remove(peer)
        keep = peer.head if peer.domid is not None else len(peer.backlog)
        dropped = len(peer.backlog) - keep
        if dropped > 0:
            del peer.backlog[keep:]
            self.backlog_bytes -= dropped
        if not peer.backlog:
            peer.drained.set()  # a reader stalled on its backlog may go on
            peer.drained = trio.Event()

    def close_peer(self, conn_id: int, reason: str) -> None:
        peer = self.peers.get(conn_id)
        if peer is None or peer.closing:
            return
        log.warning("closing %s: %s", peer.who, reason)
        self.release(peer)

    def release(self, peer: Peer) -> None:
        """Stop serving ``peer``; nothing more will be sent to it, so its backlog goes now."""
        if not peer.closing:
            peer.closing = True
            peer.scope.cancel()
            peer.drained.set()
            self.released(peer)
        self.backlog_bytes -= len(peer.backlog)
        peer.backlog = bytearray()
        peer.head = 0
