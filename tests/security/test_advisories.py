"""One regression test (or a small group) per class of Xen security advisory that
applies to a xenstored serving sockets.

Each docstring names the advisory, the attack and our defence. Where the
defence lives in the pure core (quotas, ownership, RELEASE clean-up) the core is
driven directly; where it lives in the trio shell (what is held for a client that
does not read, framing) a real daemon runs in-process and the attacker is a raw
socket on a guest's domain socket, the boundary a guest sits behind.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import trio
import trio.testing

from tests.conftest import short_tempdir
from tests.core.harness import Caller
from tests.core.test_domains import introduce as introduce_in_core
from tests.core.test_watches import events
from tests.rawsocket import call
from xenstore.aclient import AsyncClient, open_client
from xenstore.daemon.core import Server
from xenstore.daemon.effects import Close
from xenstore.daemon.shell import Shell, ShellOptions
from xenstore.protocol.codec import Framer, Packet, encode, encode_parts, join
from xenstore.protocol.ops import Op

# -- an in-process daemon, guests on its domain sockets ------------------------------


@pytest.fixture
def workdir() -> Iterator[str]:
    directory = short_tempdir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


async def start(nursery: trio.Nursery, directory: str, **options: Any) -> Shell:
    """Our shell serving ``directory``/socket, with guest sockets in ``directory``."""
    shell = Shell(Server(), ShellOptions(socket_path=os.path.join(directory, "socket"),
                                         domain_dir=directory, **options))
    await nursery.start(shell.serve)
    return shell


async def introduce(dom0: AsyncClient, directory: str, domid: int) -> str:
    """As a toolstack does: the home, its perms, INTRODUCE; returns the guest's socket."""
    home = f"/local/domain/{domid}"
    await dom0.write(home, "")
    await dom0.set_perms(home, [f"n{domid}", "r0"])
    await dom0.request(Op.INTRODUCE, join(str(domid), "4096", "1"))
    return os.path.join(directory, str(domid))


async def connect(path: str) -> trio.socket.SocketType:
    """A raw connection with small socket buffers: what it leaves unread, or what it
    sends that is not taken, stays with the daemon or with it, not in the kernel."""
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await sock.connect(path)
    return sock


async def send_unread(sock: trio.socket.SocketType, data: bytes) -> int:
    """Send ``data`` reading nothing back; how much the daemon took before it stopped
    taking more (half a second without progress) or hung up."""
    view, sent = memoryview(data), 0
    while sent < len(data):
        with trio.move_on_after(0.5) as stalled:
            try:
                sent += await sock.send(view[sent : sent + 65536])
            except OSError:
                return sent
        if stalled.cancelled_caught:
            break
    return sent


async def read_to_eof(sock: trio.socket.SocketType) -> int:
    """Read until the daemon hangs up; the bytes read. Fails if it never does."""
    received = 0
    with trio.fail_after(10):
        try:
            while data := await sock.recv(65536):
                received += len(data)
        except ConnectionResetError:
            pass
    return received


def held_for(shell: Shell, domid: int) -> int:
    """Bytes of output the shell holds for domain ``domid``'s connections."""
    return sum(len(p.backlog) for p in shell.peers.values() if p.domid == domid)


# -- XSA-326: guests can let run xenstored out of memory ------------------------------


