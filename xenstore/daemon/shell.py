"""The trio shell: sockets in, the core's effects out. Only I/O lives here.

One task, the hot loop (:mod:`~xenstore.daemon.hotloop`), waits for every
connection's socket and serves each ready one per wake-up: it reads what is
there, runs *every* complete packet through the core, and once the round is
done writes the replies (and whatever else the core asked for) in place with a
non-blocking ``send``. A trio wake-up costs far more than a message, so the
loop blocks in its own epoll while trio has nothing else to do, and a burst of
pipelined requests, or of requests from many clients, is answered with one write
each. Only bytes the kernel will not take wait in a per-connection backlog,
drained by a writer task when the socket is writable again
(`xenstore.daemon.output`, which also bounds it).

A connection that must wait (stalled until it reads its replies, a guest held by
its write rate) leaves the hot loop for a task of its own, which answers the
rest of its read when it may and then gives it back.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence

import trio

from xenstore.daemon import runloop
from xenstore.daemon.carry import Effects
from xenstore.daemon.core import Server
from xenstore.daemon.effects import (
    Effect,
    Send,
)
from xenstore.daemon.hotloop import HotLoop
from xenstore.daemon.listeners import (
    DomainSockets,
    accept_loop,
    bind_unix,
    close_listener,
    identity,
    unlink_if_ours,
)
from xenstore.daemon.monitor import Monitor
from xenstore.daemon.output import FLUSH_AT, Output, Peer
from xenstore.daemon.pacing import GuestPacing
from xenstore.daemon.shell_options import ShellOptions
from xenstore.daemon.supervision import supervised
from xenstore.daemon.trace import Tracer
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import HEADER, Packet
from xenstore.protocol.ops import HEADER_SIZE, OPS, PAYLOAD_MAX

__all__ = ["Shell", "ShellOptions", "bind_unix"]

log = logging.getLogger("xenstore.daemon")

RECV_SIZE = 65536
_pack, _unpack_from = HEADER.pack, HEADER.unpack_from
_new = tuple.__new__

#: A parked connection's wait: until its unread output has drained.
STALL = -1.0


class Shell:
    """Serves one :class:`Server` on a Unix socket."""

    def __init__(self, server: Server, options: ShellOptions, tracer: Tracer | None = None):
        self.server = server
        self.options = options
        self.peers: dict[int, Peer] = {}
        #: dom0's listening socket while it accepts (a live update hands it over).
        self.listener: socket.socket | None = None
        #: Writing to the connections, and the bounds on what waits to be written.
        self.output = Output(options, self.peers)
        self._nursery: trio.Nursery | None = None
        #: Listening sockets of introduced domains, each owned by its accept task.
        self.domain_sockets = DomainSockets(
            options.domain_dir, options.domain_socket_mode, options.domain_socket_owner,
            self.start_peer, lambda domid: domid in server.domains,
        )
        self.pacing = GuestPacing(options.write_rate, options.write_burst)
        #: Carries out what the core asks (holds the trace file and the held events).
        self.effects = Effects(server, self.output, self.peers, self.domain_sockets,
                               self.pacing, tracer, lambda: self.listener)
        self.delayed = self.effects.delayed
        #: Who changed what, for those connected to ``--monitor`` (none: no cost).
        self.monitor = Monitor(server, options.monitor_path, every_request=options.monitor_all)
        server.reporters.append(self.report)
        #: Serves every connection that need not wait, in one task.
        self.hot = HotLoop(self._serve_fd, self._settle, in_place=options.in_place)
        self._by_fd: dict[int, Peer] = {}
        #: Connections closed since the last round, to be ended by the next.
        self._ending: list[Peer] = []
        self._stopping = False
        self.output.released = self._released

    @property
    def backlog_bytes(self) -> int:
        """Bytes waiting in every connection's backlog together."""
        return self.output.backlog_bytes

    async def serve(
        self,
        listener: socket.socket | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen until cancelled; ``task_status.started()`` once the socket accepts.

        ``listener`` is a socket from :func:`~xenstore.daemon.listeners.bind_unix`;
        by default one is bound here. If accepting on it ever fails, the failure is
        logged and dom0's socket is made again on the same path.
        """
        path, mode = self.options.socket_path, self.options.socket_mode
        current: socket.socket | None = listener or bind_unix(path, mode)
        ident: list[tuple[int, int] | None] = [identity(path)]

        async def accept() -> None:
            nonlocal current
            sock = current
            if sock is None:  # started again after a failure
                sock = current = bind_unix(path, mode)
                ident[0] = identity(path)
                log.warning("listening again on %s", path)
            self.listener = sock
            try:
                await accept_loop(sock, lambda peer: self.start_peer(peer, None))
            finally:
                self.listener = None
                close_listener(sock)
                current = None

        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self.domain_sockets.nursery = self.delayed.nursery = nursery
                self.output.nursery = nursery
                if self.monitor.bind():
                    nursery.start_soon(self.monitor.serve)
                nursery.start_soon(supervised, "the connections' hot loop", self.hot.run)
                task_status.started()
                await supervised("the accept loop of dom0's socket", accept)
        finally:
            self._stopping = True
            for peer in list(self.peers.values()):
                self._end(peer)
            self.hot.close()
            if current is not None:
                close_listener(current)
            unlink_if_ours(path, ident[0])
            self.domain_sockets.close_all()

    def report(self) -> list[str]:
        """What the shell holds, for CONTROL memreport (a leak shows up here)."""
        return [
            f"tasks: {runloop.count_tasks()}",
            f"connections in the hot loop: {self.hot.count}",
            f"sockets of domains: {len(self.domain_sockets.open)}",
            f"unsent bytes: {self.backlog_bytes}",
            f"delayed watch events: {len(self.delayed)}",
            *self.monitor.report(),
        ]

    def start_peer(self, sock: socket.socket, domid: int | None) -> None:
        """Serve a connection just accepted: dom0's (domid None) or a guest's."""
        self._attach(sock, domid)

    def adopt_peer(self, sock: socket.socket, conn_id: int, queued: bytes = b"",
                   received: bytes = b"") -> None:
        """Serve a dom0 connection the server already has (``conn_id``: a live update's),
        first writing ``queued``, the bytes it was owed, and reading ``received``, the
        bytes of requests it had sent but that were not handled (the last maybe partial),
        before anything more from the socket."""
        self._attach(sock, None, conn_id, queued, received)

    def _attach(self, sock: socket.socket, domid: int | None, adopted: int | None = None,
                queued: bytes = b"", received: bytes = b"") -> None:
        server = self.server
        if domid is not None and domid not in server.domains:
            sock.close()  # released between its accept and now: it is nobody
            return
        conn_id = (adopted if adopted is not None else server.connect() if domid is None
                   else server.connect(domid, privileged=False))
        peer = Peer(conn_id, sock, domid)
        self.peers[conn_id] = peer
        self._by_fd[peer.fd] = peer
        self.hot.add(peer.fd)
        log.info("%s: %s", peer.who, "connected" if adopted is None else "adopted")
        if queued:
            self.output.post(peer, queued)
        if self.tracer:
            self.tracer.created(conn_id)
        if self.monitor.active:
            self.monitor.connected(conn_id)
        if received:  # a live update's, read before the socket
            try:
                self._take(peer, received)
            except Exception:
                self._failed(peer)
        self._settle()

    # -- serving: the hot loop's part, in place ----------------------------------

    def _serve_fd(self, fd: int) -> None:
        """The hot loop found ``fd`` readable: read it once, answer what came."""
        peer = self._by_fd.get(fd)
        if peer is None:  # never expected: but a descriptor nobody reads would spin the loop
            self.hot.discard(fd)
            return
        if peer.closing or peer.parked:
            return
        try:
            if peer.backlog and self._stalled(peer):
                self._park(peer, (), 0, STALL)
                return
            try:
                data = peer.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if data:
                self._take(peer, data)
            else:
                self.output.release(peer)  # it hung up
        except Exception:
            self._failed(peer)

    def _failed(self, peer: Peer) -> None:
        log.exception("internal error serving %s; it is closed", peer.who)
        self.output.close_peer(peer.conn_id, "internal error")

    def _take(self, peer: Peer, data: bytes) -> None:
        """Answer the requests ``data`` completes."""
        if (len(data) >= HEADER_SIZE and peer.domid is None and not peer.out
                and not peer.framer.held and not self.effects.tracer
                and not self.monitor.active and not self.delayed.active):
            # The common case, shortened (no framer, Effects or round's flush to go
            # through): a dom0 connection sent exactly one request and nothing watches
            # the traffic. Every frame saved here is ~0.1 us of each request.
            op, req_id, tx_id, length = _unpack_from(data)
            if len(data) == HEADER_SIZE + length and length <= PAYLOAD_MAX:
                packet = _new(Packet, (op, req_id, tx_id, data[HEADER_SIZE:]))
                try:
                    effects = self.server.handle(peer.conn_id, packet)
                except Exception:  # the core answers its own bugs with EIO...
                    self._bug(peer, packet)  # ...but not these
                    return
                effect = effects[0]
                if len(effects) == 1 and type(effect) is Send and effect[0] == peer.conn_id:
                    op, req_id, tx_id, payload = effect[1]
                    data = _pack(op, req_id, tx_id, len(payload)) + payload
                    if self.hot.round_size == 1:
                        self.output.send(peer, data)
                    else:  # others are ready too: one write each once all are answered,
                        self.output.post(peer, data)  # as writing now wakes a client
                else:
                    self.effects.carry_out(effects)
                return
        try:
            packets = peer.framer.feed(data)
        except ProtocolError as exc:
            log.warning("%s: %s; closing it", peer.who, exc)
            self.output.release(peer)
            return
        wait = self._requests(peer, packets, 0)
        if wait is not None:
            self._park(peer, packets, *wait)
        elif peer.framer.broken and not peer.closing:
            self._broken(peer)

    def _handle(self, peer: Peer, packet: Packet) -> Sequence[Effect] | None:
        """The core's effects for one request, or None if it failed in a way the core
        does not answer (the connection is then closed)."""
        try:
            if self.monitor.active:
                return self.monitor.handle(peer.conn_id, packet)
            return self.server.handle(peer.conn_id, packet)
        except Exception:  # the core answers its own bugs with EIO...
            self._bug(peer, packet)  # ...but not these
            return None

    def _bug(self, peer: Peer, packet: Packet) -> None:
        log.exception("%s: internal error around %r", peer.who, packet)
        self.output.close_peer(peer.conn_id, "internal error")

    def _broken(self, peer: Peer) -> None:
        log.warning("%s: oversized payload length; closing it", peer.who)
        self.output.flush_dirty()  # the answers to what came before it still go
        self.output.release(peer)

    def _requests(self, peer: Peer, packets: Sequence[Packet], start: int,
                  paced: bool = False) -> tuple[int, float] | None:
        """Answer ``packets[start:]`` in order; (index, wait) if one must wait first
        (:data:`STALL`: until its output drains; else seconds). ``paced``: the first
        has had its wait already."""
        output, effects = self.output, self.effects
        conn_id, domid = peer.conn_id, peer.domid
        for index in range(start, len(packets)):
            packet = packets[index]
            if output.pending_bytes >= FLUSH_AT:
                output.flush_dirty()
                if self._stalled(peer):
                    return index, STALL
            if domid is not None and not (paced and index == start):
                wait = self._pace(peer, domid, packet.op, index + 1)
                if wait:
                    return index, wait
            if peer.closing:
                return None
            if effects.tracer:
                effects.tracer.message("IN", conn_id, packet)
            done = self._handle(peer, packet)
            if done is None:
                return None
            effects.carry_out(done)
        return None

    def _stalled(self, peer: Peer) -> bool:
        """Whether ``peer`` must not be read until it has read what it was sent."""
        backlog = peer.backlog
        return bool(backlog) and (peer.domid is not None
                                  or len(backlog) >= self.options.stall_at)

    def _pace(self, peer: Peer, domid: int, op: int, count: int) -> float:
        """How a guest's ``count``-th request of a read must wait (0: not at all): while
        it has too many unread replies, or its domain's write rate does not allow a write
        (cxenstored's "outstanding" quota and its write rate limit)."""
        outstanding = self.server.quota(domid, "outstanding")
        if outstanding and count % outstanding == 0:
            self.output.flush_dirty()
            if peer.backlog:
                return STALL
        spec = OPS.get(op)
        if spec is not None and spec.writes:
            wait = self.pacing.write_wait(domid, trio.current_time())
            if wait > 0:
                self.output.flush_dirty()  # answer what came before it first
                return wait
        return 0.0

    def _settle(self) -> None:
        """After a round: write what it produced, end the connections it closed."""
        self.output.flush_dirty()
        while self._ending:
            ending, self._ending = self._ending, []
            for peer in ending:
                self._end(peer)

    def _released(self, peer: Peer) -> None:
        if not peer.parked:  # a parked one's own task ends it
            self._ending.append(peer)
            if not self.hot.in_round:
                self.hot.ring()

    # -- serving: what must wait, in a task of its own ----------------------------

    def _park(self, peer: Peer, packets: Sequence[Packet], index: int, wait: float) -> None:
        """Take ``peer`` out of the hot loop until it may be served again; its task
        answers ``packets[index:]`` first."""
        assert self._nursery is not None
        peer.parked = True
        peer.scope = trio.CancelScope()  # one per task: a scope serves one 'with'
        self.hot.discard(peer.fd)
        self._nursery.start_soon(self._parked, peer, packets, index, wait)

    async def _parked(self, peer: Peer, packets: Sequence[Packet], index: int,
                      wait: float) -> None:
        try:
            with peer.scope:
                while not peer.closing:
                    if wait == STALL:
                        await self._stall(peer)
                    else:
                        await trio.sleep(wait)
                    if peer.closing:
                        break
                    more = self._requests(peer, packets, index, paced=wait != STALL)
                    self.output.flush_dirty()
                    if more is not None:
                        index, wait = more
                    elif self._stalled(peer):
                        packets, index, wait = (), 0, STALL
                    else:
                        break
                if peer.framer.broken and not peer.closing:
                    log.warning("%s: oversized payload length; closing it", peer.who)
                    self.output.release(peer)
        except Exception:
            log.exception("internal error serving %s; it is closed", peer.who)
            self.output.close_peer(peer.conn_id, "internal error")
        finally:
            peer.parked = False
            if peer.closing:
                self._end(peer)
            elif not self._stopping:
                self.hot.add(peer.fd)

    async def _stall(self, peer: Peer) -> None:
        """Hear no more from ``peer`` until it has read what it was sent."""
        peer.stalls += 1
        if peer.stalls & (peer.stalls - 1) == 0:  # the 1st, 2nd, 4th, 8th... time
            log.info("%s: %d bytes of replies unread; not reading its requests until it "
                     "drains (%d times so far)", peer.who, len(peer.backlog), peer.stalls)
        while peer.backlog and not peer.closing:
            await peer.drained.wait()

    def _end(self, peer: Peer) -> None:
        """Disconnect ``peer`` from the server and close its socket (once)."""
        if peer.ended:
            return
        peer.ended = True
        if not peer.parked:
            self.hot.discard(peer.fd)
        self._by_fd.pop(peer.fd, None)
        conn_id = peer.conn_id
        self.peers.pop(conn_id, None)
        self.output.release(peer)
        try:
            self.carry_out(self.server.disconnect(conn_id))
        except Exception:  # the daemon must outlive a bug in one clean-up
            log.exception("%s: internal error while disconnecting it", peer.who)
        self.output.flush_dirty()
        if self.monitor.active:
            self.monitor.disconnected(conn_id, peer.domid or 0)
        if self.tracer:
            self.tracer.destroyed(conn_id)
        trio.lowlevel.notify_closing(peer.sock)
        peer.sock.close()
        log.info("%s: disconnected", peer.who)

    @property
    def tracer(self) -> Tracer | None:
        """Where messages are traced (CONTROL logfile), or None."""
        return self.effects.tracer

    def carry_out(self, effects: Sequence[Effect], *, late: bool = False) -> None:
        """Do what the core asked, in order (see :class:`~xenstore.daemon.carry.Effects`)."""
        self.effects.carry_out(effects, late=late)
