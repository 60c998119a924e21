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

from tests.reference.liveupdate import events, live_update, our_daemon, to_ours
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
        assert events(half, framer, 1, 10) == [Packet(Op.WRITE, 9, 0, b"OK\0")]
        assert writer.read("/data/half") == b"the value"
        half.sendall(encode(Packet(Op.READ, 10, 0, join("/data/half"))))
        assert events(half, framer, 1, 10) == [Packet(Op.READ, 10, 0, b"the value")]


def test_a_request_half_received_completes_after_the_update(
        ref_daemon: launcher.ReferenceDaemon) -> None:
    wrapper = to_ours(ref_daemon.directory)
    _half_then_update(ref_daemon.socket_path, lambda: live_update(
        ref_daemon.socket_path, wrapper, ref_daemon.running, ref_daemon.stderr_text),
        ref_daemon.stderr_text)


def test_ours_into_ours_completes_a_request_half_received(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslq") as ours:
        _half_then_update(ours.socket_path, ours.into_ours, ours.said)


def test_ours_into_c_completes_a_request_half_received(
        ref_daemon: launcher.ReferenceDaemon) -> None:  # the fixture skips without Xen
    with our_daemon("xslq") as ours:

        def update() -> None:
            ours.update("-c", "-N -P", str(ours.to_c))
            assert "live update: 3 connection(s)" in ours.said()

        _half_then_update(ours.socket_path, update, None)  # cxenstored reads our data_in