async def test_xsa326_unread_replies_stop_the_guest_being_read(workdir: str) -> None:
    """XSA-326 (CVE-2022-42311 to CVE-2022-42318), "Xenstore: guests can let run
    xenstored out of memory", first way: issuing requests without reading the
    responses, which xenstored buffered for the guest without bound.

    Attack: a guest pipelines 20000 READs of a 4000-byte node (80 MB of replies)
    through a 4 KiB receive buffer and reads nothing.

    Defence (shell): a guest with unread output is not read again, and at most its
    "outstanding" quota of replies (20) is produced before that, so its further
    requests wait in the kernel's socket buffer, not in the daemon. Everyone else is
    served meanwhile; once the guest reads, every reply arrives, in order.
    """
    value = b"v" * 4000
    async with trio.open_nursery() as nursery:
        shell = await start(nursery, workdir)
        async with open_client(shell.options.socket_path) as dom0:
            guest_socket = await introduce(dom0, workdir, 5)
            await dom0.write("/local/domain/5/big", value)
            sloth = await connect(guest_socket)
            size = len(encode(Packet(Op.READ, 0, 0, b"big\0")))
            burst = b"".join(encode(Packet(Op.READ, n, 0, b"big\0")) for n in range(20000))
            sent = await send_unread(sloth, burst)
            assert sent < len(burst), "the daemon kept reading a guest that reads nothing"
            reply_size = len(encode(Packet(Op.READ, 1, 0, value)))
            outstanding = shell.server.quota(5, "outstanding")
            assert held_for(shell, 5) <= (outstanding + 1) * reply_size
            assert shell.backlog_bytes <= (outstanding + 1) * reply_size
            # Others are served meanwhile: dom0 and another guest.
            await dom0.write("/local/domain/0/still", "served")
            async with open_client(await introduce(dom0, workdir, 6)) as other:
                await other.write("fine", "yes")
            # Stalled, not dropped: every whole request it sent is answered, in order.
            framer, replies = Framer(), list[Packet]()
            with trio.fail_after(20):
                while len(replies) < sent // size:
                    replies += framer.feed(await sloth.recv(65536))
            assert [r.req_id for r in replies] == list(range(sent // size))
            assert all(r.op == Op.READ and r.payload == value for r in replies)
            sloth.close()
        nursery.cancel_scope.cancel()
    assert shell.backlog_bytes == 0


async def test_xsa326_watch_event_flood_cuts_off_only_the_watcher(
    workdir: str, caplog: pytest.LogCaptureFixture
) -> None:
    """XSA-326 (CVE-2022-42311 to CVE-2022-42318), second way: making xenstored
    generate a large number of watch events for a guest that does not read them.

    Attack: a guest sets 100 watches with 1000-byte tokens on a node in its home
    and stops reading; dom0 writes there again and again (each write owes the guest
    ~100 KB of events, which are never merged or dropped).

    Defence (shell): events are not replies, so not reading cannot slow them down;
    instead a connection whose unread output passes ``backlog_max`` (or the biggest
    holder when all backlogs pass ``backlog_total``) is disconnected, with a log
    line. The writer and the other guests are answered all along.
    """
    async with trio.open_nursery() as nursery:
        shell = await start(nursery, workdir, backlog_max=256 * 1024, write_rate=1e6,
                            write_burst=1000)
        async with open_client(shell.options.socket_path) as dom0:
            guest_socket = await introduce(dom0, workdir, 5)
            await dom0.write("/local/domain/5/flood", "0")
            watcher = await connect(guest_socket)
            for n in range(100):
                token = b"%04d" % n + b"t" * 996
                reply = await call(watcher, Packet(Op.WATCH, n, 0, join("flood", token)))
                assert reply.op == Op.WATCH
            async with open_client(await introduce(dom0, workdir, 6)) as bystander:
                peak = 0
                for n in range(40):
                    with trio.fail_after(2):  # a liveness bound, not a benchmark
                        await dom0.write("/local/domain/5/flood", str(n))
                        await bystander.write("mine", str(n))
                    peak = max(peak, shell.backlog_bytes)
                assert await read_to_eof(watcher) < 40 * 100 * 1000 // 4
            assert not [c for c in shell.server.connections.values() if c.domid == 5]
            assert peak <= 256 * 1024 + 110 * 1024  # the bound, plus one write's events
            assert "unread output" in caplog.text
            watcher.close()
        nursery.cancel_scope.cancel()


def test_xsa326_watch_events_scale_with_watches_not_with_nodes() -> None:
    """XSA-326 (CVE-2022-42311 to CVE-2022-42318), second way, at its source:
    "setting up multiple xenstore watches and then e.g. deleting many xenstore
    nodes below the watched path".

    Attack: a guest fills a subtree with 500 nodes, watches it, and removes it.

    Defence (core): a removal fires each watch once for the removed path (watches
    inside the subtree once for their own path), never once per removed node; and
    the watches a guest may hold are bounded by its watches quota (128) and its
    memory quota, which counts each watch's path and token.
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    guest = Caller(server, 5, False)
    for n in range(500):
        guest.write(f"tree/{n}", "x")
    for n in range(128):
        guest.ok(Op.WATCH, "tree", f"w{n}")
    assert guest.error(Op.WATCH, "tree", "one-too-many") == "ENOSPC"
    guest.ok(Op.RM, "tree")
    assert len(events(guest)) == 128
    dom0.ok(Op.SET_QUOTA, "5", "memory", "4000")
    guest.ok(Op.RESET_WATCHES, "")
    assert guest.error(Op.WATCH, "tree", "t" * 4000) == "ENOMEM"
    assert server.store.check() == []


def test_xsa326_giant_transactions_are_bounded() -> None:
    """XSA-326 (CVE-2022-42311 to CVE-2022-42318), third and fourth ways: "creating
    as many nodes as allowed with the maximum allowed size and path length in as
    many transactions as possible" and "accessing many nodes inside a transaction";
    and XSA-421 (CVE-2022-42325, CVE-2022-42326), "Guests can create arbitrary
    number of nodes via transactions", by creating then deleting a node in one.

    Attack: a guest opens transactions until refused and touches nodes in each
    (reads count too) until refused; it creates and removes nodes inside one
    transaction and commits.

    Defence (core): the transactions quota bounds how many a domain holds open,
    across its connections; transaction-nodes bounds what each may read or change
    (so what it holds while open); a commit replays the changes through the
    store's own accounting, so what a transaction created and removed leaves no
    trace in the node counts.
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    for name, value in (("transactions", "3"), ("transaction-nodes", "8")):
        dom0.ok(Op.SET_QUOTA, "5", name, value)
    for n in range(20):
        dom0.write(f"/local/domain/5/ro/{n}", "x")
    guest, again = Caller(server, 5, False), Caller(server, 5, False)
    tx = [guest.start(), guest.start(), again.start()]
    assert again.error(Op.TRANSACTION_START, "") == "ENOSPC"
    # Reads alone use up the transaction's share.
    replies = [guest.request(Op.READ, b"ro/%d\0" % n, tx[0]) for n in range(20)]
    refused = [reply for reply in replies if reply[0] == "ERROR"]
    assert len(replies) - len(refused) <= 8
    assert set(refused) == {("ERROR", b"ENOSPC")}
    guest.write("made/here", "x", tx=tx[1])
    guest.ok(Op.RM, "made", tx=tx[1])
    guest.write("kept", "x", tx=tx[1])
    guest.end(tx[1])
    assert server.store.owned[5] == 1 + 21 + 1  # the home, dom0's ro and ro/*, "kept"
    assert server.store.check() == []


def test_xsa326_nodes_made_in_transactions_count_against_the_quota() -> None:
    """XSA-326 (CVE-2022-42311 to CVE-2022-42318), third way, and XSA-421
    (CVE-2022-42325): nodes created in transactions escaping the nodes quota.

    Attack: a guest with a quota of 4 nodes (its home is one) creates nodes in
    each of 3 parallel transactions and commits them all.

    Defence (core): what a transaction creates counts against the domain's quota
    while it is open (a write past it is refused with ENOSPC), and a commit that
    would take the domain over its quota fails with ENOSPC and ends the
    transaction, so commits one after another cannot add up past the quota.
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    dom0.ok(Op.SET_QUOTA, "5", "nodes", "4")
    guest = Caller(server, 5, False)
    transactions = [guest.start() for _ in range(3)]
    for tx in transactions:
        for n in range(3):
            guest.ok(Op.WRITE, b"t%d-%d" % (tx, n), b"x", tx=tx)
        # A fourth would take this transaction's domain to 5.
        assert guest.error(Op.WRITE, b"t%d-3" % tx, b"x", tx=tx) == "ENOSPC"
    verdicts = [guest.request(Op.TRANSACTION_END, b"T\0", tx) for tx in transactions]
    assert verdicts == [("OK", b"OK\0"), ("ERROR", b"ENOSPC"), ("ERROR", b"ENOSPC")]
    assert server.store.owned[5] == 4
    assert server.store.check() == []
    # The refused transactions are over: their snapshots are closed, their ids gone.
    assert server.store.open_snapshots == 0
    assert guest.error(Op.READ, "t2-0", tx=transactions[1]) == "ENOENT"
    # Removing inside a transaction frees room inside it, and its commit fits.
    tx = guest.start()
    guest.ok(Op.RM, b"t%d-0" % transactions[0], tx=tx)
    guest.ok(Op.WRITE, b"again", b"x", tx=tx)
    assert guest.end(tx) == b"OK\0"
    assert server.store.owned[5] == 4
    assert server.store.check() == []


def test_xsa326_bytes_written_in_transactions_count_against_the_memory_quota() -> None:
    """XSA-326, the same attack on the memory quota: big values written in
    parallel transactions, each within the quota alone.

    Defence (core): a transaction's bytes count while it is open, and a commit
    that would take the domain over its memory quota fails with ENOMEM.
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    dom0.ok(Op.SET_QUOTA, "5", "memory", "4000")
    guest = Caller(server, 5, False)
    value = b"v" * 1500
    first, second = guest.start(), guest.start()
    for tx in (first, second):
        guest.ok(Op.WRITE, b"a%d" % tx, value, tx=tx)
        guest.ok(Op.WRITE, b"b%d" % tx, value, tx=tx)
        assert guest.error(Op.WRITE, b"c%d" % tx, value, tx=tx) == "ENOMEM"
    assert guest.end(first) == b"OK\0"
    assert guest.request(Op.TRANSACTION_END, b"T\0", second) == ("ERROR", b"ENOMEM")
    assert server.store.owned_bytes[5] < 4000
    assert server.store.check() == []


# -- XSA-416: temporary memory held until a response is read ----------------------------


async def test_xsa416_temporary_memory_is_freed_before_the_reply_is_read(workdir: str) -> None:
    """XSA-416 (CVE-2022-42319), "Xenstore: Guests can cause Xenstore to not free
    temporary memory": xenstored freed what it allocated for a request only once
    the guest had read the response, so a guest not reading kept it allocated.

    Attack: a guest builds a transaction that dom0's writes make the store keep old
    versions for, commits it and, in the same write, asks for 8 MB of replies;
    it reads none of them, then disconnects.

    Defence (core and shell): a request runs to completion inside one call, so the
    commit's snapshot and the old versions it kept are gone the moment it is
    handled, whether or not the reply is ever read; what is left is the reply
    bytes, bounded as in XSA-326, and they go with the connection.
    """
    async with trio.open_nursery() as nursery:
        shell = await start(nursery, workdir, write_rate=1e6, write_burst=1000)
        store = shell.server.store
        async with open_client(shell.options.socket_path) as dom0:
            guest_socket = await introduce(dom0, workdir, 5)
            await dom0.write("/local/domain/5/big", "v" * 4000)
            guest = await connect(guest_socket)
            tx = int((await call(guest, Packet(Op.TRANSACTION_START, 1, 0, b"\0"))).payload[:-1])
            for n in range(50):
                assert (await call(guest, Packet(Op.WRITE, 2, tx, b"t/%d\0" % n + b"x" * 1000))
                        ).op == Op.WRITE
                await dom0.write(f"/churn/{n}", "y")  # the snapshot keeps old versions
            assert store.open_snapshots == 1 and store.history
            burst = encode(Packet(Op.TRANSACTION_END, 3, tx, b"T\0")) + encode(
                Packet(Op.READ, 4, 0, b"big\0")) * 2000
            await send_unread(guest, burst)
            # Nothing of the commit was read back, and nothing of it is held.
            assert store.open_snapshots == 0 and not store.history
            assert await dom0.read("/local/domain/5/t/49") == b"x" * 1000
            assert held_for(shell, 5) > 0
            guest.close()
            with trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked(0.05)
            assert not [p for p in shell.peers.values() if p.domid == 5]
            assert shell.backlog_bytes == 0
            assert store.check() == []
        nursery.cancel_scope.cancel()


# -- XSA-272 and XSA-352: quotas bypassed by giving nodes away --------------------------


def test_xsa272_xsa352_a_guest_cannot_escape_its_node_quota() -> None:
    """XSA-272 (CVE-2018-15470), "oxenstored does not apply quota-maxentity": writes
    could create nodes beyond the domain's node quota; and XSA-352 (CVE-2020-29486),
    "oxenstored: node ownership can be changed by unprivileged clients": a guest
    could give its nodes away, so they stopped counting against its quota (and
    could run another domain, or dom0, out of quota or the daemon out of memory).

    Attack: a guest at its quota gives nodes to another domain or to dom0 with
    SET_PERMS (outside and inside a transaction), creates nodes in a directory
    dom0 owns and lets it write, and creates several levels in one write.

    Defence (core): only a privileged domain may change a node's owner (EPERM, as
    cxenstored); a node is owned by the guest that creates it, wherever it is; the
    quota counts every level a write would create, before creating any.
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    introduce_in_core(dom0, 6)
    dom0.ok(Op.SET_QUOTA, "5", "nodes", "4")
    dom0.write("/shared", "")
    dom0.set_perms("/shared", "n0", "w5")
    guest = Caller(server, 5, False)
    guest.write("a", "")
    guest.write("/shared/b", "")
    assert guest.get_perms("/shared/b") == ["n5", "w5"]
    assert server.store.owned[5] == 3
    for new_owner in ("n6", "n0"):
        assert guest.error(Op.SET_PERMS, "a", new_owner) == "EPERM"
        tx = guest.start()
        assert guest.error(Op.SET_PERMS, "a", new_owner, tx=tx) == "EPERM"
        guest.end(tx)
    assert guest.error(Op.WRITE, "c/d", "") == "ENOSPC"  # two levels, one left
    assert not server.store.exists("/local/domain/5/c")
    guest.write("c", "")
    assert guest.error(Op.WRITE, "/shared/e", "") == "ENOSPC"
    assert guest.get_perms("a") == ["n5", "r0"]
    assert server.store.owned == {0: 6, 5: 4, 6: 1}  # dom0: its 5 and /shared
    # dom0 may hand a node over (it is the toolstack); the quota follows the owner.
    dom0.set_perms("/shared/b", "n0")
    guest.write("e", "")
    assert server.store.check() == []


# -- XSA-425: RELEASE crashed xenstored -----------------------------------------------


def test_xsa425_release_of_a_busy_domain_in_the_core() -> None:
    """XSA-425 (CVE-2022-42330), "Guests can cause Xenstore crash via soft reset": a
    guest's soft reset makes the toolstack send XS_RELEASE, and releasing a domain
    freed its connection while xenstored's I/O loop still used it.

    Attack: the domain to release has two connections, open transactions with
    changes and watches; dom0 releases it from inside its own
    transaction, re-introduces the same domid and releases again; and a guest ends
    its transaction with RESET_WATCHES sent inside it (XSA-484, CVE-2026-23557,
    which crashed xenstored on an assertion).

    Defence (core): RELEASE closes the domain's connections first (aborting their
    transactions and dropping their watches) and only then removes its nodes; no
    count of the domain survives it (unlike oxenstored's, XSA-483, CVE-2026-23556).
    """
    server = Server()
    dom0 = Caller(server)
    introduce_in_core(dom0, 5)
    dom0.ok(Op.SET_QUOTA, "nodes", "31")
    guest, second = Caller(server, 5, False), Caller(server, 5, False)
    for n in range(29):
        guest.write(f"n{n}", "x")
    guest.ok(Op.WATCH, "n0", "w")
    tx = [guest.start(), second.start()]
    guest.write("in-tx", "y", tx=tx[0])
    second.ok(Op.RM, "n1", tx=tx[1])
    dom0_tx = dom0.start()
    dom0.write("/local/domain/5/n2", "dom0's", tx=dom0_tx)
    dom0.ok(Op.RELEASE, "5", tx=dom0_tx)
    assert {Close(guest.conn_id, "domain 5 released"),
            Close(second.conn_id, "domain 5 released")} <= set(dom0.effects)
    assert dom0.error(Op.TRANSACTION_END, "T", tx=dom0_tx) == "EAGAIN"
    assert not server.store.exists("/local/domain/5/n0")
    assert server.store.check() == [] and server.store.open_snapshots == 0
    assert len(server.watches) == 0 and server._open_by_domain.get(5, 0) == 0
    assert dom0.error(Op.RELEASE, "5") == "ENOENT"
    # The same domid again: a fresh domain with its whole quota.
    introduce_in_core(dom0, 5)
    guest = Caller(server, 5, False)
    for n in range(29):
        guest.write(f"n{n}", "x")
    for _ in range(10):
        guest.start()
    guest.ok(Op.WATCH, "n0", "w")
    dom0.ok(Op.INTRODUCE, "5", "4096", "9")  # re-introduced: its connections reset
    assert len(server.watches) == 0 and server._open_by_domain.get(5, 0) == 0
    last = guest.start()
    guest.write("n29", "y", tx=last)
    assert guest.ok(Op.RESET_WATCHES, "", tx=last) == b"OK\0"
    assert guest.error(Op.READ, "n0", tx=last) == "ENOENT"
    dom0.ok(Op.RESUME, "5")
    dom0.ok(Op.RELEASE, "5")
    assert server.store.check() == [] and server.store.owned == {0: 5}


async def test_xsa425_release_while_the_guest_is_mid_request(workdir: str) -> None:
    """XSA-425 (CVE-2022-42330) over a real guest socket: the domain is released
    while the shell is in the middle of the guest's pipelined requests.

    Attack: the guest holds a transaction and a watch and sends 200 writes at once
    while its write rate (10/s) holds them; dom0 releases the domain meanwhile.

    Defence (shell): the Close effect cancels the guest's reader where it waits,
    before it hands the core another request; the guest sees EOF, its socket file
    goes, dom0 is served on, and the same domid can be introduced again.
    """
    async with trio.open_nursery() as nursery:
        shell = await start(nursery, workdir, write_rate=10, write_burst=1)
        async with open_client(shell.options.socket_path) as dom0:
            guest_socket = await introduce(dom0, workdir, 5)
            guest = await connect(guest_socket)
            tx = int((await call(guest, Packet(Op.TRANSACTION_START, 1, 0, b"\0"))).payload[:-1])
            assert (await call(guest, Packet(Op.WATCH, 2, 0, b"a\0w\0"))).op == Op.WATCH
            await guest.send(b"".join(
                encode(Packet(Op.WRITE, n, tx if n % 2 else 0, b"a\0%d" % n)) for n in range(200)))
            with trio.fail_after(5):
                await trio.testing.wait_all_tasks_blocked(0.05)
            assert await dom0.read("/local/domain/5/a") == b"0"  # held after its first write
            await dom0.request(Op.RELEASE, join("5"))
            await read_to_eof(guest)
            assert not await trio.Path(guest_socket).exists()
            assert not [c for c in shell.server.connections.values() if c.domid == 5]
            assert shell.server.store.check() == []
            assert not await dom0.exists("/local/domain/5")
            guest_socket = await introduce(dom0, workdir, 5)
            async with open_client(guest_socket) as again:
                await again.write("back", "yes")
            guest.close()
        nursery.cancel_scope.cancel()


# -- a header whose length desyncs the stream -----------------------------------------


async def test_xsa420_a_length_that_desyncs_the_stream_closes_only_that_guest(
    workdir: str,
) -> None:
    """XSA-420 (CVE-2022-42324), "Oxenstored 32->31 bit integer truncation issues": a
    packet length near 2^31 became negative, the exception left the packet on the
    ring and oxenstored spun on it. The same class: any header whose length does not
    match what follows desynchronises the stream for good.

    Attack: a guest sends a request whose header announces fewer bytes than its
    payload, so the rest is read as the next header, here one announcing 2^31
    bytes; another guest announces a full 4096-byte payload and never sends it.

    Defence (shell and framer): a length above 4096 is refused when its header
    arrives (nothing is allocated for it) and closes that connection only, after
    answering the requests before it; a short read waits holding at most one
    packet; the tree is untouched and everyone else is served.
    """
    async with trio.open_nursery() as nursery:
        shell = await start(nursery, workdir)
        async with open_client(shell.options.socket_path) as dom0:
            liar = await connect(await introduce(dom0, workdir, 5))
            lingerer = await connect(await introduce(dom0, workdir, 6))
            await lingerer.send(encode_parts(Op.WRITE, 1, 0, b"x")[:12]
                                + (4096).to_bytes(4, "little") + b"half/a/payload\0")
            # It announces 8 bytes and sends 24: the last 16, read as a header,
            # announce 2^31 bytes.
            payload = b"name\0vm5" + b"rest-of-valu" + (1 << 31).to_bytes(4, "little")
            await liar.send(encode_parts(Op.WRITE, 1, 0, b"")[:12]
                            + (8).to_bytes(4, "little") + payload)
            framer, got = Framer(), list[Packet]()
            with trio.fail_after(10):
                while data := await liar.recv(65536):
                    got += framer.feed(data)
            assert got == [Packet(Op.WRITE, 1, 0, b"OK\0")]  # answered, then closed
            assert await dom0.read("/local/domain/5/name") == b"vm5"
            await dom0.write("/local/domain/0/still", "served")
            assert [c.domid for c in shell.server.connections.values()].count(6) == 1
            assert shell.server.store.check() == []
            for sock in (liar, lingerer):
                sock.close()
        nursery.cancel_scope.cancel()



def test_new_permission_lists_do_not_grow_the_daemon_for_ever() -> None:
    """Found by the soak benchmark (XSA-326 class): every distinct permission list a guest
    set stayed in a sharing table for ever, outside its quotas (~7 MiB a minute at the
    default write rate). The table is bounded now; the tree is unchanged."""
    from xenstore import perms
    from xenstore.daemon.core import Server
    from xenstore.protocol.codec import Packet
    from xenstore.protocol.ops import Op

    server = Server()
    dom0 = server.connect()
    server.handle(dom0, Packet(Op.WRITE, 1, 0, b"/x\0"))
    for n in range(3 * perms.INTERN_MAX):
        payload = b"/x\0n0\0r%d\0r%d\0" % (n % 30000 + 1, n // 30000 + 1)
        server.handle(dom0, Packet(Op.SET_PERMS, n, 0, payload))
        assert len(perms._interned) <= perms.INTERN_MAX
    reply = server.handle(dom0, Packet(Op.GET_PERMS, 0, 0, b"/x\0"))[-1]
    last = 3 * perms.INTERN_MAX - 1
    assert reply.packet.payload == b"n0\0r%d\0r1\0" % (last + 1)  # type: ignore[union-attr]
    assert server.store.check() == []
