"""The scenario format: steps sent on named connections, and what each one caused.

A step line is ``A OP[@TX] PAYLOAD``: connection ``A`` (opened on first use,
in order of first appearance) sends a request; ``A RAW BYTES`` sends raw bytes
instead (a lying header, a truncated message); ``A CLOSE`` closes it. The
indented lines after a step are every packet each connection received because
of it, connection by connection (``A OP PAYLOAD``), or ``A CLOSED`` (or ``A
TIMEOUT``: no reply in time, which a corpus never expects). Payloads are Python
byte-string bodies (``\\0`` is a NUL; write ``\\x00`` before a
digit). Connections named ``g5...`` (``g`` + domid + a letter) are guests of
that domain. A step may end with ``  # differs: REASON``: ours answers
otherwise on purpose, and the kit reports it as a documented difference.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

CORPUS = "corpus"
_GUEST = re.compile(r"g(\d+)[a-z]*\Z")


@dataclass
class Step:
    line_no: int
    who: str
    #: A request, raw bytes, or None for CLOSE.
    send: Packet | bytes | None
    expected: list[str] = field(default_factory=list)
    differs: str | None = None
    text: str = ""


def guest_domid(who: str) -> int | None:
    """The domid of a guest connection name (``g5``, ``g5b``), or None for dom0."""
    match = _GUEST.match(who)
    return int(match.group(1)) if match else None


def describe_op(op: int) -> str:
    return Op(op).name if op in Op._value2member_map_ else str(op)


def parse_bytes(body: str) -> bytes:
    return ast.literal_eval("b'" + body.replace("'", "\\'") + "'")  # type: ignore[no-any-return]


def show_bytes(data: bytes) -> str:
    return str(data)[2:-1]


def show(packet: Packet) -> str:
    payload = packet.payload
    if packet.op == Op.DIRECTORY_PART:
        # Generation counts are each daemon's own numbering: only their
        # meaning (unchanged until the node changes) is comparable.
        payload = b"<gen>" + payload[payload.find(b"\0") :]
    return f"{describe_op(packet.op)} {show_bytes(payload)}".rstrip()


def parse_request(request: str) -> tuple[int, int, bytes]:
    """``OP[@TX] PAYLOAD`` -> (op, tx_id, payload)."""
    head, _, body = request.partition(" ")
    op_text, _, tx_text = head.partition("@")
    op = int(op_text) if op_text.isdigit() else Op[op_text]
    return op, int(tx_text or 0), parse_bytes(body)


def parse_step(line_no: int, line: str) -> Step:
    text, _, note = line.partition("  # differs: ")
    who, _, rest = text.rstrip().partition(" ")
    send: Packet | bytes | None
    if rest == "CLOSE":
        send = None
    elif rest.startswith("RAW "):
        send = parse_bytes(rest[4:])
    else:
        op, tx_id, payload = parse_request(rest)
        send = Packet(op, 9, tx_id, payload)
    return Step(line_no, who, send, differs=note.strip() or None, text=text.rstrip())


def parse(text: str) -> list[Step]:
    steps: list[Step] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("  "):
            steps[-1].expected.append(line.strip())
        else:
            steps.append(parse_step(number, line))
    return steps


def categories() -> list[str]:
    """The corpus' categories, by file name."""
    return sorted(
        entry.name[:-4]
        for entry in resources.files(__package__).joinpath(CORPUS).iterdir()
        if entry.name.endswith(".txt")
    )


def corpus_file(category: str) -> Path:
    return Path(str(resources.files(__package__).joinpath(CORPUS, f"{category}.txt")))


def load(category: str) -> list[Step]:
    return parse(corpus_file(category).read_text())


def connections(steps: list[Step]) -> list[str]:
    """Connection names in order of first use."""
    names: list[str] = []
    for step in steps:
        if step.who not in names:
            names.append(step.who)
    return names
