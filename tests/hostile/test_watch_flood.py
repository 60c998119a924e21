"""A flood of writes to a path watched by a thousand watchers that never read.

Every write owes each watcher an event. All connections' unread output together
is bounded (``--backlog-total``); past it the connection holding the most is cut
off, one after the other, so the daemon's memory stays bounded while the writer,
a watcher that does read, and everyone else keep being served.
"""

from __future__ import annotations

import re
import socket
import threading
import time

from tests.conftest import OurDaemon
from tests.hostile.harness import (
    LIVENESS,
    Peak,
    RawClient,
    daemon,
    open_files,
    probe,
    wait_for_log,
)
from xenstore.protocol.codec import Packet, encode, join
from xenstore.protocol.ops import Op

WATCHERS = 1000
TOKEN = 200
BATCH = 20
#: The flood goes on until this many watchers were cut off (or for FLOOD_SECONDS).
SHED_ENOUGH = 200
FLOOD_SECONDS = 10.0
SHED_LINE = r"closing connection \d+ \(dom0\): \d+ bytes of unread output, the most of any"
#: The last few, each holding more, may reach the per-connection bound first.
CUT_LINE = r"closing connection \d+ \(dom0\): \d+ bytes of unread output"


class GoodWatcher(threading.Thread):
    """A watcher that reads every event as it comes."""

    def __init__(self, socket_path: str) -> None:
        super().__init__(daemon=True)
        self.client = RawClient(socket_path)
        self.client.send(Op.WATCH, "/flood", "good", req_id=1)
        # Its reply, then the event every new watch fires at once.
        assert [p.op for p in self.client.packets(2)] == [Op.WATCH, Op.WATCH_EVENT]
        self.events = 1
        self.stop = threading.Event()

    def run(self) -> None:
        sock = self.client.sock
        sock.settimeout(0.1)
        while not self.stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                return
            packets = self.client.framer.feed(data)
            self.events += sum(1 for p in packets if p.op == Op.WATCH_EVENT)


def hung_up_on(client: RawClient) -> bool:
    """Whether the daemon has closed ``client``'s connection (a send fails)."""
    try:
        client.sock.send(encode(Packet(Op.READ, 1, 0, join("/flood"))), socket.MSG_DONTWAIT)
    except (BrokenPipeError, ConnectionResetError):
        return True
    except BlockingIOError:
        pass
    return False


def flood(xsd: OurDaemon, enough: int) -> float:
    """Flood ``xsd`` through a thousand never-reading watchers until ``enough`` of them
    were cut off (or for FLOOD_SECONDS); the RSS growth."""
    watchers = [RawClient(xsd.socket_path) for _ in range(WATCHERS)]
    good = GoodWatcher(xsd.socket_path)
    good.start()
    writer = RawClient(xsd.socket_path)
    try:
        for i, w in enumerate(watchers):
            w.send(Op.WATCH, "/flood", b"%04d" % i + b"t" * (TOKEN - 4))
        writer.send(Op.WRITE, "/flood", req_id=0)  # after every watch: they all fire
        assert writer.packets(1)[0].op == Op.WRITE
        peak = Peak(xsd.pid)
        writes, slowest, start = 1, 0.0, time.monotonic()
        while time.monotonic() - start < FLOOD_SECONDS:
            writer.sock.sendall(b"".join(
                encode(Packet(Op.WRITE, writes + i, 0, join("/flood") + b"%d" % (writes + i)))
                for i in range(BATCH)))
            replies = writer.packets(BATCH, timeout=30)
            assert [p.req_id for p in replies] == list(range(writes, writes + BATCH))
            writes += BATCH
            peak.sample()
            if writes % (BATCH * 10) == 1:
                slowest = max(slowest, probe(xsd.socket_path, "/flood"))
                if len(re.findall(CUT_LINE, xsd.stderr())) >= enough:
                    break
        # The watcher that reads got every event: the first one, then one a write.
        deadline = time.monotonic() + 10
        while good.events < 1 + writes and time.monotonic() < deadline:
            time.sleep(0.05)
        assert good.events == 1 + writes
        wait_for_log(xsd, SHED_LINE)
        shed = len(re.findall(CUT_LINE, xsd.stderr()))
        # Those cut off are the ones the daemon hung up on: writing to them fails.
        deadline = time.monotonic() + 5
        while (hung_up := sum(map(hung_up_on, watchers))) < shed:
            assert time.monotonic() < deadline, f"{shed} cut off, {hung_up} hung up on"
            time.sleep(0.05)
        assert hung_up == shed
        assert slowest < LIVENESS
        assert probe(xsd.socket_path, "/flood") < LIVENESS
        growth = peak.check(f"{writes} writes to {WATCHERS} never-reading watchers")
        print(f"{writes} writes in {time.monotonic() - start:.1f} s, {shed} watchers cut off, "
              f"slowest probe {slowest * 1000:.0f} ms")
        return growth
    finally:
        good.stop.set()
        good.join(5)
        for w in (*watchers, writer, good.client):
            w.close()


def test_flood_to_a_thousand_never_reading_watchers_is_bounded() -> None:
    with open_files(WATCHERS + 200), daemon("--backlog-total", str(16 << 20)) as xsd:
        flood(xsd, SHED_ENOUGH)


def test_flood_with_the_default_total_bound_stays_within_50_mib() -> None:
    with open_files(WATCHERS + 200), daemon() as xsd:
        flood(xsd, WATCHERS)
