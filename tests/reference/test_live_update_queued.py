"""C → ours and ours → ours: what a client had not read yet arrives once, in order.

A watcher sets a watch and stops reading while another client makes many
changes: its socket's buffer fills and cxenstored queues the rest of the events.
After the live update our daemon sends that queue (CONNECTION_DATA's
``data_out``) before anything new, so the watcher, reading at last, sees every
event exactly once, in write order, then the events of later writes. The same
from our daemon into ours: we dump the backlog and the packets not yet written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.conftest import short_tempdir
from xenstore.client import Client
from xenstore.daemon.spawn import spawn
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op
from xsref import launcher

CONTROL = os.path.join(launcher.XEN_BIN_DIR, "xenstore-control")
REPO = Path(__file__).resolve().parents[2]
WRAPPER = f"""#!/bin/sh
unset LD_PRELOAD
PYTHONPATH={REPO}
export PYTHONPATH
exec {sys.executable} -m xenstore.daemon "$@" -V
"""
WRITES = 1500
NAME = "n" * 40


def _events(sock: socket.socket, framer: Framer, count: int, timeout: float) -> list[Packet]:
    """The next ``count`` packets read from ``sock``."""
    got: list[Packet] = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(got)} of {count} packets arrived"
        sock.settimeout(left)
        data = sock.recv(65536)
        assert data, f"the connection closed after {len(got)} of {count} packets"
        got.extend(framer.feed(data))
    return got


def _wrapper(directory: str) -> str:
    wrapper = Path(directory) / "to-ours.sh"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o700)
    return str(wrapper)


def _live_update(socket_path: str, wrapper: str, alive: Callable[[], bool],
                 said: Callable[[], str]) -> None:
    env = {**os.environ, "XENSTORED_PATH": socket_path}
    done = subprocess.run([CONTROL, "live-update", wrapper], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + said()
    assert alive(), said()
    assert "live update: adopted" in said()


def _pile_up_then_update(socket_path: str, update: Callable[[], None]) -> None:
    """A watcher that does not read while WRITES events pile up, then ``update``."""
    watcher = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    watcher.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    watcher.connect(socket_path)
    framer = Framer()
    with watcher, Client(socket_path) as writer:
        writer.write("/data", b"")
        watcher.sendall(encode(Packet(Op.WATCH, 7, 0, join("/data", "tok"))))
        first = _events(watcher, framer, 2, 5)
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
        got = _events(watcher, framer, WRITES + 1, 30)
        assert [p.op for p in got] == [Op.WATCH_EVENT] * (WRITES + 1)
        assert [p.payload for p in got] == [*expected, join("/data/after", "tok")]
        watcher.settimeout(0.5)
        try:
            extra = watcher.recv(65536)
        except TimeoutError:
            extra = b""
        assert extra == b"", f"more than expected: {framer.feed(extra)}"


def test_unsent_events_arrive_once_and_in_order(ref_daemon: launcher.ReferenceDaemon) -> None:
    wrapper = _wrapper(ref_daemon.directory)
    _pile_up_then_update(ref_daemon.socket_path, lambda: _live_update(
        ref_daemon.socket_path, wrapper, ref_daemon.running, ref_daemon.stderr_text))


@contextlib.contextmanager
def _our_daemon() -> Iterator[tuple[str, Callable[[], None], Callable[[], str]]]:
    """Our daemon, with a run directory: its socket, how to live-update it, its stderr."""
    directory = Path(short_tempdir("xslq"))
    socket_path = str(directory / "socket")
    wrapper = _wrapper(str(directory))
    env = {**os.environ, "XENSTORED_RUNDIR": str(directory)}
    env.pop("LD_PRELOAD", None)
    daemon = spawn(socket_path, ["-N"], stderr_path=str(directory / "stderr"), env=env)
    said = lambda: (directory / "stderr").read_text()  # noqa: E731
    try:
        yield socket_path, lambda: _live_update(
            socket_path, wrapper, lambda: daemon.process.poll() is None, said), said
    finally:
        daemon.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_ours_into_ours_keeps_unsent_events(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with _our_daemon() as (socket_path, update, _):
        _pile_up_then_update(socket_path, update)
