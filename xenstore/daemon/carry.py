"""Carrying out the core's effects: the shell's hands.

The core answers each request with a list of effects (packets to send, connections
to close, guest sockets to open or remove, log lines, files to write, a live update
to make); :class:`Effects` does them, in order, with what the shell owns: its
connections' output, the guests' sockets and pacing, the trace file, the watch
events a test daemon holds back.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence

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
from xenstore.daemon.listeners import DomainSockets
from xenstore.daemon.live_exec import hand_over
from xenstore.daemon.output import Output, Peer
from xenstore.daemon.pacing import GuestPacing
from xenstore.daemon.trace import Tracer
from xenstore.protocol.codec import HEADER, Packet, encode
from xenstore.protocol.ops import Op

__all__ = ["Effects"]

log = logging.getLogger("xenstore.daemon")

_pack = HEADER.pack


class Effects:
    """Does what the core asks. ``listener`` gives dom0's listening socket while it
    accepts (a live update hands it over)."""

    def __init__(self, server: Server, output: Output, peers: dict[int, Peer],
                 domain_sockets: DomainSockets, pacing: GuestPacing, tracer: Tracer | None,
                 listener: Callable[[], socket.socket | None]) -> None:
        self.server = server
        self.output = output
        self.peers = peers
        self.domain_sockets = domain_sockets
        self.pacing = pacing
        self.tracer = tracer
        self._listener = listener
        #: Watch events held back by CONTROL fault event-delay (a test daemon's).
        self.delayed = DelayedEvents(self._deliver_late)

    def _unlisten(self, domid: int) -> None:
        self.domain_sockets.unlisten(domid)
        self.pacing.forget(domid)

    def carry_out(self, effects: Sequence[Effect], *, late: bool = False) -> None:
        """Do what the core asked, in order. ``late``: these are held watch events whose
        time has come (:mod:`~xenstore.daemon.delayed`), never to be held again."""
        peers, output = self.peers, self.output
        holding = self.delayed.active and not late
        update: ExecLiveUpdate | None = None
        for effect in effects:
            if type(effect) is Send:
                conn_id, packet = effect
                if holding and packet.op == Op.WATCH_EVENT:
                    self.delayed.hold(effect)  # replies are never held: they overtake
                    continue
                peer = peers.get(conn_id)
                if peer is None or peer.closing:
                    continue
                if self.tracer:
                    self.tracer.message("OUT", conn_id, packet)
                # encode() and Output.post(), inlined: every reply and event comes here.
                op, req_id, tx_id, payload = packet
                data = _pack(op, req_id, tx_id, len(payload)) + payload
                if not peer.out:
                    output.dirty.append(peer)
                output.pending_bytes += len(data)
                peer.out.append(data)
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
            problem = hand_over(effect, self.server.state, self.peers, self._listener())
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
