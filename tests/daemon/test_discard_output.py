"""Output.discard_output: a guest's unsent output goes, its stream stays whole.

A re-INTRODUCE resets a domain's connections (DiscardOutput). What the kernel
took is the guest's already, so a packet it took part of must be finished:
the writer keeps, for a guest, how much of its backlog is such a rest
(``Peer.head``) while the flusher sends the backlog in pieces.
"""

from __future__ import annotations

import itertools
import socket

import trio
import trio.testing

from xenstore.daemon.output import Output, Peer
from xenstore.daemon.shell import ShellOptions
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op

#: Events of uneven sizes, so that the kernel's cuts fall inside them.
PACKETS = [
    Packet(Op.WATCH_EVENT, 0, 0, b"p%d\0" % i + b"x" * (1500 + 37 * i) + b"\0")
    for i in range(120)
]
WIRE = [encode(p) for p in PACKETS]
BOUNDARIES = [0, *itertools.accumulate(len(w) for w in WIRE)]
TOTAL = BOUNDARIES[-1]


def make_writer(nursery: trio.Nursery | None) -> Output:
    # Made, not subclassed: Output may be compiled (xenstore/compiled.py).
    output = Output(ShellOptions(socket_path="unused"), {})
    output.nursery = nursery
    return output


def give(output: Output, peer: Peer, wire: list[bytes]) -> None:
    """What carry_out does with Send effects."""
    for data in wire:
        output.post(peer, data)


def pair() -> tuple[socket.socket, socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)  # the kernel cuts often
    ours.setblocking(False)
    return ours, theirs


def check_head(peer: Peer) -> None:
    """``head`` leads from what was sent to the next packet boundary, exactly."""
    sent = TOTAL - len(peer.backlog)
    assert sent + peer.head == min(b for b in BOUNDARIES if b >= sent)


def drain(theirs: socket.socket) -> bytes:
    theirs.setblocking(False)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = theirs.recv(65536)
        except BlockingIOError:
            return b"".join(chunks)
        chunks.append(chunk)


async def test_head_follows_the_flusher_and_discard_keeps_whole_packets() -> None:
    ours, theirs = pair()
    async with trio.open_nursery() as nursery:
        writer = make_writer(nursery)
        peer = writer.peers[1] = Peer(1, ours, domid=5)
        give(writer, peer, WIRE)
        writer.flush_dirty()
        assert peer.backlog and writer.backlog_bytes == len(peer.backlog)
        check_head(peer)
        received = bytearray()
        heads = set()
        for _ in range(8):  # the guest reads a little; the flusher sends a piece
            await trio.lowlevel.wait_readable(theirs)
            received += theirs.recv(3000)
            await trio.testing.wait_all_tasks_blocked()
            check_head(peer)
            heads.add(peer.head)
        assert heads != {0}  # the kernel did cut inside packets
        writer.discard_output(1)
        assert len(peer.backlog) == peer.head == writer.backlog_bytes
        late = encode(Packet(Op.WATCH_EVENT, 0, 0, b"late\0t\0"))
        give(writer, peer, [late])  # what comes after the reset still goes, after the rest
        writer.flush_dirty()
        while peer.backlog:
            received += drain(theirs)
            await trio.testing.wait_all_tasks_blocked()
        received += drain(theirs)
        nursery.cancel_scope.cancel()
    got = Framer().feed(bytes(received))
    assert got[:-1] == PACKETS[: len(got) - 1] and got[-1].payload == b"late\0t\0"
    assert writer.backlog_bytes == 0
    ours.close()
    theirs.close()


def test_discard_drops_what_was_not_written_yet() -> None:
    ours, theirs = pair()
    writer = make_writer(None)
    guest = writer.peers[1] = Peer(1, ours, domid=5)
    other_sock, other_end = pair()
    other = writer.peers[2] = Peer(2, other_sock, domid=6)
    give(writer, guest, WIRE[:3])
    give(writer, other, WIRE[3:4])
    writer.discard_output(1)
    assert guest.out == [] and writer.dirty == [other]
    assert writer.pending_bytes == len(WIRE[3])
    writer.discard_output(7)  # gone already: nothing to do
    writer.flush_dirty()
    assert drain(theirs) == b"" and drain(other_end) == WIRE[3]
    for sock in (ours, theirs, other_sock, other_end):
        sock.close()


def test_dom0s_backlog_is_kept() -> None:
    """dom0's connections are never reset; they do not keep ``head`` either."""
    ours, theirs = pair()
    writer = make_writer(None)
    peer = writer.peers[1] = Peer(1, ours)
    give(writer, peer, WIRE)
    writer.flush_dirty()
    before = bytes(peer.backlog)
    writer.discard_output(1)
    assert bytes(peer.backlog) == before and writer.backlog_bytes == len(before)
    ours.close()
    theirs.close()
