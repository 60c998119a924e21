"""A wire-level session as a table: requests and the replies cxenstored 4.17 gave.

Each line of a table file is ``OP[@TX] PAYLOAD -> REPLY_OP PAYLOAD``, payloads
written as Python byte-string bodies (``\\0`` is a NUL). The same table runs
against the pure core, against our daemon over its socket and against the
reference daemon, so a golden that stops matching the reference is caught too.

Re-record the expectations from a running reference daemon with
``python -m tests.wiretable record tests/data/wire_session.txt SOCKET``.
"""

from __future__ import annotations

import ast
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op

DATA = Path(__file__).parent / "data"


@dataclass
class Case:
    line_no: int
    op: int
    tx_id: int
    payload: bytes
    expected: str

    @property
    def request(self) -> str:
        return f"line {self.line_no}: {describe_op(self.op)}@{self.tx_id} {self.payload!r}"


def describe_op(op: int) -> str:
    return Op(op).name if op in Op._value2member_map_ else str(op)


def _bytes(body: str) -> bytes:
    return ast.literal_eval("b'" + body.replace("'", "\\'") + "'")  # type: ignore[no-any-return]


def parse_request(request: str) -> tuple[int, int, bytes]:
    """``OP[@TX] PAYLOAD`` -> (op, tx_id, payload)."""
    head, _, body = request.partition(" ")
    op_text, _, tx_text = head.partition("@")
    op = int(op_text) if op_text.isdigit() else Op[op_text]
    return op, int(tx_text or 0), _bytes(body)


def show(op: int, payload: bytes) -> str:
    if op == Op.DIRECTORY_PART:
        # Generation counts are the daemon's own numbering; tests of their
        # meaning (unchanged until the node changes) live with the core.
        payload = b"<gen>" + payload[payload.find(b"\0") :]
    return f"{describe_op(op)} {str(payload)[2:-1]}".rstrip()


def load(name: str) -> list[Case]:
    cases = []
    for number, line in enumerate((DATA / name).read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        request, _, expected = line.partition(" -> ")
        cases.append(Case(number, *parse_request(request.rstrip()), expected.strip()))
    return cases


Exchange = Callable[[Packet], Packet | None]


def run(cases: list[Case], exchange: Exchange) -> list[str]:
    """Run every case in order; return one line per reply that differs."""
    diffs = []
    for case in cases:
        reply = exchange(Packet(case.op, 7, case.tx_id, case.payload))
        got = "CLOSED" if reply is None else show(reply.op, reply.payload)
        if got != case.expected:
            diffs.append(f"{case.request}: expected {case.expected!r}, got {got!r}")
    return diffs


def socket_exchange(path: str) -> Exchange:
    """Send each request over one connection and wait for its reply."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(path)
    framer = Framer()
    pending: list[Packet] = []

    def exchange(packet: Packet) -> Packet | None:
        sock.sendall(encode(packet))
        while not pending:
            data = sock.recv(65536)
            if not data:
                return None
            pending.extend(p for p in framer.feed(data) if p.op != Op.WATCH_EVENT)
        return pending.pop(0)

    return exchange


def record(name: str, path: str) -> None:
    """Rewrite the expectations of a table from a live daemon."""
    exchange = socket_exchange(path)
    lines = (DATA / name).read_text().splitlines()
    out = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        request = line.partition(" -> ")[0].rstrip()
        op, tx_id, payload = parse_request(request)
        reply = exchange(Packet(op, 7, tx_id, payload))
        got = "CLOSED" if reply is None else show(reply.op, reply.payload)
        out.append(f"{request} -> {got}")
    (DATA / name).write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "record":
        sys.exit("usage: python -m tests.wiretable record TABLE_FILE SOCKET")
    record(Path(sys.argv[2]).name, sys.argv[3])
