"""Transactions against a serial model: a hypothesis state machine over the pure core.

Several connections interleave plain requests and transactions. The model is
the obvious one: a dict tree changed one request at a time. Checked at every
step:

- a plain request gets the reply the model gives, and changes the model;
- a transaction's request gets the reply of the model as it was when the
  transaction started, plus the transaction's own changes (isolation,
  reading its own writes);
- a commit that succeeds for a transaction that changed something is
  serialised at its commit point: replaying its requests on the model at that
  moment gives exactly the replies the transaction got, and that replay is
  what the tree becomes;
- a read-only transaction never fails; a failed or aborted one leaves no trace;
- the committed tree equals the model (values, perms, child order), and a
  watcher on / receives exactly the model's events (one per changed node for a
  commit, in the order first changed);
- no snapshot versions are kept once no transaction is open.

``XS_STATEFUL_EXAMPLES`` raises the number of runs (fuzz/README.md).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.core.harness import Caller
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op
from xenstore.store import child_names

PATHS = ["/a", "/a/b", "/a/c", "/e", "/e/f"]
PERMS = [["n0"], ["r0"], ["n0", "r3"], ["b0", "n7"]]
CONNS = 3

Reply = tuple[str, bytes]


@dataclass
class Tree:
    """The model: path -> [value, perms, children in order]."""

    nodes: dict[str, list] = field(default_factory=lambda: {  # type: ignore[type-arg]
        "/": [b"", ("n0",), ["tool"]],
        "/tool": [b"", ("n0",), ["xenstored"]],
        "/tool/xenstored": [b"", ("n0",), []],
    })

    @staticmethod
    def parent(path: str) -> str:
        return path.rsplit("/", 1)[0] or "/"

    @staticmethod
    def name(path: str) -> str:
        return path.rsplit("/", 1)[1]

    def create(self, path: str, value: bytes) -> None:
        above = self.parent(path)
        if above not in self.nodes:
            self.create(above, b"")
        self.nodes[above][2].append(self.name(path))
        self.nodes[path] = [value, self.nodes[above][1], []]

    def apply(self, op: str, path: str, arg: object) -> tuple[Reply, str | None]:
        """One request, serially: its reply and the path an event fires for (or None)."""
        nodes = self.nodes
        if op == "read":
            return (("OK", nodes[path][0]) if path in nodes else ("ERROR", b"ENOENT")), None
        if op == "directory":
            if path not in nodes:
                return ("ERROR", b"ENOENT"), None
            return ("OK", join(*nodes[path][2]) if nodes[path][2] else b""), None
        if op == "get_perms":
            if path not in nodes:
                return ("ERROR", b"ENOENT"), None
            return ("OK", join(*nodes[path][1])), None
        if op == "write":
            assert isinstance(arg, bytes)
            if path in nodes:
                nodes[path][0] = arg
            else:
                self.create(path, arg)
            return ("OK", b"OK\0"), path
        if op == "mkdir":
            if path in nodes:
                return ("OK", b"OK\0"), None
            self.create(path, b"")
            return ("OK", b"OK\0"), path
        if op == "set_perms":
            if path not in nodes:
                return ("ERROR", b"ENOENT"), None
            assert isinstance(arg, tuple)
            nodes[path][1] = arg
            return ("OK", b"OK\0"), path
        assert op == "rm"
        if path not in nodes:
            if self.parent(path) in nodes:
                return ("OK", b"OK\0"), None
            return ("ERROR", b"ENOENT"), None
        for gone in [p for p in nodes if p == path or p.startswith(path + "/")]:
            del nodes[gone]
        nodes[self.parent(path)][2].remove(self.name(path))
        return ("OK", b"OK\0"), path


@dataclass
class OpenTx:
    tx_id: int
    view: Tree  # the snapshot plus its own changes
    log: list[tuple[str, str, object, Reply]] = field(default_factory=list)
    #: Whether it changed anything (an RM of a missing node changes nothing).
    wrote: bool = False


OPS = st.sampled_from(["read", "directory", "get_perms", "write", "mkdir", "rm", "set_perms"])


class Transactions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = Server()
        self.callers = [Caller(self.server) for _ in range(CONNS)]
        self.watcher = Caller(self.server)
        self.watcher.ok(Op.WATCH, "/", "all")
        self.model = Tree()
        self.open: dict[int, OpenTx] = {}
        self.values = 0
        # Start from a populated tree, so that reads find something to conflict on.
        for path in PATHS[:-1]:
            self.plain_request(0, "write", path, self.argument("write", 0))

    def request(self, who: int, op: str, path: str, arg: object, tx: int) -> Reply:
        caller = self.callers[who]
        if op == "write":
            assert isinstance(arg, bytes)
            return caller.request(Op.WRITE, path.encode() + b"\0" + arg, tx)
        if op == "set_perms":
            assert isinstance(arg, tuple)
            return caller.request(Op.SET_PERMS, join(path, *arg), tx)
        wire = {"read": Op.READ, "directory": Op.DIRECTORY, "get_perms": Op.GET_PERMS,
                "mkdir": Op.MKDIR, "rm": Op.RM}[op]
        return caller.request(wire, join(path), tx)

    def events(self, who: int) -> list[str]:
        return [
            e.packet.payload.split(b"\0")[0].decode()
            for e in self.callers[who].effects
            if isinstance(e, Send) and e.conn_id == self.watcher.conn_id
        ]

    def argument(self, op: str, perms_choice: int) -> object:
        if op == "write":
            self.values += 1
            return b"v%d" % self.values
        if op == "set_perms":
            return tuple(PERMS[perms_choice])
        return None

    @rule(requests=st.lists(
        st.tuples(st.integers(0, CONNS - 1), OPS, st.sampled_from(PATHS),
                  st.integers(0, len(PERMS) - 1), st.sampled_from([True, True, False])),
        min_size=1, max_size=5))
    def act(self, requests: list[tuple[int, str, str, int, bool]]) -> None:
        """Requests, each in its connection's open transaction (mostly), else plain."""
        for who, op, path, perms_choice, in_tx in requests:
            arg = self.argument(op, perms_choice)
            if in_tx and self.open:
                self.transaction_request(sorted(self.open)[who % len(self.open)], op, path, arg)
            else:
                self.plain_request(who, op, path, arg)

    def plain_request(self, who: int, op: str, path: str, arg: object) -> None:
        got = self.request(who, op, path, arg, 0)
        expected, fired = self.model.apply(op, path, arg)
        assert got == expected, (op, path)
        assert self.events(who) == ([fired] if fired else [])

    @rule(who=st.integers(0, CONNS - 1))
    def start(self, who: int) -> None:
        if who in self.open:
            return
        tx_id = self.callers[who].start()
        self.open[who] = OpenTx(tx_id, copy.deepcopy(self.model))

    def transaction_request(self, who: int, op: str, path: str, arg: object) -> None:
        tx = self.open[who]
        got = self.request(who, op, path, arg, tx.tx_id)
        expected, changed = tx.view.apply(op, path, arg)
        assert got == expected, ("isolation", op, path)
        tx.wrote = tx.wrote or changed is not None
        assert self.events(who) == []  # nothing fires before commit
        tx.log.append((op, path, arg, got))

    @precondition(lambda self: self.open)
    @rule(data=st.data(), commit=st.sampled_from([True, True, True, False]))
    def end(self, data: st.DataObject, commit: bool) -> None:
        who = data.draw(st.sampled_from(sorted(self.open)))
        if commit:
            self.commit(who)
        else:
            self.abort(who)

    def commit(self, who: int) -> None:
        tx = self.open.pop(who)
        status, payload = self.callers[who].request(Op.TRANSACTION_END, b"T\0", tx.tx_id)
        if status == "ERROR":
            assert payload == b"EAGAIN"
            assert tx.wrote, "a read-only transaction failed"
            assert self.events(who) == []
            return
        if not tx.wrote:
            assert self.events(who) == []
            return
        # Serialised at its commit point: the same requests now give the same replies.
        fired: dict[str, None] = {}
        for op, path, arg, reply in tx.log:
            expected, changed = self.model.apply(op, path, arg)
            assert expected == reply, ("not serialisable", op, path, reply, expected)
            if changed:
                fired[changed] = None
        assert self.events(who) == list(fired)

    def abort(self, who: int) -> None:
        tx = self.open.pop(who)
        self.callers[who].end(tx.tx_id, commit=False)
        assert self.events(who) == []

    @rule(who=st.integers(0, CONNS - 1))
    def disconnect(self, who: int) -> None:
        self.server.disconnect(self.callers[who].conn_id)
        self.callers[who] = Caller(self.server)
        self.open.pop(who, None)

    @invariant()
    def tree_equals_model(self) -> None:
        nodes = self.server.store.nodes
        assert set(nodes) == set(self.model.nodes)
        for path, (value, perms, children) in self.model.nodes.items():
            node = nodes[path]
            assert node.value == value, path
            assert tuple(str(p) for p in node.perms) == perms, path
            assert child_names(path, node.children) == children, path
        assert self.server.store.check() == []
        assert self.server.store.open_snapshots == len(self.open)


Transactions.TestCase.settings = settings(
    max_examples=int(os.environ.get("XS_STATEFUL_EXAMPLES", "1000")),
    stateful_step_count=50,
    deadline=None,
)
test_transactions_are_serialisable = Transactions.TestCase
