"""Clients that send half a header and then trickle bytes.

A partial request costs the daemon only that connection's few buffered bytes:
everyone else is answered meanwhile, and the trickled request is answered once
it is whole. A trickle that turns out to announce an oversized payload closes
that connection, with a log line naming it.
"""

from __future__ import annotations

import time

import pytest

from tests.hostile.harness import (
    LIVENESS,
    RawClient,
    daemon,
    guest_host,
    guest_socket,
    probe,
    wait_for_log,
)
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import PAYLOAD_MAX, Op

TRICKLERS = 100


def test_trickled_requests_hold_nobody_up() -> None:
    with daemon() as xsd:
        request = encode(Packet(Op.WRITE, 7, 0, join("/trickled") + b"slowly"))
        tricklers = [RawClient(xsd.socket_path) for _ in range(TRICKLERS)]
        for t in tricklers:
            t.sock.sendall(request[:8])  # half a header
        slowest = 0.0
        for i in range(8, len(request)):
            for t in tricklers:
                t.sock.sendall(request[i : i + 1])
            if i % 4 == 0:
                slowest = max(slowest, probe(xsd.socket_path))
            time.sleep(0.01)
        for t in tricklers:  # each whole request answered, once
            assert t.packets(1) == [Packet(Op.WRITE, 7, 0, b"OK\0")]
            assert t.nothing_within(0.0001)
            t.close()
        assert slowest < LIVENESS
        assert "closing" not in xsd.stderr()  # slow is not hostile


@pytest.mark.parametrize("side", ["dom0", "guest"])
def test_trickle_ending_in_an_oversized_header_is_disconnected(side: str) -> None:
    with guest_host() as host:
        path = host.daemon.socket_path if side == "dom0" else guest_socket(host, 5)
        who = r"\(dom0\)" if side == "dom0" else r"\(domain 5\)"
        home = "/" if side == "dom0" else "/local/domain/5"
        request = encode(Packet(Op.READ, 1, 0, join(home)))
        bystanders = [RawClient(path) for _ in range(10)]
        for b in bystanders:
            b.sock.sendall(request[:5])
        liar = RawClient(path)
        header = encode(Packet(Op.WRITE, 9, 0, b""))[:12] + (PAYLOAD_MAX + 1).to_bytes(4, "little")
        for i in range(len(header)):
            liar.sock.sendall(header[i : i + 1])
            time.sleep(0.02)
        assert liar.drain_to_eof() == 0  # closed without a word
        wait_for_log(host.daemon, rf"connection \d+ {who}: payload length {PAYLOAD_MAX + 1} "
                                  rf"exceeds {PAYLOAD_MAX}; closing it")
        assert probe(host.daemon.socket_path) < LIVENESS
        # The bystanders' own half-sent requests still complete and are answered.
        for b in bystanders:
            b.sock.sendall(request[5:])
        for b in bystanders:
            (reply,) = b.packets(1)
            assert (reply.op, reply.req_id) == (Op.READ, 1)
            b.close()
        liar.close()
