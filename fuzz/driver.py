"""One fuzz input: a script of hostile steps from four connections, with every check.

Both harnesses run the same scripts; they differ only in where the choices
come from. :class:`Choices` is that source: atheris's ``FuzzedDataProvider``
(``fuzz/core_atheris.py``) or hypothesis's ``data.draw``
(``tests/fuzz/test_core_hypothesis.py``). :func:`run` builds a fresh
:class:`Server` with slots for two dom0 connections and two guests (each
connected at its first use), then repeats a step while the source has choices
left:

- raw bytes into one connection's :class:`Framer` (garbage, or a well-formed
  packet cut at random points, or a header announcing an oversized payload),
  its packets handled as the daemon would; a :class:`ProtocolError` (the only
  exception allowed) or a broken framer closes that connection, as
  ``shell._serve_peer`` does;
- a well-formed-but-hostile packet straight to the core: known and unknown
  ops, the connection's open transactions or made-up ones, paths from a small
  alphabet with the awkward cases (relative, ``//``, trailing slashes, ``@``
  names, names at the length limits), permissions, tokens, depths, domids,
  quota names, CONTROL commands, with or without trailing NULs;
- a disconnect, then a new connection in the same slot (a guest's domain is
  introduced again first if it was released).

Every handled packet must get exactly one reply, with its req_id and tx_id,
and no ``internal error`` may be logged (the core's catch-all for bugs).
Replies and events may only go to live connections. After every disconnect
and at the end, :func:`xenstore.daemon.invariants.problems` must be empty, and
the store's generation never goes back. A violation raises :class:`Finding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from xenstore.daemon import invariants
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close, Effect, Log, Send
from xenstore.daemon.quotas import DEFAULTS as DEFAULT_QUOTAS
from xenstore.errors import ProtocolError
from xenstore.protocol.codec import Framer, Packet, encode, split
from xenstore.protocol.ops import HEADER_SIZE, PAYLOAD_MAX, Op

T = TypeVar("T")

#: Guests: the domids of slots 2 and 3; 3 is a third domain the script may introduce.
GUEST_DOMIDS = (1, 2)
OTHER_DOMIDS = (1, 2, 3, 0, 7, 32752, 65535)
#: The page each domain is introduced with (re-introducing must name the same one).
GFN = 4096
#: Upper bound of the steps in one input (atheris stops earlier when its bytes run out).
MAX_STEPS = 64


class Finding(AssertionError):
    """Something a fuzzer must report: a crash, a bad reply, a broken invariant."""


class Choices(Protocol):
    """Where a script's decisions come from."""

    def integer(self, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""

    def data(self, most: int) -> bytes:
        """Up to ``most`` arbitrary bytes."""

    def more(self) -> bool:
        """Whether to take another step."""


def pick(choices: Choices, options: Sequence[T]) -> T:
    return options[choices.integer(0, len(options) - 1)]


# -- the vocabulary of hostile requests -----------------------------------------

NAMES = (
    "a", "b", "c", "tool", "xenstored", "local", "domain", "1", "2", "3", "@x",
    "-", "_", "x" * 60, "a b", "\xff", "",
)
PREFIXES = (
    "/", "", "/local/domain/1/", "/local/domain/2/", "/local/domain/3/",
    "/local/domain/0/", "//", "/tool/", "@", "./", "/local/domain/99999/",
)
WHOLE_PATHS = (
    "/", "//", "/a/", "a/", "@introduceDomain", "@releaseDomain", "@releaseDomain/3",
    "@releaseDomain/1", "@introduceDomain/x", "@other", "/tool/xenstored", "",
    "/local/domain/1", "/local/domain", "/local",
)
PERMS = (
    "n0", "r0", "w0", "b0", "n1", "r1", "w2", "b2", "r3", "n7", "b-1", "n0x10",
    "r010", "n32752", "r65535", "x1", "n", "", "b 1", "n4294967295", "r+2",
)
TOKENS = ("t", "u", "", "tok", "x" * 100)
QUOTA_NAMES = (*DEFAULT_QUOTAS, "bogus")
NUMBERS = ("0", "1", "2", "3", "5", "64", "4096", "-1", "007", "99999999999999999999", "x")
CONTROL = (
    "help", "check", "log", "logfile", "memreport", "print", "quota", "quota-soft",
    "conflicts", "domain-shutdown", "domain-destroy", "set", "bogus",
)
KNOWN_OPS = tuple(op for op in Op if op not in (Op.WATCH_EVENT, Op.ERROR))
UNKNOWN_OPS = (Op.WATCH_EVENT, Op.ERROR, 20, 27, 64, 0xFFFF, 0xFFFFFFFF)


def a_path(choices: Choices) -> str:
    kind = choices.integer(0, 5)
    if kind == 0:
        return pick(choices, WHOLE_PATHS)
    if kind == 1:  # one long name, near the path-max and payload limits
        return "/" + "L" * pick(choices, (100, 2030, 2048, 2049, 3060, 4090))
    names = [pick(choices, NAMES) for _ in range(choices.integer(1, 4))]
    path = pick(choices, PREFIXES) + "/".join(names)
    if choices.integer(0, 7) == 0:
        path += "/"
    return path


def a_value(choices: Choices) -> bytes:
    if choices.integer(0, 7) == 0:
        return b"v" * pick(choices, (100, 2000, 4000, 4096))
    return choices.data(8)


def a_field(choices: Choices) -> bytes:
    """Any argument at all, for ops given the wrong kind of payload."""
    kind = choices.integer(0, 6)
    if kind == 0:
        return a_path(choices).encode("latin-1")
    if kind == 1:
        return pick(choices, PERMS).encode()
    if kind == 2:
        return pick(choices, NUMBERS).encode()
    if kind == 3:
        return pick(choices, QUOTA_NAMES).encode()
    if kind == 4:
        return pick(choices, (b"T", b"F", b"", b"TF", b"t"))
    if kind == 5:
        return pick(choices, CONTROL).encode()
    return choices.data(6)


def fields_for(choices: Choices, op: int) -> list[bytes]:
    """Arguments shaped for ``op``, the shape itself sometimes wrong."""

    def path() -> bytes:
        return a_path(choices).encode("latin-1")

    def number() -> bytes:
        return pick(choices, NUMBERS).encode()

    def domid() -> bytes:
        return str(pick(choices, OTHER_DOMIDS)).encode()

    if op in (Op.READ, Op.DIRECTORY, Op.GET_PERMS, Op.MKDIR, Op.RM, Op.GET_DOMAIN_PATH):
        return [path()]
    if op == Op.DIRECTORY_PART:
        return [path(), number()]
    if op == Op.SET_PERMS:
        return [path(), *(pick(choices, PERMS).encode() for _ in range(choices.integer(0, 7)))]
    if op in (Op.WATCH, Op.UNWATCH):
        shaped = [path(), pick(choices, TOKENS).encode()]
        return [*shaped, number()] if choices.integer(0, 3) == 0 else shaped
    if op == Op.TRANSACTION_START:
        return [b""]
    if op == Op.TRANSACTION_END:
        return [pick(choices, (b"T", b"F", b"", b"X"))]
    if op == Op.INTRODUCE:
        gfn = str(GFN).encode() if choices.integer(0, 3) else number()
        return [domid(), gfn, pick(choices, (b"7", b"0", b"1", b"x"))]
    if op in (Op.RELEASE, Op.RESUME, Op.IS_DOMAIN_INTRODUCED, Op.GET_FEATURE):
        return [domid()]
    if op == Op.SET_TARGET:
        return [domid(), domid()]
    if op == Op.SET_FEATURE:
        return [domid(), number()]
    if op == Op.GET_QUOTA:
        return [domid(), pick(choices, QUOTA_NAMES).encode()][choices.integer(0, 2):]
    if op == Op.SET_QUOTA:
        shaped = [pick(choices, QUOTA_NAMES).encode(), number()]
        return [domid(), *shaped] if choices.integer(0, 1) else shaped
    if op == Op.CONTROL:
        command = pick(choices, CONTROL).encode()
        return [command, *(a_field(choices) for _ in range(choices.integer(0, 3)))]
    return [a_field(choices) for _ in range(choices.integer(0, 3))]


def a_payload(choices: Choices, op: int) -> bytes:
    shape = choices.integer(0, 9)
    if shape == 0:
        return choices.data(24)
    fields = fields_for(choices, op) if shape > 2 else [a_field(choices) for _ in range(3)]
    if op == Op.WRITE and shape > 2:
        # WRITE: a path, a NUL, the value unterminated.
        return a_path(choices).encode("latin-1") + b"\0" + a_value(choices)
    if shape == 1 and choices.integer(0, 1):
        fields.append(a_field(choices))  # one argument too many
    payload = b"\0".join(fields)
    if shape != 2:  # shape 2: the last NUL is missing
        payload += b"\0"
    return payload[:PAYLOAD_MAX]


# -- the script ----------------------------------------------------------------------


class Driver:
    """A server, four connection slots (two dom0, two guests), a framer per slot."""

    def __init__(self, choices: Choices) -> None:
        self.choices = choices
        self.server = Server()
        self.slots: list[int | None] = [None, None, None, None]
        self.framers = [Framer() for _ in self.slots]
        self.generation = self.server.store.generation
        self.requests = 0
        self.steps = 0

    # -- connections --------------------------------------------------------------

    def conn(self, slot: int) -> int:
        """The connection in ``slot``, made at its first use (a fresh server stays cheap)."""
        conn_id = self.slots[slot]
        if conn_id is None:
            conn_id = self.reconnect(slot)
        return conn_id

    def reconnect(self, slot: int) -> int:
        """A new connection in ``slot``; a guest's domain is (re)introduced by dom0 first."""
        server = self.server
        if slot < 2:
            conn_id = server.connect()
        else:
            domid = GUEST_DOMIDS[slot - 2]
            if domid not in server.domains:
                home = f"/local/domain/{domid}"
                self.request(0, Packet(Op.WRITE, 0, 0, f"{home}\0".encode()))
                self.request(0, Packet(Op.SET_PERMS, 0, 0, f"{home}\0n{domid}\0r0\0".encode()))
                self.request(0, Packet(Op.INTRODUCE, 0, 0, f"{domid}\0{GFN}\0{7}\0".encode()))
                if self.choices.integer(0, 2) == 0:
                    # A small quota for the new domain, so that its limits are reached.
                    name = pick(self.choices, tuple(DEFAULT_QUOTAS))
                    value = pick(self.choices, (0, 1, 2, 3, 8, 40, 300))
                    quota = f"{domid}\0{name}\0{value}\0".encode()
                    self.request(0, Packet(Op.SET_QUOTA, 0, 0, quota))
            if domid not in server.domains:  # dom0 introduced it with another page
                self.request(0, Packet(Op.RELEASE, 0, 0, f"{domid}\0".encode()))
                self.request(0, Packet(Op.INTRODUCE, 0, 0, f"{domid}\0{GFN}\0{7}\0".encode()))
            if domid not in server.domains:
                raise Finding(f"domain {domid} cannot be introduced")
            conn_id = server.connect(domid, privileged=False)
        self.slots[slot] = conn_id
        self.framers[slot] = Framer()
        return conn_id

    def disconnect(self, slot: int, why: str) -> None:
        conn_id = self.slots[slot]
        self.slots[slot] = None
        if conn_id is not None:
            self.carry_out(self.server.disconnect(conn_id), f"disconnect ({why})")
            self.check(f"after closing slot {slot} ({why})")
            if conn_id in self.server.watches.by_conn:
                raise Finding(f"connection {conn_id} closed with its watches left")

    # -- requests ---------------------------------------------------------------------

    def request(self, slot: int, packet: Packet) -> None:
        """Handle one packet as the daemon would, and judge the reply and effects."""
        conn_id = self.conn(slot)
        packet = harmless(packet)
        self.requests += 1
        try:
            effects = self.server.handle(conn_id, packet)
        except Exception as exc:
            raise Finding(f"handle raised on {packet!r}") from exc
        replies = [
            e.packet for e in effects
            if isinstance(e, Send) and e.conn_id == conn_id and e.packet.op != Op.WATCH_EVENT
        ]
        if len(replies) != 1:
            raise Finding(f"{len(replies)} replies to {packet!r}: {effects!r}")
        reply = replies[0]
        if (reply.req_id, reply.tx_id) != (packet.req_id, packet.tx_id) or reply.op not in (
            packet.op, Op.ERROR
        ):
            raise Finding(f"reply {reply!r} does not answer {packet!r}")
        if len(reply.payload) > PAYLOAD_MAX:
            raise Finding(f"a reply of {len(reply.payload)} bytes to {packet!r}")
        self.carry_out(effects, repr(packet))

    def carry_out(self, effects: list[Effect], cause: str) -> None:
        server = self.server
        for effect in effects:
            if isinstance(effect, Log) and effect.message.startswith("internal error"):
                raise Finding(f"{effect.message} (after {cause})")
            if isinstance(effect, Send) and effect.conn_id not in server.connections:
                raise Finding(f"{effect!r} to a closed connection (after {cause})")
            if isinstance(effect, Close):
                # The shell ends that connection's task, which disconnects it.
                for slot, conn_id in enumerate(self.slots):
                    if conn_id == effect.conn_id:
                        self.disconnect(slot, effect.reason)
        generation = server.store.generation
        if generation < self.generation:
            raise Finding(f"generation went back to {generation} (after {cause})")
        self.generation = generation

    def feed(self, slot: int, data: bytes) -> None:
        """Bytes from a connection's socket, as ``shell._serve_peer`` handles them."""
        self.conn(slot)
        framer = self.framers[slot]
        try:
            packets = framer.feed(data)
        except ProtocolError:
            self.disconnect(slot, "protocol error")
            return
        except Exception as exc:
            raise Finding(f"the framer raised on {data!r}") from exc
        if framer.pending >= HEADER_SIZE + PAYLOAD_MAX:
            raise Finding(f"the framer holds {framer.pending} bytes")
        for packet in packets:
            if self.slots[slot] is None:  # closed by an earlier packet: the rest is lost
                return
            self.request(slot, packet)
        if framer.broken:
            self.disconnect(slot, "oversized payload length")

    def check(self, when: str) -> None:
        found = invariants.problems(self.server)
        if found:
            raise Finding(f"{when}: " + "; ".join(found))

    # -- steps -----------------------------------------------------------------------------

    def a_packet(self, slot: int) -> Packet:
        choices = self.choices
        op = pick(choices, KNOWN_OPS) if choices.integer(0, 15) else pick(choices, UNKNOWN_OPS)
        conn_id = self.conn(slot)
        open_tx = list(self.server.connections[conn_id].transactions)
        kind = choices.integer(0, 5)
        if open_tx and kind < 3:
            tx_id = pick(choices, open_tx)
        elif kind == 5:
            tx_id = pick(choices, (1, 2, 3, 0xFFFFFFFF))
        else:
            tx_id = 0
        req_id = pick(choices, (0, 1, 7, 0xFFFFFFFF))
        return Packet(op, req_id, tx_id, a_payload(choices, op))

    def step(self) -> None:
        choices = self.choices
        slot = choices.integer(0, 3)
        kind = choices.integer(0, 15)
        if kind < 11:
            self.request(slot, self.a_packet(slot))
        elif kind < 13:
            data = encode(self.a_packet(slot))
            cut = choices.integer(0, len(data))
            self.feed(slot, data[:cut])
            self.feed(slot, data[cut:] + choices.data(4))
        elif kind == 13:
            self.feed(slot, choices.data(40))
        elif kind == 14:
            # A header announcing more than PAYLOAD_MAX: the stream is broken for good.
            length = pick(choices, (PAYLOAD_MAX + 1, 0xFFFFFFFF))
            head = bytes(12) + length.to_bytes(4, "little")
            before = encode(Packet(Op.READ, 1, 0, b"/\0")) if choices.integer(0, 1) else b""
            self.feed(slot, before + head)
        else:
            self.disconnect(slot, "the peer hung up")
            self.reconnect(slot)


def harmless(packet: Packet) -> Packet:
    """``packet``, minus the one effect on the machine: CONTROL memreport <file> writes a file.

    dom0 is trusted with that; a fuzzer must not litter the disk. The command
    still runs, reporting to the log instead.
    """
    if packet.op == Op.CONTROL:
        fields = split(packet.payload)
        if fields and fields[0] == b"memreport" and len(fields) > 1:
            return packet._replace(payload=b"memreport\0")
    return packet


def run(choices: Choices) -> Driver:
    """One input: the script the choices make, checked throughout; raises :class:`Finding`."""
    driver = Driver(choices)
    for _ in range(MAX_STEPS):
        if not choices.more():
            break
        driver.step()
        driver.steps += 1
    driver.check("at the end")
    return driver
