"""Open transactions across a forced live update of ours into ours (our own records
GENERATIONS, NODE_VERSION, TX_STATE, TX_READ, TX_EDIT): every reply after the update
is the reply the same requests get from a daemon that was never updated."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz.stream_check import check, seeds
from xenstore.daemon import invariants
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Send
from xenstore.migration import (
    GenerationsData,
    NodePerm,
    NodeVersionData,
    Record,
    StreamError,
    TxEditData,
    TxNextData,
    TxReadData,
    TxStateData,
    read,
    write,
)
from xenstore.migration.adopt import live_server_from
from xenstore.migration.records import CARRIED, record_type
from xenstore.migration.restore import server_from
from xenstore.migration.snapshot import dump
from xenstore.protocol.codec import Packet
from xenstore.protocol.ops import Op

FD_BASE = 1000


@dataclass
class Run:
    """Scripted clients of one server, which may be live-updated in the middle."""

    server: Server = field(default_factory=Server)
    conns: list[int] = field(default_factory=list)
    #: Per client, the tx_ids TRANSACTION_START gave it, in order.
    txs: list[list[int]] = field(default_factory=list)
    replies: list[tuple[int, int, bytes]] = field(default_factory=list)

    def clients(self, count: int) -> None:
        for _ in range(count):
            self.conns.append(self.server.connect())
            self.txs.append([])

    def ask(self, client: int, op: Op, payload: bytes, tx_id: int = 0) -> bytes:
        conn = self.conns[client]
        answer = b""
        for effect in self.server.handle(conn, Packet(op, len(self.replies), tx_id, payload)):
            if isinstance(effect, Send):
                who = self.conns.index(effect.conn_id)
                self.replies.append((who, effect.packet.op, effect.packet.payload))
                if effect.conn_id == conn and effect.packet.op != Op.WATCH_EVENT:
                    answer = effect.packet.payload
        if op == Op.TRANSACTION_START and answer[:1].isdigit():
            self.txs[client].append(int(answer[:-1]))
        return answer

    def update(self, *, forced: bool = True) -> list[Record]:
        """Dump (as a live update's hand-over does), adopt, go on with the new server."""
        fds = {conn: FD_BASE + conn for conn in self.conns}
        records = dump(self.server.state, fds=fds, transactions=forced)
        self.server, handover = live_server_from(write(records))
        assert not invariants.problems(self.server), invariants.problems(self.server)
        ours = {kept.fd - FD_BASE: kept.conn_id for kept in handover.connections}
        self.conns = [ours[conn] for conn in self.conns]
        return records


def tree(server: Server) -> list[tuple[str, bytes, object]]:
    store = server.store
    return [(p, store.value(p), store.perms(p)) for p in store.walk("/")]


def script(run: Run, update: bool) -> Run:
    """Five transactions opened before the update, each ending its own way."""
    run.clients(7)
    writer = 6
    for name in ("a", "b", "c", "d"):
        run.ask(writer, Op.WRITE, b"/%s\0one" % name.encode())
    read_only, wrote, changed_before, changed_after, commits = range(5)
    t = [int(run.ask(i, Op.TRANSACTION_START, b"\0")[:-1]) for i in range(5)]
    assert run.ask(read_only, Op.READ, b"/a\0", t[0]) == b"one"
    run.ask(wrote, Op.WRITE, b"/b/x\0two", t[1])
    run.ask(wrote, Op.DIRECTORY, b"/b\0", t[1])
    run.ask(changed_before, Op.READ, b"/c\0", t[2])
    run.ask(changed_before, Op.WRITE, b"/c/mine\0", t[2])
    run.ask(writer, Op.WRITE, b"/c\0changed")  # before the update: its commit fails
    run.ask(changed_after, Op.READ, b"/d\0", t[3])
    run.ask(changed_after, Op.WRITE, b"/d/new\0", t[3])
    run.ask(commits, Op.READ, b"/b\0", t[4])
    run.ask(commits, Op.WRITE, b"/e\0mine", t[4])
    run.ask(commits, Op.RM, b"/a\0", t[4])
    run.ask(wrote, Op.TRANSACTION_START, b"\0")  # a second one on the same connection
    if update:
        run.update()
    run.ask(writer, Op.WRITE, b"/d\0changed")  # after the update: its commit fails
    run.ask(writer, Op.WRITE, b"/a\0three")
    run.ask(read_only, Op.READ, b"/a\0", t[0])  # its snapshot: still "one"
    run.ask(read_only, Op.DIRECTORY, b"/\0", t[0])
    run.ask(wrote, Op.READ, b"/b/x\0", t[1])  # its own write
    run.ask(writer, Op.READ, b"/b/x\0")  # nobody else sees it: ENOENT
    for who, tx_id in ((wrote, t[1]), (read_only, t[0]), (changed_before, t[2])):
        run.ask(who, Op.TRANSACTION_END, b"T\0", tx_id)
    run.ask(changed_before, Op.WRITE, b"/c/late\0", t[2])  # ended: ENOENT
    run.ask(changed_after, Op.TRANSACTION_END, b"T\0", t[3])
    run.ask(commits, Op.READ, b"/e\0", t[4])
    run.ask(commits, Op.TRANSACTION_END, b"T\0", t[4])  # read /b's value: B's commit
    run.ask(wrote, Op.TRANSACTION_START, b"\0")  # changed /b's children only: OK
    run.ask(wrote, Op.TRANSACTION_END, b"F\0", run.txs[wrote][1])
    return run


def test_each_transaction_ends_as_without_the_update() -> None:
    straight, updated = script(Run(), False), script(Run(), True)
    assert updated.replies == straight.replies
    assert tree(updated.server) == tree(straight.server)
    ends = [payload for _, op, payload in updated.replies if op in
            (Op.TRANSACTION_END, Op.ERROR)]
    # read-only OK, wrote OK, changed before EAGAIN, ENOENT after its end, changed
    # after EAGAIN, the one that commits OK, the abort OK.
    assert ends == [b"ENOENT\0", b"OK\0", b"OK\0", b"EAGAIN\0", b"ENOENT\0", b"EAGAIN\0",
                    b"OK\0", b"OK\0"]
    assert updated.server.store.value("/e") == b"mine"
    assert not updated.server.store.exists("/a")


def test_without_the_update_the_transactions_are_lost() -> None:
    """The test above fails without the carried records: a restore drops them."""
    run = Run()
    run.clients(2)
    run.ask(0, Op.WRITE, b"/a\0one")
    tx_id = int(run.ask(1, Op.TRANSACTION_START, b"\0")[:-1])
    run.ask(1, Op.WRITE, b"/a\0two", tx_id)
    plain = run.update(forced=False)
    assert not any(isinstance(r, CARRIED) for r in plain)
    assert run.ask(1, Op.TRANSACTION_END, b"T\0", tx_id) == b"ENOENT\0"  # as cxenstored


def test_a_restore_drops_the_carried_records() -> None:
    run = Run()
    run.clients(1)
    tx_id = int(run.ask(0, Op.TRANSACTION_START, b"\0")[:-1])
    run.ask(0, Op.WRITE, b"/a\0two", tx_id)
    records = dump(run.server.state, fds={run.conns[0]: 5}, transactions=True)
    carried = [r for r in records if isinstance(r, CARRIED)]
    assert {type(r) for r in carried} == {GenerationsData, TxNextData, TxStateData, TxReadData,
                                          TxEditData}
    server, loaded = server_from(write(records))
    assert loaded.skipped == len(carried)
    assert not server.store.exists("/a")
    assert not server.store.versions.snapshots


def test_saved_versions_and_generations_are_carried() -> None:
    run = Run()
    run.clients(2)
    run.ask(0, Op.WRITE, b"/a\0one")
    tx_id = int(run.ask(1, Op.TRANSACTION_START, b"\0")[:-1])
    run.ask(0, Op.WRITE, b"/a\0two")
    run.ask(0, Op.WRITE, b"/new\0")
    before = run.server.store
    records = run.update()
    versions = [r for r in records if isinstance(r, NodeVersionData)]
    assert [(v.path, v.exists, v.value) for v in versions] == [
        (b"/a", True, b"one"), (b"/", True, b""), (b"/new", False, b"")]
    after = run.server.store
    assert after.generation == before.generation
    [table] = [r for r in records if isinstance(r, GenerationsData)]
    compared = {b"/", b"/a", b"/new"}  # with saved versions
    assert {path for path, *_ in table.nodes} == compared
    for path in after.walk("/"):
        expected = before.generations(path) if path.encode() in compared else (0, 0, 0)
        assert after.generations(path) == expected
    assert run.ask(1, Op.READ, b"/a\0", tx_id) == b"one"
    assert run.ask(1, Op.READ, b"/new\0", tx_id) == b"ENOENT\0"
    assert run.ask(1, Op.TRANSACTION_END, b"T\0", tx_id) == b"OK\0"
    assert not after.versions.saved  # pruned once the last snapshot closed


# -- hostile records: a StreamError naming the record, never a crash ------------------

def _stream_with(change: object) -> list[Record]:
    run = Run()
    run.clients(2)
    run.ask(0, Op.WRITE, b"/a\0one")
    tx_id = int(run.ask(1, Op.TRANSACTION_START, b"\0")[:-1])
    run.ask(1, Op.READ, b"/a\0", tx_id)
    run.ask(1, Op.WRITE, b"/a/b\0", tx_id)
    run.ask(0, Op.WRITE, b"/a\0two")
    records = dump(run.server.state, fds={c: 5 + c for c in run.conns}, transactions=True)
    assert callable(change)
    return list(change(records))


def _replace(record_kind: type, /, **fields: object) -> object:
    def change(records: Sequence[Record]) -> list[Record]:
        out: list[Record] = []
        done = False
        for record in records:
            if isinstance(record, record_kind) and not done:
                done = True
                values = {name: getattr(record, name) for name in record.__slots__}
                values.update(fields)
                record = record_kind(**values)
            out.append(record)
        assert done
        return out
    return change


@pytest.mark.parametrize(("change", "named", "message"), [
    (_replace(TxReadData, seen=0), "TX_READ", "its snapshot shows True for the existence"),
    (_replace(TxReadData, seen=7), "TX_READ", "neither 0 nor 1"),
    (_replace(TxReadData, path=b"/a//x"), "TX_READ", "not a canonical"),
    (_replace(TxEditData, kind="rm", path=b"/zz"), "TX_EDIT", "does not see"),
    (_replace(TxEditData, kind="rm", path=b"/"), "TX_EDIT", "a rm of /"),
    (_replace(TxEditData, kind="perms", path=b"/a"), "TX_EDIT", "does not take"),
    (_replace(TxStateData, snapshot=1 << 40), "TX_STATE", "after the store's"),
    (_replace(TxStateData, tx_id=0), "TX_STATE", "transaction id 0"),
    (_replace(GenerationsData, nodes=((b"/nope", 1, 1, 1),)), "GENERATIONS", "not a node"),
    (_replace(GenerationsData, nodes=((b"/a", 1, 1, 1),) * 2), "GENERATIONS", "given twice"),
    (_replace(GenerationsData, generation=1), "GENERATIONS", "after the store's"),
    (_replace(NodeVersionData, changed=0), "NODE_VERSION", "replaced at generation 0"),
    (_replace(NodeVersionData, perms=()), "NODE_VERSION", "without perms"),
    (_replace(NodeVersionData, exists=False), "NODE_VERSION", "with contents"),
    (_replace(TxReadData, tx_id=99), "TX_READ", "not given before"),
    (lambda rs: [r for r in rs if not isinstance(r, GenerationsData)], "NODE_VERSION",
     "without GENERATIONS first"),
    (lambda rs: [*rs, *(r for r in rs if isinstance(r, TxStateData))], "TX_STATE",
     "given twice"),
])
def test_a_hostile_record_is_a_stream_error_naming_it(
        change: object, named: str, message: str) -> None:
    records = _stream_with(change)
    with pytest.raises(StreamError, match=message) as info:
        live_server_from(write(records))
    error = info.value
    assert error.index is not None and error.record_type is not None
    assert f"{named} (ours)" in str(error)
    assert record_type(records[error.index]) == error.record_type


# -- the codec --------------------------------------------------------------------------

u32, u64 = st.integers(0, 0xFFFFFFFF), st.integers(0, (1 << 64) - 1)
name = st.binary(max_size=12).map(lambda b: b.replace(b"\0", b"x"))
perms_ = st.lists(st.builds(NodePerm, st.sampled_from("nrwb"), st.integers(0, 0xFFFF),
                            st.booleans()), max_size=3).map(tuple)
gens = st.tuples(u64, u64, u64)
ours = st.one_of(
    st.builds(GenerationsData, u64,
              st.lists(st.tuples(name, u64, u64, u64), max_size=4).map(tuple)),
    st.builds(NodeVersionData, name, u64, st.booleans(), st.binary(max_size=20), perms_,
              gens, st.lists(name, max_size=3).map(tuple)),
    st.builds(TxStateData, u32, u32, u64, st.lists(name, max_size=3).map(tuple)),
    st.builds(TxNextData, u32, u32),
    st.builds(TxReadData, u32, u32, name,
              st.sampled_from(["existence", "value", "perms", "children"]), u64),
    st.builds(TxEditData, u32, u32, st.sampled_from(["write", "mkdir", "perms", "rm"]),
              name, st.binary(max_size=20), perms_, st.none() | u32),
)


@given(st.lists(ours, max_size=6))
def test_our_records_write_then_read_back_byte_for_byte(records: list[Record]) -> None:
    stream = write(records)
    assert read(stream) == records
    assert write(read(stream)) == stream


@given(st.lists(ours, min_size=1, max_size=4), st.data())
def test_a_damaged_record_raises_only_stream_error(records: list[Record],
                                                   data: st.DataObject) -> None:
    raw = bytearray(write(records))
    at = data.draw(st.integers(16, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    try:
        again = read(bytes(raw))
    except StreamError:
        return
    assert write(again) == bytes(raw)


# -- any sequence of requests, updated anywhere ----------------------------------------

PATHS = [b"/a", b"/a/b", b"/c", b"/a/b/d"]
requests = st.tuples(
    st.integers(0, 2),
    st.sampled_from(["start", "commit", "abort", "read", "write", "rm", "mkdir", "dir",
                     "perms", "outside-write", "dir-part"]),
    st.sampled_from(PATHS), st.booleans())


def replay(steps: list[tuple[int, str, bytes, bool]], updates: set[int]) -> Run:
    run = Run()
    run.clients(3)
    for index, (client, what, path, latest) in enumerate(steps):
        # Only with transactions open does the update carry anything (the connections'
        # next tx ids restart at 1 otherwise, as cxenstored's do).
        if index in updates and any(c.transactions for c in run.server.connections.values()):
            run.update()
        opened = run.txs[client]
        tx_id = (opened[-1] if latest else opened[0]) if opened else 0
        if what == "start":
            run.ask(client, Op.TRANSACTION_START, b"\0")
        elif what in ("commit", "abort"):
            run.ask(client, Op.TRANSACTION_END, b"T\0" if what == "commit" else b"F\0", tx_id)
        elif what == "outside-write":
            run.ask(client, Op.WRITE, path + b"\0x%d" % index)
        else:
            op, payload = {
                "read": (Op.READ, path + b"\0"), "write": (Op.WRITE, path + b"\0%d" % index),
                "rm": (Op.RM, path + b"\0"), "mkdir": (Op.MKDIR, path + b"\0"),
                "dir": (Op.DIRECTORY, path + b"\0"),
                "dir-part": (Op.DIRECTORY_PART, path + b"\0" + b"0\0"),
                "perms": (Op.SET_PERMS, path + b"\0n0\0r%d\0" % client),
            }[what]
            run.ask(client, op, payload, tx_id)
    return run


def _listed(replies: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
    """DIRECTORY_PART's generation left out: an update renumbers the nodes no open
    transaction read (0; with or without transactions, as cxenstored does), so only
    whether it moves between two calls is kept, which transactions' reads are."""
    return [(who, op, payload.partition(b"\0")[2] if op == Op.DIRECTORY_PART else payload)
            for who, op, payload in replies]


@settings(max_examples=int(os.environ.get("XS_CARRY_EXAMPLES", "150")), deadline=None)
@given(st.lists(requests, max_size=30), st.data())
def test_an_update_anywhere_changes_no_reply(steps: list[tuple[int, str, bytes, bool]],
                                             data: st.DataObject) -> None:
    updates = data.draw(st.sets(st.integers(0, len(steps)), min_size=1, max_size=3))
    straight = replay(steps, set())
    updated = replay(steps, updates)
    assert _listed(updated.replies) == _listed(straight.replies)
    assert tree(updated.server) == tree(straight.server)
    assert not invariants.problems(updated.server)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_damaged_carried_stream_only_fails_to_load(data: st.DataObject) -> None:
    """The stream fuzzer's oracle on the seed with transactions, bytes flipped: a
    StreamError or a sound adopted server, never another exception."""
    raw = bytearray(CARRIED_SEED)
    start = CARRIED_SEED.index(b"\x02\x00\x00\x80")  # GENERATIONS' header: ours follow
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(start, len(raw) - 9))
        raw[at] ^= data.draw(st.integers(1, 255))
    check(bytes(raw))


CARRIED_SEED = seeds()[2]
