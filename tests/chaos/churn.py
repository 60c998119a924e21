"""A seeded chaos driver: a toolstack churning domains while guests and watchers use them.

Everything goes over the daemon's real sockets, from one thread: each step picks
an actor and an action with ``random.Random(seed)``, so a seed replays the same
sequence of bytes (the daemon's timing may differ; what is checked does not depend
on it). The actors:

- the toolstack (dom0): INTRODUCE (new domids, domids introduced twice, with
  another page), RELEASE (of domains nobody connected to yet, too), RESUME,
  SET_TARGET, IS_DOMAIN_INTRODUCED, alone or pipelined in one write; its answers
  are checked against a model of which domains are introduced;
- guests, on their domain sockets: writes, reads, listings, watches, transactions,
  pipelined bursts left unread, connections dropped mid-request or mid-header;
  any well-formed reply or error is fine, and a released domain's connection must
  end (EOF), never hang;
- a dom0 watcher of ``@introduceDomain``, ``@releaseDomain`` and
  ``@releaseDomain/<domid>``, which must hear of every release.
"""

from __future__ import annotations

import os
import random
import select
import socket
import time
from dataclasses import dataclass, field

from xenstore.protocol.codec import Framer, Packet, encode, join
from xenstore.protocol.ops import PAYLOAD_MAX, Op

#: Domids the churn draws from: few, so that they collide (introduced twice, reused).
DOMIDS = range(1, 13)
#: How long any one answer may take on a slow shared machine before it is a hang.
ANSWER_DEADLINE = 10.0
ERRORS = {b"EINVAL", b"EACCES", b"EEXIST", b"EISDIR", b"ENOENT", b"ENOMEM", b"ENOSPC",
          b"EIO", b"ENOTEMPTY", b"ENOSYS", b"EROFS", b"EBUSY", b"EAGAIN", b"EISCONN",
          b"E2BIG", b"EPERM"}


class Hang(AssertionError):
    """The daemon did not answer within ANSWER_DEADLINE."""


