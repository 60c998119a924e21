"""Running a scenario over sockets, against any daemon.

Over sockets, what a step caused is fenced by a READ of ``/`` on every
connection: a daemon answers in order, so everything the step made it send to a
connection comes before that READ's reply. Every read has a deadline, so a
broken or silent daemon costs a timeout, never a hang.

The installed kit needs no daemon of ours: replaying against our pure core
(no sockets) is the tests' business (``tests/conformance/core_runner.py``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Protocol

from xenstore.conformance.scenario import Step, guest_domid, show
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op

FENCE_REQ_ID = 0xC0FFEE
TIMEOUT = 5.0

#: One step in, what every connection received (rendered lines) out.
Runner = Callable[[Step, list[str]], list[str]]


class Stream(Protocol):
    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def render(received: dict[str, list[str]], order: list[str]) -> list[str]:
    return [f"{who} {line}" for who in order for line in received.get(who, [])]


class _Conn:
    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.framer = Framer()
        #: What we sent, framed: a message left half-sent must not be fenced.
        self.sent = Framer()
        self.backlog: list[Packet] = []
        self.closed = False

    def until(self, req_id: int | None) -> list[str]:
        """Packets up to the reply ``req_id`` (excluded if it is the fence), or EOF."""
        got: list[str] = []
        while True:
            while self.backlog:
                packet = self.backlog.pop(0)
                if packet.req_id == req_id and packet.op != Op.WATCH_EVENT:
                    if req_id != FENCE_REQ_ID:
                        got.append(show(packet))
                    return got
                got.append(show(packet))
            try:
                data = self.stream.recv(65536)
            except TimeoutError:  # told apart from a hang-up: a stall is another bug
                self.closed = True
                got.append("TIMEOUT")
                return got
            except OSError:
                data = b""
            if not data:
                self.closed = True
                got.append("CLOSED")
                return got
            try:
                self.backlog.extend(self.framer.feed(data))
            except ProtocolError:
                self.closed = True
                got.append("CLOSED")
                return got


def socket_runner(
    connect: Callable[[], Stream], connect_guest: Callable[[int], Stream] | None = None
) -> Runner:
    """Replay over real connections: dom0's from ``connect``, guests' from ``connect_guest``."""
    conns: dict[str, _Conn] = {}

    def opened(name: str) -> _Conn:
        if name not in conns:
            domid = guest_domid(name)
            if domid is None:
                conns[name] = _Conn(connect())
            elif connect_guest is None:
                raise RuntimeError("this target has no way to play a guest")
            else:
                conns[name] = _Conn(connect_guest(domid))
        return conns[name]

    def runner(step: Step, order: list[str]) -> list[str]:
        for name in order[: order.index(step.who) + 1]:
            opened(name)
        conn = conns[step.who]
        received: dict[str, list[str]] = {}
        if conn.closed:
            return []
        if step.send is None:
            conn.stream.close()
            conn.closed = True
        else:
            data = encode(step.send) if isinstance(step.send, Packet) else step.send
            conn.stream.sendall(data)
            with contextlib.suppress(ProtocolError):  # a lying length: broken, below
                conn.sent.feed(data)
            if conn.sent.broken:
                # A lying length: the daemon must hang up; read to the end.
                received[step.who] = conn.until(None)
        fence = encode(Packet(Op.READ, FENCE_REQ_ID, 0, b"/\0"))
        # The step's own connection first: once its fence is answered, the daemon
        # has handled the step, and what it sent others is queued before theirs.
        for name, other in sorted(conns.items(), key=lambda item: item[0] != step.who):
            if other.closed or other.sent.pending or other.sent.broken:
                continue
            try:
                other.stream.sendall(fence)
            except OSError:
                other.closed = True
                received.setdefault(name, []).append("CLOSED")
                continue
            received.setdefault(name, []).extend(other.until(FENCE_REQ_ID))
        return render(received, order)

    return runner


def unix_connector(path: str, timeout: float = TIMEOUT) -> Callable[[], Stream]:
    def connect() -> Stream:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(path)
        return sock

    return connect
