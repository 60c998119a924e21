"""The trio client against real daemons: ours, then the reference cxenstored 4.17.

A few tests need a daemon that misbehaves on purpose (replies out of order,
exact request bytes); they run against a scripted server in this file.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
from collections.abc import Iterator
from typing import NamedTuple

import pytest
import trio
import trio.testing

from tests.conftest import OurDaemon, reference_daemon, short_tempdir
from xenstore import errors
from xenstore.aclient import (
    UNWATCH_TIMEOUT,
    AsyncClient,
    WatchEvent,
    WatchEvents,
    open_client,
)
from xenstore.protocol.codec import Framer, Packet, encode
from xenstore.protocol.ops import Op
from xsref import launcher

#: No step should come near it: a hang fails the test instead of blocking the run.
DEADLINE = 10


async def next_event(events: WatchEvents) -> WatchEvent:
    with trio.fail_after(DEADLINE):
        return await events.receive()


async def expect_nothing_before(events: WatchEvents, xs: AsyncClient, sentinel: str) -> None:
    """Write ``sentinel`` (a watched path): its event must be the very next one.

    Events arrive in order, so this proves that nothing fired in between,
    without sleeping.
    """
    await xs.write(sentinel, "sentinel")
    assert (await next_event(events)).path == sentinel


# -- nodes ---------------------------------------------------------------------


async def test_read_write_mkdir_rm_exists(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        await xs.write("/t/a", "1")
        await xs.write("/t/b", b"\x00\xffbinary")
        assert await xs.read("/t/a") == b"1"
        assert await xs.read("/t/b") == b"\x00\xffbinary"
        await xs.mkdir("/t/c")
        assert await xs.read("/t/c") == b""
        await xs.mkdir("/t/a")  # already there: kept as it is
        assert await xs.read("/t/a") == b"1"
        assert await xs.exists("/t/c")
        assert not await xs.exists("/t/missing")
        assert await xs.directory("/t") == ["a", "b", "c"]
        await xs.rm("/t/c")
        await xs.rm("/t/missing")  # the parent exists: not an error
        assert await xs.directory("/t") == ["a", "b"]
        await xs.rm("/t")
        assert not await xs.exists("/t/a")


async def test_directory_falls_back_to_directory_part_beyond_4096_bytes(any_daemon: str) -> None:
    names = [f"child-with-a-long-name-{i:04d}" for i in range(300)]  # ~8.4 kB of names
    async with open_client(any_daemon) as xs:
        for name in names:  # one at a time: the listing keeps insertion order
            await xs.write(f"/big/{name}", "")
        with pytest.raises(errors.E2BIG):
            await xs.request(Op.DIRECTORY, b"/big\0")
        assert await xs.directory("/big") == names
        assert await xs.directory_part("/big") == names


async def test_perms_domain_path_and_control(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        await xs.write("/p", "")
        assert await xs.get_perms("/p") == ["n0"]
        await xs.set_perms("/p", ["n0", "r5", "w7"])
        assert await xs.get_perms("/p") == ["n0", "r5", "w7"]
        assert await xs.get_domain_path(3) == "/local/domain/3"
        assert await xs.control("help") != b""


async def test_each_error_reply_raises_its_type(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        await xs.write("/t", "")
        with pytest.raises(errors.ENOENT) as info:
            await xs.read("/missing")
        assert info.value.errno == errno.ENOENT
        with pytest.raises(errors.ENOENT):
            await xs.directory("/missing")
        with pytest.raises(errors.ENOENT):
            await xs.get_perms("/missing")
        with pytest.raises(errors.ENOENT):
            await xs.set_perms("/missing", ["n0"])
        with pytest.raises(errors.ENOENT):
            await xs.rm("/missing/child")
        with pytest.raises(errors.ENOENT):
            await xs.transaction_end(12345)
        with pytest.raises(errors.ENOENT):
            await xs.read("/t", tx=777)
        with pytest.raises(errors.EINVAL) as bad:
            await xs.write("/bad path", "x")
        assert bad.value.errno == errno.EINVAL
        with pytest.raises(errors.EINVAL):
            await xs.read("/t/")
        with pytest.raises(errors.EINVAL):
            await xs.rm("/")
        with pytest.raises(errors.EINVAL):
            await xs.set_perms("/t", ["x5"])
        with pytest.raises(errors.EINVAL):
            await xs.control("no-such-command")
        # Refused before sending, as libxenstore: the daemon would hang up.
        with pytest.raises(errors.E2BIG):
            await xs.write("/t", b"v" * 5000)
        # Not one of them broke the connection.
        await xs.write("/t", "still fine")
        assert await xs.read("/t") == b"still fine"


async def test_transactions_commit_abort_and_conflict(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        await xs.write("/c", "0")
        tx = await xs.transaction_start()
        await xs.write("/c", "1", tx=tx)
        assert await xs.read("/c", tx=tx) == b"1"
        assert await xs.read("/c") == b"0"  # isolated until committed
        await xs.transaction_end(tx)
        assert await xs.read("/c") == b"1"

        tx = await xs.transaction_start()
        await xs.write("/c", "2", tx=tx)
        await xs.transaction_end(tx, commit=False)
        assert await xs.read("/c") == b"1"

        tx = await xs.transaction_start()
        assert await xs.read("/c", tx=tx) == b"1"
        await xs.write("/c", "3", tx=tx)
        await xs.write("/c", "outside")  # changes what the transaction touched
        with pytest.raises(errors.EAGAIN):
            await xs.transaction_end(tx)
        assert await xs.read("/c") == b"outside"


# -- one connection, many tasks --------------------------------------------------


async def test_concurrent_requests_from_many_tasks_get_their_own_replies(any_daemon: str) -> None:
    count = 200
    async with open_client(any_daemon) as xs:
        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(xs.write, f"/many/{i}", f"value-{i}" * (i % 7 + 1))

        results: dict[int, bytes | type[Exception]] = {}

        async def read(i: int) -> None:
            try:
                results[i] = await xs.read(f"/many/{i}" if i % 3 else f"/absent/{i}")
            except errors.ENOENT:
                results[i] = errors.ENOENT

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for i in range(count):
                    nursery.start_soon(read, i)
        for i in range(count):
            expected = f"value-{i}".encode() * (i % 7 + 1) if i % 3 else errors.ENOENT
            assert results[i] == expected, i


async def test_cancelled_requests_leave_the_connection_in_sync(any_daemon: str) -> None:
    # Values near the payload limit, from 100 tasks at once, fill the socket
    # buffer: deadlines land while requests wait for the lock, while they are
    # being written and while they wait for replies.
    count = 100

    def value(i: int, round_: int) -> bytes:
        return f"{i}:{round_}:".encode().ljust(4000, b"x")

    async with open_client(any_daemon) as xs:
        for i in range(count):
            await xs.write(f"/c/{i}", value(i, -1))

        async def write_then_read(i: int, round_: int) -> None:
            await xs.write(f"/c/{i}", value(i, round_))
            assert await xs.read(f"/c/{i}") == value(i, round_)

        for round_, deadline in enumerate((0, 1e-5, 1e-4, 5e-4, 1e-3, 3e-3, 1e-2)):
            with trio.move_on_after(deadline):
                async with trio.open_nursery() as nursery:
                    for i in range(count):
                        nursery.start_soon(write_then_read, i, round_)
            # Whatever was cut short, every later reply answers its own request.
            with trio.fail_after(DEADLINE):
                for i in range(count):
                    assert await xs.read(f"/c/{i}") in (value(i, r) for r in range(-1, round_ + 1))
                    with pytest.raises(errors.ENOENT):
                        await xs.read(f"/nothing/{i}")


# -- watches -------------------------------------------------------------------


async def test_watch_first_event_then_writes_and_rm(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        await xs.write("/w/x", "1")
        async with xs.watch("/w", "tok") as events:
            assert events.wpath == "/w"
            assert events.token == "tok"
            assert await next_event(events) == WatchEvent("/w", "tok")
            await xs.write("/w/x", "2")
            assert await next_event(events) == WatchEvent("/w/x", "tok")
            await xs.write("/w", "3")
            assert await next_event(events) == WatchEvent("/w", "tok")
            await xs.mkdir("/w/new")
            assert await next_event(events) == WatchEvent("/w/new", "tok")
            await xs.rm("/w/x")
            assert await next_event(events) == WatchEvent("/w/x", "tok")
            await xs.rm("/w")
            assert await next_event(events) == WatchEvent("/w", "tok")
            await xs.write("/elsewhere", "")  # not watched
            await expect_nothing_before(events, xs, "/w")


async def test_watch_events_are_iterated_and_never_lost(any_daemon: str) -> None:
    count = 500
    async with open_client(any_daemon) as xs, xs.watch("/n") as events:
        # Nobody reads while they pile up: the buffer has no bound.
        for i in range(count):
            await xs.write(f"/n/{i}", "")
        seen: list[str] = []
        with trio.fail_after(DEADLINE):
            async for event in events:
                seen.append(event.path)
                if len(seen) == count + 1:
                    break
        assert seen == ["/n"] + [f"/n/{i}" for i in range(count)]


async def test_two_watches_with_their_own_tokens_on_one_connection(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs, xs.watch("/a") as on_a, xs.watch("/b") as on_b:
        assert on_a.token != on_b.token  # generated, unique
        assert await next_event(on_a) == WatchEvent("/a", on_a.token)
        assert await next_event(on_b) == WatchEvent("/b", on_b.token)
        await xs.write("/b/1", "")
        await xs.write("/a/1", "")
        await xs.write("/b/2", "")
        assert await next_event(on_a) == WatchEvent("/a/1", on_a.token)
        assert await next_event(on_b) == WatchEvent("/b/1", on_b.token)
        assert await next_event(on_b) == WatchEvent("/b/2", on_b.token)
        await expect_nothing_before(on_a, xs, "/a/end")
        await expect_nothing_before(on_b, xs, "/b/end")


async def test_one_token_on_two_paths_is_told_apart_by_path(any_daemon: str) -> None:
    async with (
        open_client(any_daemon) as xs,
        xs.watch("/a", "same") as on_a,
        xs.watch("/ab", "same") as on_ab,
    ):
        assert await next_event(on_a) == WatchEvent("/a", "same")
        assert await next_event(on_ab) == WatchEvent("/ab", "same")
        await xs.write("/ab/x", "")  # "/ab" is not below "/a"
        await xs.write("/a/x", "")
        assert await next_event(on_ab) == WatchEvent("/ab/x", "same")
        assert await next_event(on_a) == WatchEvent("/a/x", "same")
        await expect_nothing_before(on_a, xs, "/a/end")
        await expect_nothing_before(on_ab, xs, "/ab/end")


async def test_leaving_a_watch_unwatches_it(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        async with xs.watch("/u", "t1") as events:
            assert await next_event(events) == WatchEvent("/u", "t1")
        # The daemon no longer has it...
        with pytest.raises(errors.ENOENT):
            await xs.request(Op.UNWATCH, b"/u\0t1\0")
        # ...so a write gives no event: with the same token now watching /v,
        # an event for /u would be routed there (one watch per token) before /v's.
        async with xs.watch("/v", "t1") as events:
            assert await next_event(events) == WatchEvent("/v", "t1")
            await xs.write("/u", "changed")
            await expect_nothing_before(events, xs, "/v")


async def test_a_cancelled_watch_is_still_unwatched(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs:
        with trio.move_on_after(0.05) as scope:
            async with xs.watch("/u", "t1") as events:
                await next_event(events)
                await trio.sleep_forever()
        assert scope.cancelled_caught
        with pytest.raises(errors.ENOENT):
            await xs.request(Op.UNWATCH, b"/u\0t1\0")
        # Cancelled before WATCH could even be answered: nothing is left either.
        for _ in range(20):
            with trio.move_on_after(0):
                async with xs.watch("/u", "t2"):
                    pass
        with pytest.raises(errors.ENOENT):
            await xs.request(Op.UNWATCH, b"/u\0t2\0")


async def test_a_refused_watch_raises_and_leaves_the_first_one_working(any_daemon: str) -> None:
    async with open_client(any_daemon) as xs, xs.watch("/d", "dup") as events:
        assert await next_event(events) == WatchEvent("/d", "dup")
        with pytest.raises(errors.EEXIST):
            async with xs.watch("/d", "dup"):
                pytest.fail("a duplicate watch was accepted")
        with pytest.raises(errors.EINVAL):
            async with xs.watch("/bad path"):
                pytest.fail("an invalid path was watched")
        # The daemon's (/d, dup) survived the refused duplicate.
        await xs.write("/d/x", "")
        assert await next_event(events) == WatchEvent("/d/x", "dup")


async def test_depth_is_refused_by_the_4_17_reference(ref_daemon: launcher.ReferenceDaemon) -> None:
    async with open_client(ref_daemon.socket_path) as xs:
        with pytest.raises(errors.EINVAL):
            async with xs.watch("/d", depth=1):
                pytest.fail("4.17 has no watch depth")
        async with xs.watch("/d") as events:  # the refusal left nothing behind
            assert (await next_event(events)).path == "/d"


async def test_depth_limits_events_on_our_daemon(our_daemon: OurDaemon) -> None:
    async with open_client(our_daemon.socket_path) as xs:
        await xs.write("/d/c/g", "")
        async with xs.watch("/d", depth=0) as node_only, xs.watch("/d", depth=1) as children:
            assert await next_event(node_only) == WatchEvent("/d", node_only.token)
            assert await next_event(children) == WatchEvent("/d", children.token)
            await xs.write("/d/c/g", "1")  # two levels down: neither
            await xs.write("/d/c", "1")  # one level down: depth 1 only
            assert await next_event(children) == WatchEvent("/d/c", children.token)
            await xs.write("/d", "1")
            assert await next_event(node_only) == WatchEvent("/d", node_only.token)
            assert await next_event(children) == WatchEvent("/d", children.token)


# -- the daemon stalls or goes away ------------------------------------------------------


class Killable(NamedTuple):
    socket_path: str
    pid: int
    ours: bool


@pytest.fixture(params=["ours", "cxenstored"])
def killable_daemon(request: pytest.FixtureRequest) -> Iterator[Killable]:
    """Like ``any_daemon``, with the pid to stop and kill it by."""
    if request.param == "ours":
        daemon = OurDaemon()
        try:
            yield Killable(daemon.socket_path, daemon.pid, ours=True)
        finally:
            daemon.stop()
    else:
        for ref in reference_daemon("c"):
            yield Killable(ref.socket_path, ref.pid, ours=False)


async def test_a_waiting_request_fails_when_the_daemon_dies(killable_daemon: Killable) -> None:
    async with open_client(killable_daemon.socket_path) as xs:
        await xs.write("/k", "1")
        os.kill(killable_daemon.pid, signal.SIGSTOP)  # it will never answer
        failures: list[BaseException] = []

        async def read() -> None:
            try:
                await xs.read("/k")
            except ConnectionResetError as exc:
                failures.append(exc)

        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(read)
                await trio.testing.wait_all_tasks_blocked()  # sent, waiting for replies
                os.kill(killable_daemon.pid, signal.SIGKILL)
        assert len(failures) == 3
        with pytest.raises(ConnectionResetError):
            await xs.read("/k")


async def test_requests_cut_short_half_written_still_go_out_whole(
    killable_daemon: Killable,
) -> None:
    # A stopped daemon reads nothing, so a 4 kB request is left half-written
    # in a small socket buffer and the others queue for the lock; then all are
    # cancelled. An unshielded write would leave half a request on the wire,
    # and every later request would be misread.
    count = 20

    def value(i: int) -> bytes:
        return f"{i}:".encode().ljust(4000, b"y")

    async with open_client(killable_daemon.socket_path) as xs:
        stream = xs._stream
        assert isinstance(stream, trio.SocketStream)
        # The kernel's minimum, 4608 bytes: a Unix socket writes a request in
        # chunks of half that, and stops between two when the buffer is full.
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1)
        await xs.write("/s", "")
        os.kill(killable_daemon.pid, signal.SIGSTOP)
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as writers:
                # A small request first, so that the next has room for one chunk only.
                writers.start_soon(xs.exists, "/s")
                await trio.testing.wait_all_tasks_blocked()
                for i in range(count):
                    writers.start_soon(xs.write, f"/s/{i}", value(i))
                await trio.testing.wait_all_tasks_blocked()
                writers.cancel_scope.cancel()
                with trio.CancelScope(shield=True):
                    await trio.testing.wait_all_tasks_blocked()  # all cancellations delivered
                os.kill(killable_daemon.pid, signal.SIGCONT)
            written = await xs.directory("/s")
            assert len(written) == 1  # the one cut in half went out whole; no other did
            for i in range(count):
                if str(i) in written:
                    assert await xs.read(f"/s/{i}") == value(i)
                else:
                    assert not await xs.exists(f"/s/{i}")


async def test_a_request_cancelled_while_waiting_drops_its_late_reply(
    killable_daemon: Killable,
) -> None:
    async with open_client(killable_daemon.socket_path) as xs:
        await xs.write("/late", "first")
        os.kill(killable_daemon.pid, signal.SIGSTOP)
        try:
            with trio.move_on_after(0.05) as waiting:
                await xs.read("/late")
            assert waiting.cancelled_caught  # sent, and abandoned
        finally:
            os.kill(killable_daemon.pid, signal.SIGCONT)
        with trio.fail_after(DEADLINE):
            # The abandoned READ's reply comes first on the wire: it must not
            # be taken for the answer to this one.
            with pytest.raises(errors.ENOENT):
                await xs.read("/late/missing")
            assert await xs.read("/late") == b"first"


async def test_a_watch_ends_with_an_error_when_the_daemon_dies(killable_daemon: Killable) -> None:
    async with open_client(killable_daemon.socket_path) as xs, xs.watch("/k", "t") as events:
        await xs.write("/k", "1")
        # A round trip more: both events are on the wire before its reply, on
        # either daemon (cxenstored may queue an event behind the reply it caused).
        await xs.read("/k")
        os.kill(killable_daemon.pid, signal.SIGKILL)
        seen: list[WatchEvent] = []
        with trio.fail_after(DEADLINE), pytest.raises(ConnectionResetError):
            async for event in events:
                seen.append(event)
        # What arrived before the end is still delivered: the first event and
        # the write's. (cxenstored may drop the second as a duplicate of the
        # first if that was still queued; we never merge events.)
        if killable_daemon.ours:
            assert seen == [WatchEvent("/k", "t"), WatchEvent("/k", "t")]
        else:
            assert seen in ([WatchEvent("/k", "t")], [WatchEvent("/k", "t")] * 2)
    # Leaving the watch tolerated the closed connection.


# -- the client itself ---------------------------------------------------------


async def test_errors_in_the_body_are_not_wrapped_and_use_after_close_fails(
    any_daemon: str,
) -> None:
    with pytest.raises(errors.ENOENT):
        async with open_client(any_daemon) as xs:
            await xs.read("/missing")
    with pytest.raises(trio.ClosedResourceError):
        await xs.read("/")


async def test_the_default_socket_path_comes_from_the_environment(
    any_daemon: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XENSTORED_PATH", any_daemon)
    async with open_client() as xs:
        assert await xs.exists("/")


async def scripted_daemon() -> tuple[str, trio.SocketListener]:
    """A listening socket for a test to play the daemon on."""
    path = os.path.join(short_tempdir(), "s")
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen()
    return path, trio.SocketListener(sock)


async def read_packets(stream: trio.SocketStream, framer: Framer, count: int) -> list[Packet]:
    packets: list[Packet] = []
    while len(packets) < count:
        data = await stream.receive_some(65536)
        assert data, "client hung up"
        packets += framer.feed(bytes(data))
    return packets


async def test_replies_are_matched_by_req_id_not_by_order() -> None:
    path, listener = await scripted_daemon()
    results: dict[str, bytes] = {}
    async with trio.open_nursery() as nursery:

        async def daemon() -> None:
            stream = await listener.accept()
            packets = await read_packets(stream, Framer(), 3)
            # Answer in reverse order, each with its own path as the value.
            for packet in reversed(packets):
                value = packet.payload.rstrip(b"\0")
                await stream.send_all(encode(Packet(packet.op, packet.req_id, 0, value)))
            await stream.aclose()

        nursery.start_soon(daemon)
        with trio.fail_after(DEADLINE):
            async with open_client(path) as xs:

                async def read(name: str) -> None:
                    results[name] = await xs.read(name)

                async with trio.open_nursery() as readers:
                    for name in ("/one", "/two", "/three"):
                        readers.start_soon(read, name)
        await listener.aclose()
    assert results == {"/one": b"/one", "/two": b"/two", "/three": b"/three"}


async def answer_ok(listener: trio.SocketListener, received: list[Packet]) -> None:
    """Play a daemon for one connection: record each request, answer OK.

    WATCH gets its first event right after the reply, as the real daemons send it.
    """
    stream = await listener.accept()
    framer = Framer()
    while data := await stream.receive_some(65536):
        for packet in framer.feed(bytes(data)):
            received.append(packet)
            out = encode(Packet(packet.op, packet.req_id, 0, b"OK\0"))
            if packet.op == Op.WATCH:
                wpath, token = packet.payload.split(b"\0")[:2]
                out += encode(Packet(Op.WATCH_EVENT, 0, 0, wpath + b"\0" + token + b"\0"))
            await stream.send_all(out)
    await stream.aclose()


async def test_watch_and_unwatch_bytes_on_the_wire() -> None:
    path, listener = await scripted_daemon()
    received: list[Packet] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_ok, listener, received)
        with trio.fail_after(DEADLINE):
            async with open_client(path) as xs:
                async with xs.watch("/p", "tok", depth=2) as events:
                    assert await events.receive() == WatchEvent("/p", "tok")
                async with xs.watch("/q", "t2") as events:
                    assert await events.receive() == WatchEvent("/q", "t2")
    await listener.aclose()
    assert [(p.op, p.tx_id, p.payload) for p in received] == [
        (Op.WATCH, 0, b"/p\0tok\x002\0"),
        (Op.UNWATCH, 0, b"/p\0tok\0"),
        (Op.WATCH, 0, b"/q\0t2\0"),
        (Op.UNWATCH, 0, b"/q\0t2\0"),
    ]
    assert len({p.req_id for p in received}) == 4


async def test_cancelling_the_whole_client_still_unwatches_at_once() -> None:
    # The reader must outlive the cancellation long enough to route
    # UNWATCH's reply; were it cancelled with the rest, the exit would wait
    # UNWATCH_TIMEOUT for a reply nobody reads.
    path, listener = await scripted_daemon()
    received: list[Packet] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(answer_ok, listener, received)
        started = trio.current_time()
        with trio.move_on_after(0.1) as scope:
            async with open_client(path) as xs, xs.watch("/p", "t") as events:
                await events.receive()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        assert trio.current_time() - started < UNWATCH_TIMEOUT / 2
    await listener.aclose()
    assert [p.op for p in received] == [Op.WATCH, Op.UNWATCH]