class Link:
    """One raw connection: requests out, replies and watch events in."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(ANSWER_DEADLINE)
        self.sock.connect(path)
        self.framer = Framer()
        self.replies: dict[int, Packet] = {}
        self.events: list[Packet] = []
        self.next_req_id = 1
        self.eof = False

    def send(self, op: Op, payload: bytes, tx_id: int = 0) -> int:
        req_id = self.next_req_id
        self.next_req_id += 1
        self.sendall(encode(Packet(op, req_id, tx_id, payload)))
        return req_id

    def sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            self.eof = True

    def _take(self, data: bytes) -> None:
        for packet in self.framer.feed(data):
            assert len(packet.payload) <= PAYLOAD_MAX
            if packet.op == Op.WATCH_EVENT:
                self.events.append(packet)
            else:
                self.replies[packet.req_id] = packet

    def poll(self) -> None:
        """Take in whatever has arrived, without waiting."""
        while not self.eof and select.select([self.sock], [], [], 0)[0]:
            self._read()

    def _read(self) -> None:
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        except TimeoutError:
            raise Hang("no answer within the deadline") from None
        if not data:
            self.eof = True
        else:
            self._take(data)

    def wait(self, req_id: int) -> Packet | None:
        """The reply to ``req_id``, or None if the connection ended first."""
        deadline = time.monotonic() + ANSWER_DEADLINE
        while req_id not in self.replies:
            if self.eof:
                return None
            if time.monotonic() > deadline:
                raise Hang(f"no reply to request {req_id}")
            self._read()
        return self.replies.pop(req_id)

    def call(self, op: Op, payload: bytes, tx_id: int = 0) -> Packet | None:
        return self.wait(self.send(op, payload, tx_id))

    def wait_eof(self) -> None:
        deadline = time.monotonic() + ANSWER_DEADLINE
        while not self.eof:
            if time.monotonic() > deadline:
                raise Hang("a released domain's connection was not closed")
            self._read()

    def close(self) -> None:
        self.sock.close()


def check_reply(packet: Packet | None) -> None:
    """Any reply is fine as long as it is well formed; an error must be a known one."""
    if packet is not None and packet.op == Op.ERROR:
        assert packet.payload[:-1] in ERRORS, packet


@dataclass
class Guest:
    domid: int
    link: Link
    tx_id: int = 0


@dataclass
class Churn:
    """The state of one chaos run; :meth:`step` does one random thing."""

    socket_path: str
    domain_dir: str
    rng: random.Random
    toolstack: Link = field(init=False)
    watcher: Link = field(init=False)
    introduced: set[int] = field(default_factory=set)
    guests: list[Guest] = field(default_factory=list)
    #: Links of released domains: each must be closed by the daemon.
    orphans: list[Link] = field(default_factory=list)
    releases: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.toolstack = Link(self.socket_path)
        self.watcher = Link(self.socket_path)
        for special in ("@introduceDomain", "@releaseDomain"):
            self._ok(self.watcher.call(Op.WATCH, join(special, "special")))
        for domid in DOMIDS:
            self._ok(self.watcher.call(Op.WATCH, join(f"@releaseDomain/{domid}", f"r{domid}")))

    # -- the toolstack ---------------------------------------------------------

    def _ok(self, packet: Packet | None, expected: bytes = b"OK\0") -> None:
        assert packet is not None, "dom0's connection was closed"
        assert packet.payload == expected, (packet, expected)

    def _expect(self, op: Op, domid: int, target: int = 0) -> bytes:
        """What the toolstack's request should get, by the model."""
        known = domid in self.introduced
        if op == Op.IS_DOMAIN_INTRODUCED:
            return b"T\0" if known else b"F\0"
        if op == Op.INTRODUCE:
            return b"OK\0"
        if op == Op.SET_TARGET and target not in self.introduced:
            return b"ENOENT\0"
        return b"OK\0" if known else b"ENOENT\0"

    def _apply(self, op: Op, domid: int) -> None:
        """The model's side of a request the daemon answered."""
        if op == Op.INTRODUCE:
            if domid not in self.introduced:
                self.introduced.add(domid)
            else:  # a re-introduction resets its connections: forget their transactions
                for guest in self.guests:
                    if guest.domid == domid:
                        guest.tx_id = 0
        elif op == Op.RELEASE and domid in self.introduced:
            self.introduced.discard(domid)
            self.releases.append(domid)
            for guest in [g for g in self.guests if g.domid == domid]:
                self.guests.remove(guest)
                self.orphans.append(guest.link)

    def _domain_request(self) -> tuple[Op, bytes, bytes, int]:
        """A random domain-management request: (op, payload, expected reply, domid)."""
        domid = self.rng.choice(DOMIDS)
        op = self.rng.choice([Op.INTRODUCE, Op.INTRODUCE, Op.RELEASE, Op.RELEASE, Op.RESUME,
                              Op.SET_TARGET, Op.IS_DOMAIN_INTRODUCED])
        if op == Op.INTRODUCE:
            page = self.rng.choice(["4096", "8192", str(self.rng.randrange(1, 1 << 20))])
            payload = join(str(domid), page, str(self.rng.randrange(1, 64)))
        elif op == Op.SET_TARGET:
            target = self.rng.choice(DOMIDS)
            return op, join(str(domid), str(target)), self._expect(op, domid, target), domid
        else:
            payload = join(str(domid))
        return op, payload, self._expect(op, domid), domid

    def _prepare(self, domid: int) -> None:
        """What a toolstack writes before INTRODUCE: the domain's home, owned by it."""
        home = f"/local/domain/{domid}"
        self._ok(self.toolstack.call(Op.WRITE, join(home)))  # an empty value
        self._ok(self.toolstack.call(Op.SET_PERMS, join(home, f"n{domid}", "r0")))

    def toolstack_step(self) -> None:
        op, payload, expected, domid = self._domain_request()
        if op == Op.INTRODUCE and domid not in self.introduced:
            self._prepare(domid)
        self._ok(self.toolstack.call(op, payload), expected)
        self._apply(op, domid)
        self._count(f"toolstack {op.name}")

    def toolstack_batch(self) -> None:
        """Several domain requests in one write; the replies come in order."""
        batch = []
        for _ in range(self.rng.randrange(2, 8)):
            op, payload, _, domid = self._domain_request()
            batch.append((op, payload, domid))
        # Homes first (outside the batch), for domains that may get introduced in it.
        for op, _, domid in batch:
            if op == Op.INTRODUCE and domid not in self.introduced:
                self._prepare(domid)
        first = self.toolstack.next_req_id
        self.toolstack.sendall(b"".join(
            encode(Packet(op, first + n, 0, payload)) for n, (op, payload, _) in enumerate(batch)))
        self.toolstack.next_req_id += len(batch)
        for n, (op, payload, domid) in enumerate(batch):
            target = int(payload.split(b"\0")[1]) if op == Op.SET_TARGET else 0
            self._ok(self.toolstack.wait(first + n), self._expect(op, domid, target))
            self._apply(op, domid)
        self._count("toolstack batch")

    # -- guests ----------------------------------------------------------------

    def _guest(self) -> Guest | None:
        if not self.introduced:
            return None
        if self.guests and self.rng.random() < 0.8:
            return self.rng.choice(self.guests)
        domid = self.rng.choice(sorted(self.introduced))
        guest = Guest(domid, Link(os.path.join(self.domain_dir, str(domid))))
        self.guests.append(guest)
        self._count("guest connect")
        return guest

    def guest_step(self) -> None:
        guest = self._guest()
        if guest is None:
            return
        link, rng = guest.link, self.rng
        action = rng.choice(["write", "write", "read", "directory", "watch", "unwatch",
                             "transaction", "burst", "drop", "half", "close"])
        key = f"data/k{rng.randrange(8)}"
        if action == "write":
            check_reply(link.call(Op.WRITE, join(key) + b"v" * rng.randrange(64), guest.tx_id))
        elif action == "read":
            check_reply(link.call(Op.READ, join(key), guest.tx_id))
        elif action == "directory":
            check_reply(link.call(Op.DIRECTORY, join("data"), guest.tx_id))
        elif action == "watch":
            check_reply(link.call(Op.WATCH, join(rng.choice(["data", key, "@releaseDomain"]),
                                                 f"t{rng.randrange(4)}")))
        elif action == "unwatch":
            check_reply(link.call(Op.UNWATCH, join("data", f"t{rng.randrange(4)}")))
        elif action == "transaction":
            self._transaction(guest)
        elif action == "burst":  # pipelined and left unread for now
            for _ in range(rng.randrange(5, 40)):
                link.send(Op.WRITE, join(key) + b"burst", guest.tx_id)
        elif action in ("drop", "half", "close"):
            if action == "drop":  # a request sent, the connection gone before its reply
                link.send(Op.WRITE, join(key) + b"dropped")
            elif action == "half":  # half a header, then gone
                link.sendall(encode(Packet(Op.READ, 9, 0, join(key)))[:7])
            link.close()
            self.guests.remove(guest)
            self._count(f"guest {action}")
            return
        link.poll()
        if link.eof and guest in self.guests:
            # Closed by the daemon: only a released domain's connections may be.
            raise AssertionError(f"the daemon closed a connection of live domain {guest.domid}")
        self._count(f"guest {action}")

    def _transaction(self, guest: Guest) -> None:
        link = guest.link
        if guest.tx_id == 0:
            reply = link.call(Op.TRANSACTION_START, b"\0")
            check_reply(reply)
            if reply is not None and reply.op == Op.TRANSACTION_START:
                guest.tx_id = int(reply.payload[:-1])
            return
        commit = self.rng.choice([b"T\0", b"F\0"])
        check_reply(link.call(Op.TRANSACTION_END, commit, guest.tx_id))
        guest.tx_id = 0

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- the run ---------------------------------------------------------------

    def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.25:
            self.toolstack_step()
        elif roll < 0.32:
            self.toolstack_batch()
        else:
            self.guest_step()
        self.watcher.poll()

    def finish(self) -> None:
        """Release what is left, close every connection; check what must have happened."""
        for domid in sorted(self.introduced):
            self._ok(self.toolstack.call(Op.RELEASE, join(str(domid))))
            self._apply(Op.RELEASE, domid)
        for link in self.orphans:
            link.wait_eof()
            link.close()
        heard = set()
        deadline = time.monotonic() + ANSWER_DEADLINE
        while True:
            self.watcher.poll()
            heard = {e.payload.split(b"\0")[0] for e in self.watcher.events}
            missing = {d for d in self.releases if f"@releaseDomain/{d}".encode() not in heard}
            if not missing:
                break
            assert time.monotonic() < deadline, f"no @releaseDomain/<domid> event for {missing}"
            time.sleep(0.01)
        assert b"@releaseDomain" in heard and (not self.releases or b"@introduceDomain" in heard)
        self.toolstack.close()
        self.watcher.close()
