"""The recorded cxenstored session, replayed against the pure core (no sockets)."""

from __future__ import annotations

from tests import wiretable
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.protocol.codec import Packet


def test_core_answers_the_session_as_cxenstored() -> None:
    server = Server()
    conn = server.connect()

    def exchange(packet: Packet) -> Packet | None:
        replies = [e.packet for e in server.handle(conn, packet) if isinstance(e, Send)]
        assert len(replies) == 1
        return replies[0]

    cases = wiretable.load("wire_session.txt")
    assert len(cases) > 300
    assert wiretable.run(cases, exchange) == []
