"""Replaying a conformance scenario against our pure core: no sockets, no daemon.

The installed kit (:mod:`xenstore.conformance`) scores daemons over sockets and
needs nothing of ours; this runner is for our tests, which score the core
itself with the same corpus.
"""

from __future__ import annotations

from xenstore.conformance.runners import Runner, render
from xenstore.conformance.scenario import Step, guest_domid, show
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close, Send
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import Framer, Packet


def core_runner(server: Server | None = None) -> Runner:
    """Replay against a pure core (a fresh one unless given)."""
    core = server or Server()
    conns: dict[str, int] = {}
    framers: dict[str, Framer] = {}

    def runner(step: Step, order: list[str]) -> list[str]:
        for name in order[: order.index(step.who) + 1]:
            if name not in conns:
                domid = guest_domid(name)
                conns[name] = (core.connect() if domid is None
                               else core.connect(domid, privileged=False))
                framers[name] = Framer()
        by_id = {conn_id: name for name, conn_id in conns.items()}
        received: dict[str, list[str]] = {}
        conn_id = conns[step.who]
        if conn_id not in core.connections:
            return []
        if step.send is None:
            core.disconnect(conn_id)
            return []
        if isinstance(step.send, Packet):
            packets = [step.send]
        else:
            try:
                packets = framers[step.who].feed(step.send)
            except ProtocolError:
                packets = []
        for packet in packets:
            for effect in core.handle(conn_id, packet):
                if isinstance(effect, Send):
                    received.setdefault(by_id[effect.conn_id], []).append(show(effect.packet))
                elif isinstance(effect, Close):
                    received.setdefault(by_id[effect.conn_id], []).append("CLOSED")
        if framers[step.who].broken:
            core.disconnect(conn_id)
            received.setdefault(step.who, []).append("CLOSED")
        return render(received, order)

    return runner
