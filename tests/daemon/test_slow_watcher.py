"""A watcher that never reads: cut off at its backlog bound, nobody else slowed."""

from __future__ import annotations

import socket
import time

from tests.conftest import OurDaemon
from xenstore.client import Client
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_never_reading_watcher_is_disconnected_and_memory_stays_bounded() -> None:
    daemon = OurDaemon("--backlog-max", str(1 << 20))
    try:
        writer = Client(daemon.socket_path, timeout=10)
        bystander = Client(daemon.socket_path, timeout=10)
        writer.write("/flood", "0")
        before = rss_kib(daemon.pid)

        sloth = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sloth.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sloth.connect(daemon.socket_path)
        # 200 watches with 3000-byte tokens: each write owes it ~600 KB of events.
        for i in range(200):
            token = f"{i:04d}".encode() + b"t" * 2996
            sloth.sendall(encode(Packet(Op.WATCH, i, 0, join("/flood", token))))

        worst = 0.0
        for n in range(200):
            writer.write("/flood", str(n))
            start = time.monotonic()
            assert bystander.read("/flood") == str(n).encode()
            worst = max(worst, time.monotonic() - start)
        # A generous liveness bound, not a benchmark.
        assert worst < 2.0

        # The sloth was cut off: what it can still read ends in EOF.
        sloth.settimeout(10)
        received = 0
        try:
            while chunk := sloth.recv(1 << 16):
                received += len(chunk)
        except ConnectionResetError:
            pass
        assert received < 200 * 600_000 // 10
        grown_mib = (rss_kib(daemon.pid) - before) / 1024
        assert grown_mib < 50, f"daemon grew by {grown_mib:.1f} MiB"
    finally:
        daemon.stop()
    assert "unread output" in daemon.stderr_text
