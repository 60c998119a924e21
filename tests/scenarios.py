"""Multi-connection wire scenarios, recorded from cxenstored and replayed anywhere.

A scenario file is a list of steps. A step line ``A OP[@TX] PAYLOAD`` sends a
request on connection ``A`` (connections open on first use, in order of first
appearance); the indented lines after it are every packet each connection
received because of that step, ``A OP PAYLOAD``, connection by connection.
Payloads are Python byte-string bodies (``\\0`` is a NUL; write ``\\x00``
before a digit). The same file runs against the pure core and over sockets
against our daemon and the reference, so the goldens stay honest.

Re-record with ``python -m tests.scenarios record tests/data/FILE SOCKET``.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

from tests.wiretable import describe_op, parse_request
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op

DATA = Path(__file__).parent / "data"
SYNC_REQ_ID = 0xC0FFEE

Step = tuple[int, str, Packet]  # line number, connection, request
Runner = Callable[[str, Packet, list[str]], dict[str, list[Packet]]]


def show(packet: Packet) -> str:
    return f"{describe_op(packet.op)} {str(packet.payload)[2:-1]}".rstrip()


def load(name: str) -> list[tuple[Step, list[str]]]:
    steps: list[tuple[Step, list[str]]] = []
    for number, line in enumerate((DATA / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("  "):
            steps[-1][1].append(line.strip())
            continue
        who, _, request = line.partition(" ")
        op, tx_id, payload = parse_request(request)
        steps.append(((number, who, Packet(op, 9, tx_id, payload)), []))
    return steps


def render(received: dict[str, list[Packet]]) -> list[str]:
    return [f"{who} {show(p)}" for who in sorted(received) for p in received[who]]


def run(steps: list[tuple[Step, list[str]]], runner: Runner) -> list[str]:
    """Replay the steps; return a description of every step whose packets differ."""
    names = sorted({who for (_, who, _), _ in steps}, key=lambda n: first_use(steps, n))
    diffs = []
    for (number, who, packet), expected in steps:
        got = render(runner(who, packet, names))
        if got != expected:
            diffs.append(f"line {number}: {who} {show(packet)}\n  expected {expected}\n"
                         f"  got      {got}")
    return diffs


def first_use(steps: list[tuple[Step, list[str]]], name: str) -> int:
    return next(i for i, ((_, who, _), _) in enumerate(steps) if who == name)


def core_runner() -> Runner:
    """Replay against a fresh pure core."""
    server = Server()
    conns: dict[str, int] = {}

    def runner(who: str, packet: Packet, names: list[str]) -> dict[str, list[Packet]]:
        for name in names:  # open connections in the order the scenario first uses them
            if name not in conns and names.index(name) <= names.index(who):
                conns[name] = server.connect()
        by_id = {conn_id: name for name, conn_id in conns.items()}
        received: dict[str, list[Packet]] = {}
        for effect in server.handle(conns[who], packet):
            if isinstance(effect, Send):
                received.setdefault(by_id[effect.conn_id], []).append(effect.packet)
        return received

    return runner


def socket_runner(path: str) -> Runner:
    """Replay over real connections; a READ on every other connection fences each step."""
    conns: dict[str, tuple[socket.socket, Framer, list[Packet]]] = {}

    def open_conn(name: str) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(path)
        conns[name] = (sock, Framer(), [])

    def until(name: str, req_id: int) -> list[Packet]:
        sock, framer, backlog = conns[name]
        got: list[Packet] = []
        while True:
            while backlog:
                packet = backlog.pop(0)
                got.append(packet)
                if packet.req_id == req_id and packet.op != Op.WATCH_EVENT:
                    return got
            data = sock.recv(65536)
            if not data:
                got.append(Packet(Op.ERROR, 0, 0, b"CLOSED"))
                return got
            backlog.extend(framer.feed(data))

    def runner(who: str, packet: Packet, names: list[str]) -> dict[str, list[Packet]]:
        for name in names:
            if name not in conns and names.index(name) <= names.index(who):
                open_conn(name)
        conns[who][0].sendall(encode(packet))
        received = {who: until(who, packet.req_id)}
        # What else this step caused (WATCH's first event follows its reply)
        # is queued before the answer to a READ sent now.
        for name in conns:
            conns[name][0].sendall(encode(Packet(Op.READ, SYNC_REQ_ID, 0, b"/\0")))
            received.setdefault(name, []).extend(until(name, SYNC_REQ_ID)[:-1])
        return {name: got for name, got in received.items() if got}

    return runner


def record(name: str, path: str) -> None:
    """Rewrite a scenario's expectations from a live daemon."""
    steps = load(name)
    names = sorted({who for (_, who, _), _ in steps}, key=lambda n: first_use(steps, n))
    runner = socket_runner(path)
    source = (DATA / name).read_text().splitlines()
    out: list[str] = []
    for line in source:
        if line.startswith("  "):
            continue
        out.append(line)
        if not line.strip() or line.startswith("#"):
            continue
        who, _, request = line.partition(" ")
        op, tx_id, payload = parse_request(request)
        out.extend("  " + text for text in render(runner(who, Packet(op, 9, tx_id, payload),
                                                           names)))
    (DATA / name).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "record":
        sys.exit("usage: python -m tests.scenarios record tests/data/FILE SOCKET")
    record(Path(sys.argv[2]).name, sys.argv[3])
