"""A request half received when a live update comes completes afterwards.

A client that has sent a request's header and part of its payload when the
update comes finishes it afterwards: the bytes the old daemon had read
(CONNECTION_DATA's ``data_in``) are read by the new one before anything more
from the socket, so the request completes and is answered once. C → ours,
ours → ours, and ours → C (cxenstored reads the partial request we hand it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

from tests.reference.test_live_update_queued import _events, _live_update, _our_daemon, _wrapper
from tests.reference.test_live_update_to_c import _update, _wrappers
from xenstore.client import Client
from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import Op
from xsref import launcher


def _half_then_update(socket_path: str, update: Callable[[], None],
                      said: Callable[[], str] | None) -> None:
    """A request cut after part of its payload, ``update``, then the rest of it;
    ``said``: the new daemon's log, if it is ours."""
    request = encode(Packet(Op.WRITE, 9, 0, join("/data/half") + b"the value"))
    cut = len(request) - 4  # the header and part of the payload
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(socket_path)
    framer = Framer()
    with half, Client(socket_path) as writer:
        half.sendall(request[:cut])
        time.sleep(0.2)
        writer.write("/data/other", b"")  # the daemon has read the half by now
        update()
        if said is not None:
            assert f"{cut} byte(s) of requests received" in said(), said()  # data_in
        assert writer.exists("/data/other") and not writer.exists("/data/half")
        half.sendall(request[cut:])
        assert _events(half, framer, 1, 10) == [Packet(Op.WRITE, 9, 0, b"OK\0")]
        assert writer.read("/data/half") == b"the value"
        half.sendall(encode(Packet(Op.READ, 10, 0, join("/data/half"))))
        assert _events(half, framer, 1, 10) == [Packet(Op.READ, 10, 0, b"the value")]


def test_a_request_half_received_completes_after_the_update(
        ref_daemon: launcher.ReferenceDaemon) -> None:
    wrapper = _wrapper(ref_daemon.directory)
    _half_then_update(ref_daemon.socket_path, lambda: _live_update(
        ref_daemon.socket_path, wrapper, ref_daemon.running, ref_daemon.stderr_text),
        ref_daemon.stderr_text)


def test_ours_into_ours_completes_a_request_half_received(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with _our_daemon() as (socket_path, update, said):
        _half_then_update(socket_path, update, said)


def test_ours_into_c_completes_a_request_half_received(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with _our_daemon() as (socket_path, _, said):
        to_c, _ = _wrappers(Path(socket_path).parent)

        def update() -> None:
            done = _update(socket_path, "-c", "-N -P", str(to_c))
            assert done.returncode == 0, done.stderr + said()
            assert "live update: 3 connection(s)" in said()

        _half_then_update(socket_path, update, None)  # cxenstored reads our data_in
