"""C → ours and ours → ours: what a client had not read yet arrives once, in order.

A watcher sets a watch and stops reading while another client makes many
changes: its socket's buffer fills and cxenstored queues the rest of the events.
After the live update our daemon sends that queue (CONNECTION_DATA's
``data_out``) before anything new, so the watcher, reading at last, sees every
event exactly once, in write order, then the events of later writes. The same
from our daemon into ours: we dump the backlog and the packets not yet written.
"""

from __future__ import annotations

import fcntl
import socket
import struct
import termios
from collections.abc import Callable

from tests.reference.liveupdate import events, live_update, our_daemon, to_ours
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op
from xsref import launcher

WRITES = 1500
NAME = "n" * 40


def _pile_up_then_update(socket_path: str, update: Callable[[], None]) -> None:
    """A watcher that does not read while WRITES events pile up, then ``update``."""
    watcher = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    watcher.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    watcher.connect(socket_path)
    framer = Framer()
    with watcher, Client(socket_path) as writer:
        writer.write("/data", b"")
        watcher.sendall(encode(Packet(Op.WATCH, 7, 0, join("/data", "tok"))))
        first = events(watcher, framer, 2, 5)
        assert {p.op for p in first} == {Op.WATCH, Op.WATCH_EVENT}
        paths = [f"/data/{NAME}{i:05d}" for i in range(WRITES)]
        expected = [join(p, "tok") for p in paths]
        for i, path in enumerate(paths):
            writer.write(path, str(i))
        size = sum(16 + len(e) for e in expected)
        received = struct.unpack("i", fcntl.ioctl(watcher, termios.FIONREAD, b"\0" * 4))[0]
        assert received < size, "nothing was left queued in the daemon"

        update()
        writer.write("/data/after", b"x")
        got = events(watcher, framer, WRITES + 1, 30)
        assert [p.op for p in got] == [Op.WATCH_EVENT] * (WRITES + 1)
        assert [p.payload for p in got] == [*expected, join("/data/after", "tok")]
        watcher.settimeout(0.5)
        try:
            extra = watcher.recv(65536)
        except TimeoutError:
            extra = b""
        assert extra == b"", f"more than expected: {framer.feed(extra)}"


def test_unsent_events_arrive_once_and_in_order(ref_daemon: launcher.ReferenceDaemon) -> None:
    wrapper = to_ours(ref_daemon.directory)
    _pile_up_then_update(ref_daemon.socket_path, lambda: live_update(
        ref_daemon.socket_path, wrapper, ref_daemon.running, ref_daemon.stderr_text))


def test_ours_into_ours_keeps_unsentevents(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslq") as ours:
        _pile_up_then_update(ours.socket_path, ours.into_ours)
