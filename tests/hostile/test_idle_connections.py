"""A thousand idle connections: held open, nobody else slowed, each still served."""

from __future__ import annotations

import selectors

from tests.hostile.harness import LIVENESS, RawClient, daemon, open_files, probe, wait_for_log
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

IDLE = 1000


def test_thousand_idle_connections_are_held_and_served() -> None:
    # This process holds the thousand sockets; the daemon inherits the raised soft
    # limit and raises its own to the hard limit.
    with open_files(IDLE + 100), daemon() as xsd:
        limit = int(wait_for_log(xsd, r"open files limit: (\d+)")[1])
        assert limit >= IDLE + 100
        idle = [RawClient(xsd.socket_path) for _ in range(IDLE)]
        try:
            assert probe(xsd.socket_path) < LIVENESS
            # Every one of them is still served: one request each, all at once.
            for i, client in enumerate(idle):
                client.sock.sendall(encode(Packet(Op.WRITE, i, 0, join(f"/idle/{i}") + b"%d" % i)))
            waiting = {client.sock.fileno(): (i, client) for i, client in enumerate(idle)}
            with selectors.DefaultSelector() as selector:
                for client in idle:
                    selector.register(client.sock, selectors.EVENT_READ)
                while waiting:
                    ready = selector.select(timeout=10)
                    assert ready, f"{len(waiting)} of the {IDLE} connections never answered"
                    for key, _ in ready:
                        i, client = waiting.pop(key.fd)
                        selector.unregister(client.sock)
                        assert client.packets(1) == [Packet(Op.WRITE, i, 0, b"OK\0")]
            assert probe(xsd.socket_path, f"/idle/{IDLE - 1}") < LIVENESS
            assert "accept failed" not in xsd.stderr()
        finally:
            for client in idle:
                client.close()
