"""The trio shell: sockets in, the core's effects out. Only I/O lives here.

One task per connection waits for its socket to become readable, reads what
is there, runs *every* complete packet through the core, and writes the
replies (and whatever else the core asked for) in place with a non-blocking
``send``: a trio wake-up costs far more than a message, so a burst of pipelined
requests is answered with one write. Only bytes the kernel will not take wait
in a per-connection backlog, drained by a flusher task when the socket is
writable again (`xenstore.daemon.output`, which also bounds it).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Sequence

import trio

from xenstore.daemon.core import Server
from xenstore.daemon.delayed import DelayedEvents
from xenstore.daemon.effects import (
    Close,
    DelayEvents,
    DiscardOutput,
    Effect,
    ExecLiveUpdate,
    Listen,
    Log,
    Send,
    TraceFile,
    Unlisten,
    WriteReport,
    WriteSnapshot,
)
from xenstore.daemon.listeners import (
    DomainSockets,
    accept_loop,
    bind_unix,
    close_listener,
    identity,
    unlink_if_ours,
)
from xenstore.daemon.live_exec import hand_over
from xenstore.daemon.monitor import Monitor
from xenstore.daemon.output import FLUSH_AT, Output, Peer
from xenstore.daemon.pacing import GuestPacing
from xenstore.daemon.shell_options import ShellOptions
from xenstore.daemon.supervision import supervised
from xenstore.daemon.trace import Tracer
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import HEADER, Packet, encode
from xenstore.protocol.ops import OPS, Op

__all__ = ["Shell", "ShellOptions", "bind_unix"]

log = logging.getLogger("xenstore.daemon")

RECV_SIZE = 65536


def count_tasks() -> int:
    """The trio tasks running in this process (0 outside trio)."""
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return 0
    count, tasks = 0, [root] if root is not None else []
    while tasks:
        task = tasks.pop()
        count += 1
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return count


class Shell:
    """Serves one :class:`Server` on a Unix socket."""

    def __init__(self, server: Server, options: ShellOptions, tracer: Tracer | None = None):
        self.server = server
        self.options = options
        self.tracer = tracer
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
        #: Watch events held back by CONTROL fault event-delay (a test daemon's).
        self.delayed = DelayedEvents(self._deliver_late)
        #: Who changed what, for those connected to ``--monitor`` (none: no cost).
        self.monitor = Monitor(server, options.monitor_path, every_request=options.monitor_all)
        server.reporters.append(self.report)

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
                task_status.started()
                await supervised("the accept loop of dom0's socket", accept)
        finally:
            if current is not None:
                close_listener(current)
            unlink_if_ours(path, ident[0])
            self.domain_sockets.close_all()

    def report(self) -> list[str]:
        """What the shell holds, for CONTROL memreport (a leak shows up here)."""
        return [
            f"tasks: {count_tasks()}",
            f"sockets of domains: {len(self.domain_sockets.open)}",
            f"unsent bytes: {self.backlog_bytes}",
            f"delayed watch events: {len(self.delayed)}",
            *self.monitor.report(),
        ]

    def start_peer(self, sock: socket.socket, domid: int | None) -> None:
        """Serve a connection just accepted: dom0's (domid None) or a guest's."""
        assert self._nursery is not None
        self._nursery.start_soon(self._connection, sock, domid)

    def adopt_peer(self, sock: socket.socket, conn_id: int, queued: bytes = b"",
                   received: bytes = b"") -> None:
        """Serve a dom0 connection the server already has (``conn_id``: a live update's),
        first writing ``queued``, the bytes it was owed, and reading ``received``, the
        bytes of requests it had sent but that were not handled (the last maybe partial),
        before anything more from the socket."""
        assert self._nursery is not None
        self._nursery.start_soon(self._connection, sock, None, conn_id, queued, received)

    async def _connection(self, sock: socket.socket, domid: int | None,
                          conn_id: int | None = None, queued: bytes = b"",
                          received: bytes = b"") -> None:
        """A connection's task: whatever goes wrong in it ends that connection alone."""
        try:
            await self._serve_peer(sock, domid, conn_id, queued, received)
        except Exception:
            side = "dom0" if domid is None else f"domain {domid}"
            log.exception("internal error serving a connection of %s; it is closed", side)
            with contextlib.suppress(OSError):
                sock.close()

    def _unlisten(self, domid: int) -> None:
        self.domain_sockets.unlisten(domid)
        self.pacing.forget(domid)

    async def _serve_peer(self, sock: socket.socket, domid: int | None = None,
                          adopted: int | None = None, queued: bytes = b"",
                          received: bytes = b"") -> None:
        server = self.server
        if domid is not None and domid not in server.domains:
            sock.close()  # released between its accept and now: it is nobody
            return
        conn_id = (adopted if adopted is not None else server.connect() if domid is None
                   else server.connect(domid, privileged=False))
        peer = Peer(conn_id, sock, domid)
        self.peers[conn_id] = peer
        log.info("%s: %s", peer.who, "connected" if adopted is None else "adopted")
        if queued:
            self.output.post(peer, queued)
            self.output.flush_dirty()
        if self.tracer:
            self.tracer.created(conn_id)
        monitor = self.monitor
        if monitor.active:
            monitor.connected(conn_id)
        framer = peer.framer
        stall_at = self.options.stall_at
        try:
            with peer.scope:
                while not peer.closing:
                    if received:  # a live update's, read before the socket
                        data, received = received, b""
                    elif peer.backlog and (domid is not None or len(peer.backlog) >= stall_at):
                        await self._stall(peer)
                        continue
                    else:
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
                        log.warning("%s: %s; closing it", peer.who, exc)
                        break
                    for count, packet in enumerate(packets, 1):
                        if self.output.pending_bytes >= FLUSH_AT:
                            self.output.flush_dirty()
                            if peer.backlog and (domid is not None
                                                 or len(peer.backlog) >= stall_at):
                                await self._stall(peer)
                        if domid is not None:
                            await self._pace_guest(peer, domid, packet.op, count)
                        if peer.closing:
                            break
                        if self.tracer:
                            self.tracer.message("IN", conn_id, packet)
                        try:
                            effects = (monitor.handle(conn_id, packet) if monitor.active
                                       else server.handle(conn_id, packet))
                        except Exception:  # the core answers its own bugs with EIO...
                            log.exception("%s: internal error around %r", peer.who, packet)
                            self.output.close_peer(conn_id, "internal error")  # ...but not these
                            break
                        self.carry_out(effects)
                    self.output.flush_dirty()
                    if framer.broken:
                        log.warning("%s: oversized payload length; closing it", peer.who)
                        break
        finally:
            del self.peers[conn_id]
            self.output.release(peer)
            try:
                self.carry_out(server.disconnect(conn_id))
            except Exception:  # the daemon must outlive a bug in one clean-up
                log.exception("%s: internal error while disconnecting it", peer.who)
            self.output.flush_dirty()
            if monitor.active:
                monitor.disconnected(conn_id, domid or 0)
            if self.tracer:
                self.tracer.destroyed(conn_id)
            trio.lowlevel.notify_closing(sock)
            sock.close()
            log.info("%s: disconnected", peer.who)

    async def _stall(self, peer: Peer) -> None:
        """Hear no more from ``peer`` until it has read what it was sent."""
        peer.stalls += 1
        if peer.stalls & (peer.stalls - 1) == 0:  # the 1st, 2nd, 4th, 8th... time
            log.info("%s: %d bytes of replies unread; not reading its requests until it "
                     "drains (%d times so far)", peer.who, len(peer.backlog), peer.stalls)
        while peer.backlog and not peer.closing:
            await peer.drained.wait()

    async def _pace_guest(self, peer: Peer, domid: int, op: int, count: int) -> None:
        """Hold a guest's next request while it has too many unread replies, or while
        its domain's write rate does not allow a write (cxenstored's "outstanding"
        quota and its write rate limit)."""
        outstanding = self.server.quota(domid, "outstanding")
        if outstanding and count % outstanding == 0:
            self.output.flush_dirty()
            if peer.backlog:
                await self._stall(peer)
        spec = OPS.get(op)
        if spec is not None and spec.writes:
            await self._take_write_token(peer, domid)

    async def _take_write_token(self, peer: Peer, domid: int) -> None:
        """Hold a guest's write until its domain's rate allows it (cxenstored's wrl)."""
        wait = self.pacing.write_wait(domid, trio.current_time())
        if wait > 0:
            self.output.flush_dirty()  # answer what came before it first
            await trio.sleep(wait)

    # -- carrying out the core's effects ---------------------------------------

    def carry_out(self, effects: Sequence[Effect], *, late: bool = False) -> None:
        """Do what the core asked, in order. ``late``: these are held watch events whose
        time has come (:mod:`~xenstore.daemon.delayed`), never to be held again."""
        peers = self.peers
        holding = self.delayed.active and not late
        update: ExecLiveUpdate | None = None
        for effect in effects:
            if type(effect) is Send:
                if holding and effect.packet.op == Op.WATCH_EVENT:
                    self.delayed.hold(effect)  # replies are never held: they overtake
                    continue
                peer = peers.get(effect.conn_id)
                if peer is None or peer.closing:
                    continue
                if self.tracer:
                    self.tracer.message("OUT", effect.conn_id, effect.packet)
                self.output.post(peer, encode(effect.packet))
            elif type(effect) is Close:
                self.output.close_peer(effect.conn_id, effect.reason)
            elif type(effect) is Log:
                self.pacing.log(effect.level, effect.message, effect.domid, trio.current_time())
            elif type(effect) is Listen:
                self.domain_sockets.listen(effect.domid)
            elif type(effect) is Unlisten:
                self._unlisten(effect.domid)
            elif type(effect) is TraceFile:
                self._retrace(effect.path)
            elif type(effect) is DiscardOutput:
                self.output.discard_output(effect.conn_id)
                self.delayed.discard(effect.conn_id)
            elif type(effect) is WriteReport:
                self._write_report(effect)
            elif type(effect) is WriteSnapshot:
                try:
                    with open(effect.path, "wb") as file:
                        file.write(effect.data)
                except OSError as exc:
                    log.warning("snapshot: cannot write %s: %s", effect.path, exc)
            elif type(effect) is DelayEvents:
                self.delayed.set_delay(effect.seconds)
                holding = self.delayed.active and not late
            elif type(effect) is ExecLiveUpdate:
                update = effect  # once its OK is queued, after these effects
        if update is not None:
            self._live_update(update)

    def _live_update(self, effect: ExecLiveUpdate) -> None:
        """Hand over to the new binary; on failure, answer with the reason instead of OK."""
        try:
            problem = hand_over(effect, self.server.state, self.peers, self.listener)
        except Exception:  # a bug must cost the update, not the daemon
            log.exception("live update failed")
            problem = "Error activating new binary."
        peer = self.peers.get(effect.conn_id)
        if peer is None or not peer.out:
            return
        op, req_id, tx_id, _ = HEADER.unpack_from(peer.out[-1])
        answer = encode(Packet(op, req_id, tx_id, problem.encode() + b"\0"))
        self.output.pending_bytes += len(answer) - len(peer.out[-1])
        peer.out[-1] = answer

    def _deliver_late(self, events: list[Send]) -> None:
        self.carry_out(events, late=True)
        self.output.flush_dirty()

    @staticmethod
    def _write_report(report: WriteReport) -> None:
        try:
            with open(report.path, "w") as file:
                file.write(report.text)
        except OSError as exc:
            log.warning("memreport: cannot write %s: %s", report.path, exc)

    def _retrace(self, path: str | None) -> None:
        if self.tracer is not None:
            self.tracer.close()
            self.tracer = None
        if path is not None:
            try:
                self.tracer = Tracer(path)
            except OSError as exc:
                log.warning("cannot trace to %s: %s", path, exc)
