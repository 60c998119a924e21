"""Clients that send requests but never read what they are sent.

A watcher that never reads its events is disconnected at its backlog bound
(16 MiB by default); a client that never reads its replies is stalled: the
daemon stops reading it until it drains, so its requests wait in the kernel,
and once it reads it gets every reply, in order.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.hostile.harness import (
    LIVENESS,
    Peak,
    RawClient,
    daemon,
    guest_host,
    guest_socket,
    probe,
    wait_for_log,
)
from xenstore.client import Client
from xenstore.daemon.output import BACKLOG_MAX
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

WATCHES = 200
TOKEN = 3000


def test_watcher_that_never_reads_is_disconnected_memory_bounded() -> None:
    """Xen's C daemon grew by 139 MiB under this one (200 watches, never reading)."""
    with daemon() as xsd:
        writer = Client(xsd.socket_path, timeout=10)
        writer.write("/flood", "0")
        peak = Peak(xsd.pid)
        sloth = RawClient(xsd.socket_path)
        # 200 watches with 3000-byte tokens: each write owes it ~600 KB of events.
        for i in range(WATCHES):
            sloth.send(Op.WATCH, "/flood", f"{i:04d}".encode() + b"t" * (TOKEN - 4), req_id=i)
        writer.write("/flood", "sync")  # its watches are in: they were sent before this
        worst = 0.0
        for n in range(100):
            writer.write("/flood", str(n))
            peak.sample()
            if n % 10 == 0:
                worst = max(worst, probe(xsd.socket_path, "/flood"))
        # Cut off: what it can still read ends, far short of the ~60 MB it was owed.
        received = sloth.drain_to_eof()
        assert received < 100 * WATCHES * TOKEN // 2
        found = wait_for_log(xsd, r"closing connection (\d+) \(dom0\): (\d+) bytes of unread "
                                  rf"output \(limit {BACKLOG_MAX}\)")
        assert int(found[2]) > BACKLOG_MAX
        assert xsd.stderr().count("bytes of unread output") == 1  # the sloth alone
        assert writer.read("/flood") == b"99"
        peak.check("never-reading watcher, 200 watches, 100 writes")
        print(f"slowest probe {worst * 1000:.0f} ms")
        sloth.close()
        writer.close()


@pytest.mark.parametrize("side", ["dom0", "guest"])
def test_client_that_never_reads_replies_is_stalled_then_served_in_order(side: str) -> None:
    with guest_host("--write-rate", "0") as host:
        xsd = host.daemon
        value = b"v" * 4000
        guest = guest_socket(host, 5)
        host.dom0.write("/local/domain/5/big", value)
        path = xsd.socket_path if side == "dom0" else guest
        peak = Peak(xsd.pid)
        hog = RawClient(path)
        # Pipelined READs of 4000 bytes each, not one reply read, until the socket
        # takes no more: the daemon has stopped reading it.
        sent, tail, stuck_since = 0, b"", 0.0
        while True:
            batch = b"".join(encode(Packet(Op.READ, sent + i, 0, b"/local/domain/5/big\0"))
                             for i in range(50))
            taken = hog.send_nowait(batch)
            if taken:
                sent += 50
                stuck_since = 0.0
                if taken < len(batch):
                    tail = batch[taken:]  # sent once it reads: every id a whole request
                    break
                continue
            stuck_since = stuck_since or time.monotonic()
            if time.monotonic() - stuck_since > 1.0:
                break
            time.sleep(0.02)
            assert sent < 1_000_000, "the daemon never stopped reading the hog"
        if side == "dom0":
            wait_for_log(xsd, r"connection \d+ \(dom0\): \d+ bytes of replies unread; "
                              r"not reading its requests until it drains")
        assert probe(xsd.socket_path) < LIVENESS
        peak.sample()
        finisher = threading.Thread(target=hog.sock.sendall, args=(tail,))
        finisher.start()
        replies = hog.packets(sent, timeout=20)
        finisher.join(10)
        assert [p.req_id for p in replies] == list(range(sent))
        assert all(p.op == Op.READ and p.payload == value for p in replies)
        peak.check(f"{side} client not reading {sent} replies")
        print(f"{side}: stalled after {sent} requests, all answered in order after")
        hog.close()


def test_reading_again_after_a_stall_gets_later_requests_answered() -> None:
    """A stalled dom0 client is served again once it drains: nothing dropped, nothing
    answered out of turn."""
    with daemon() as xsd:
        value = b"w" * 4000
        with Client(xsd.socket_path, timeout=10) as dom0:
            dom0.write("/big", value)
        hog = RawClient(xsd.socket_path)
        request = encode(Packet(Op.READ, 1, 0, join("/big")))
        for _ in range(400):  # ~1.6 MB of replies: past the 1 MiB stall mark
            hog.sock.sendall(request)
        wait_for_log(xsd, r"connection \d+ \(dom0\): \d+ bytes of replies unread")
        hog.send(Op.WRITE, "/after", "stall", req_id=2)
        assert len(hog.packets(400, timeout=20)) == 400
        assert hog.packets(1) == [Packet(Op.WRITE, 2, 0, b"OK\0")]
        assert probe(xsd.socket_path, "/after") < LIVENESS
        hog.close()


def test_guest_held_for_unread_replies_is_logged() -> None:
    with guest_host("--write-rate", "0") as host:
        hog = RawClient(guest_socket(host, 5))
        host.dom0.write("/local/domain/5/big", "v" * 4000)
        request = encode(Packet(Op.READ, 1, 0, join("big")))
        for _ in range(400):  # the daemon stops reading it long before the 400th
            if not hog.send_nowait(request):
                break
        wait_for_log(host.daemon, r"connection \d+ \(domain 5\): .*not reading", timeout=3)
        hog.close()
