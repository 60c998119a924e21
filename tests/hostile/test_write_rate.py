"""A guest that writes as fast as it can: held to its write rate, nobody else slowed.

The default rate is 200 writes a second with bursts of 10, per domain: every
connection of the domain draws on the same allowance, and another domain's or
dom0's requests are answered meanwhile.
"""

from __future__ import annotations

import threading
import time

from tests.hostile.harness import LIVENESS, RawClient, guest_host, guest_socket, probe, wait_for_log
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

PER_CONNECTION = 200
CONNECTIONS = 2


def test_guest_writing_flat_out_is_held_to_its_rate() -> None:
    with guest_host() as host:  # the default rate: 200/s, bursts of 10
        path = guest_socket(host, 5)
        neighbour = Client(guest_socket(host, 6), timeout=10)
        writers = [RawClient(path) for _ in range(CONNECTIONS)]
        bursts = [
            b"".join(encode(Packet(Op.WRITE, i, 0, join(f"w{c}") + b"%d" % i))
                     for i in range(PER_CONNECTION))
            for c in range(CONNECTIONS)
        ]
        senders = [threading.Thread(target=w.sock.sendall, args=(b,))
                   for w, b in zip(writers, bursts, strict=True)]
        start = time.monotonic()
        for sender in senders:
            sender.start()
        wait_for_log(host.daemon, r"domain 5: over its write rate \(200/s\); holding its writes")
        # Meanwhile dom0 and another guest are answered, the latter's writes too.
        slowest = 0.0
        for i in range(5):
            slowest = max(slowest, probe(host.daemon.socket_path))
            t = time.monotonic()
            neighbour.write("mine", str(i))
            slowest = max(slowest, time.monotonic() - t)
        replies = [w.packets(PER_CONNECTION, timeout=30) for w in writers]
        took = time.monotonic() - start
        for sender in senders:
            sender.join(10)
        for got in replies:
            assert [(p.op, p.req_id, p.payload) for p in got] == [
                (Op.WRITE, i, b"OK\0") for i in range(PER_CONNECTION)
            ]
        # 400 writes at 200 a second after a burst of 10: at least ~1.95 s, whatever
        # the machine (a lower bound only; slow machines take longer).
        assert took >= (CONNECTIONS * PER_CONNECTION - 10) / 200 * 0.9
        assert slowest < LIVENESS
        assert neighbour.read("mine") == b"4"
        assert host.dom0.read(f"/local/domain/5/w{CONNECTIONS - 1}") == b"%d" % (PER_CONNECTION - 1)
        assert "domain 6: over its write rate" not in host.daemon.stderr()
        print(f"{CONNECTIONS * PER_CONNECTION} writes took {took:.2f} s; others waited at most "
              f"{slowest * 1000:.0f} ms")
        for w in writers:
            w.close()
        neighbour.close()
