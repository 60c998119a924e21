"""Raw trio socket helpers for tests that speak the wire protocol by hand."""

from __future__ import annotations

import trio

from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op


async def call(sock: trio.socket.SocketType, packet: Packet) -> Packet:
    """Send ``packet``; its reply, skipping watch events."""
    await sock.send(encode(packet))
    framer = Framer()
    with trio.fail_after(10):
        while True:
            for got in framer.feed(await sock.recv(65536)):
                if got.op != Op.WATCH_EVENT:
                    return got
