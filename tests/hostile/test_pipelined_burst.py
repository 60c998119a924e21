"""Pipelined bursts of 10,000 requests in one go.

A dom0 client's burst is answered in order, with its ids, while others are
answered in between; a guest's burst is paced by its unread replies (the
daemon stops reading it) and still answered in full, in order.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.hostile.harness import (
    LIVENESS,
    Peak,
    RawClient,
    guest_host,
    guest_socket,
    probe,
)
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

BURST = 10_000


class Prober(threading.Thread):
    """Probes the daemon with a fresh client every so often until stopped."""

    def __init__(self, socket_path: str, peak: Peak) -> None:
        super().__init__()
        self.socket_path = socket_path
        self.peak = peak
        self.stop = threading.Event()
        self.slowest = 0.0
        self.probes = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.wait(0.05):
                self.slowest = max(self.slowest, probe(self.socket_path))
                self.probes += 1
                self.peak.sample()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def finish(self) -> None:
        self.stop.set()
        self.join(LIVENESS * 2)
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize("side", ["dom0", "guest"])
def test_burst_of_ten_thousand_requests(side: str) -> None:
    with guest_host("--write-rate", "0") as host:
        xsd = host.daemon
        path = guest_socket(host, 5)
        if side == "dom0":
            path = xsd.socket_path
        peak = Peak(xsd.pid)
        # Writes and reads of the guest's own nodes, each READ of what was just written.
        burst = b"".join(
            encode(Packet(Op.WRITE, i, 0, join(f"/local/domain/5/b{i % 100}") + b"%d" % i))
            if i % 2 == 0 else
            encode(Packet(Op.READ, i, 0, join(f"/local/domain/5/b{(i - 1) % 100}")))
            for i in range(BURST)
        )
        prober = Prober(xsd.socket_path, peak)
        prober.start()
        burster = RawClient(path)
        sender = threading.Thread(target=burster.sock.sendall, args=(burst,))
        start = time.monotonic()
        try:
            sender.start()
            replies = burster.packets(BURST, timeout=60)
            sender.join(10)
        finally:
            prober.finish()
        took = time.monotonic() - start
        assert [p.req_id for p in replies] == list(range(BURST))
        for i, reply in enumerate(replies):
            assert reply.payload == (b"OK\0" if i % 2 == 0 else str(i - 1).encode()), i
        assert burster.nothing_within(0.1)
        assert prober.slowest < LIVENESS
        growth = peak.check(f"{side} burst of {BURST}")
        print(f"{side}: {BURST} answered in {took:.2f} s; {prober.probes} probes, slowest "
              f"{prober.slowest * 1000:.0f} ms; RSS +{growth:.1f} MiB")
        burster.close()
