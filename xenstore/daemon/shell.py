"""The trio shell: sockets in, the core's effects out. Only I/O lives here.

One task per connection waits for its socket to become readable, reads what
is there, runs *every* complete packet through the core, and writes the
replies (and whatever else the core asked for) in place with a non-blocking
``send``: a trio wake-up costs far more than a message, so a burst of pipelined
requests is answered with one write. Only bytes the kernel will not take wait
in a per-connection backlog, drained by a flusher task when the socket is
writable again; a backlog over its bound disconnects that client instead of
letting it grow the daemon's memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
from dataclasses import dataclass

import trio

from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close, Effect, Log, Send
from xenstore.daemon.trace import Tracer
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import Framer, encode
from xenstore.sockets import SUN_PATH_MAX

log = logging.getLogger("xenstore.daemon")

RECV_SIZE = 65536
#: Default bound of a connection's unsent output (``--backlog-max``).
BACKLOG_MAX = 16 * 1024 * 1024


class Peer:
    """The I/O side of one connection."""

    __slots__ = ("backlog", "closing", "conn_id", "flushing", "out", "scope", "sock")

    def __init__(self, conn_id: int, sock: socket.socket) -> None:
        self.conn_id = conn_id
        self.sock = sock
        #: Output produced while handling the current read, sent in one go.
        self.out: list[bytes] = []
        #: What the kernel would not take yet.
        self.backlog = bytearray()
        self.flushing = False
        self.closing = False
        self.scope = trio.CancelScope()


@dataclass(slots=True)
class ShellOptions:
    socket_path: str
    socket_mode: int = 0o600
    backlog_max: int = BACKLOG_MAX


def bind_unix(path: str, mode: int) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file there is removed."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ValueError(f"socket path is longer than {SUN_PATH_MAX} bytes: {path}")
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Create it with the final mode: no window in which others may connect.
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class Shell:
    """Serves one :class:`Server` on a Unix socket."""

    def __init__(self, server: Server, options: ShellOptions, tracer: Tracer | None = None):
        self.server = server
        self.options = options
        self.tracer = tracer
        self.peers: dict[int, Peer] = {}
        self._dirty: list[Peer] = []
        self._nursery: trio.Nursery | None = None

    async def serve(
        self,
        listener: socket.socket | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; ``task_status.started()`` once the socket accepts.

        ``listener`` is a socket from :func:`bind_unix`; by default one is bound here.
        """
        if listener is None:
            listener = bind_unix(self.options.socket_path, self.options.socket_mode)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.lowlevel.wait_readable(listener)
                    try:
                        sock, _ = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError as exc:  # EMFILE and friends: keep serving the others
                        log.warning("accept failed: %s", exc)
                        await trio.sleep(0.05)
                        continue
                    sock.setblocking(False)
                    nursery.start_soon(self._serve_peer, sock)
        finally:
            trio.lowlevel.notify_closing(listener)
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.options.socket_path)

    async def _serve_peer(self, sock: socket.socket) -> None:
        server = self.server
        conn_id = server.connect()
        peer = Peer(conn_id, sock)
        self.peers[conn_id] = peer
        if self.tracer:
            self.tracer.created(conn_id)
        framer = Framer()
        try:
            with peer.scope:
                while not peer.closing:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        data = sock.recv(RECV_SIZE)
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    try:
                        packets = framer.feed(data)
                    except ProtocolError as exc:
                        log.info("connection %d: %s; closing it", conn_id, exc)
                        break
                    tracer = self.tracer
                    for packet in packets:
                        if tracer:
                            tracer.message("IN", conn_id, packet)
                        self.carry_out(server.handle(conn_id, packet))
                    self.flush_dirty()
                    if framer.broken:
                        log.info("connection %d: oversized payload length; closing it", conn_id)
                        break
        finally:
            del self.peers[conn_id]
            peer.closing = True
            peer.scope.cancel()
            self.carry_out(server.disconnect(conn_id))
            self.flush_dirty()
            if self.tracer:
                self.tracer.destroyed(conn_id)
            trio.lowlevel.notify_closing(sock)
            sock.close()

    # -- carrying out the core's effects ---------------------------------------

    def carry_out(self, effects: list[Effect]) -> None:
        peers = self.peers
        for effect in effects:
            if type(effect) is Send:
                peer = peers.get(effect.conn_id)
                if peer is None or peer.closing:
                    continue
                if self.tracer:
                    self.tracer.message("OUT", effect.conn_id, effect.packet)
                if not peer.out:
                    self._dirty.append(peer)
                peer.out.append(encode(effect.packet))
            elif type(effect) is Close:
                self.close_peer(effect.conn_id, effect.reason)
            elif type(effect) is Log:
                log.warning("%s", effect.message)

    def flush_dirty(self) -> None:
        """Write what each connection got during this batch, in place when possible."""
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            data = b"".join(peer.out)
            peer.out.clear()
            if peer.closing:
                continue
            if peer.backlog:
                self._queue(peer, data)
                continue
            try:
                sent = peer.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                self.close_peer(peer.conn_id, "send failed")
                continue
            if sent < len(data):
                self._queue(peer, memoryview(data)[sent:])

    def _queue(self, peer: Peer, data: bytes | memoryview) -> None:
        peer.backlog += data
        if len(peer.backlog) > self.options.backlog_max:
            self.close_peer(
                peer.conn_id,
                f"{len(peer.backlog)} bytes of unread output (limit {self.options.backlog_max})",
            )
            return
        if not peer.flushing and self._nursery is not None:
            peer.flushing = True
            self._nursery.start_soon(self._flush, peer)

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
                del peer.backlog[:sent]
        except trio.ClosedResourceError:
            pass  # the reader task closed the connection meanwhile
        finally:
            peer.flushing = False

    def close_peer(self, conn_id: int, reason: str) -> None:
        peer = self.peers.get(conn_id)
        if peer is None or peer.closing:
            return
        log.warning("closing connection %d: %s", conn_id, reason)
        peer.closing = True
        peer.scope.cancel()
