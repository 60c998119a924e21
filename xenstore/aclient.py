"""The trio XenStore client: many tasks share one connection, watches are channels.

::

    async with open_client() as xs:              # $XENSTORED_PATH, as libxenstore
        await xs.write("/vm/1/name", "guest1")
        async with xs.watch("/vm") as events:    # the first event is /vm itself
            async for event in events:
                print(event.path, event.token)

Requests are multiplexed over one connection by ``req_id``: any number of
tasks may call the methods of one :class:`AsyncClient` at once, and a reader
task (run in :func:`open_client`'s nursery) hands each reply to the task that
waits for it and each WATCH_EVENT to its watch. The methods mirror the blocking
:class:`xenstore.client.Client` (same names, arguments and results, ``tx`` being
a transaction id, 0 for none) and build and parse payloads with the same code,
:mod:`xenstore.protocol.requests`.

Errors:

* an ERROR reply raises its typed exception from :mod:`xenstore.errors`
  (``errors.ENOENT`` ...), which names the request and its path
  (``read '/vm/1/name': ENOENT (no such file or directory)``);
* a socket that cannot be reached raises :class:`xenstore.errors.ConnectionError`,
  naming it;
* when the daemon closes the connection, every request waiting for its reply
  and every later request raises :class:`ConnectionResetError` (as the blocking
  client does), and watch iterators raise it once they have yielded the events
  that arrived before;
* a request made after :func:`open_client` has exited raises
  :class:`trio.ClosedResourceError`.

Cancellation never desynchronises the stream: a request is either written
whole or not at all (the write is shielded), and a request cancelled while it
waits for its reply abandons it (the reply is dropped when it arrives; a
cancelled ``transaction_start`` may thus leave a transaction open on the
daemon until the connection closes).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

import trio

from xenstore import errors
from xenstore.atransaction import AsyncTransaction
from xenstore.awatches import Registration, WatchEvents, WatchTable
from xenstore.protocol import requests
from xenstore.protocol.codec import Framer, Packet, encode_parts, join
from xenstore.protocol.ops import Op
from xenstore.protocol.requests import WatchEvent
from xenstore.retry import ATTEMPTS, backoff
from xenstore.sockets import connect_hint, default_socket_path

__all__ = ["AsyncClient", "AsyncTransaction", "WatchEvent", "WatchEvents", "open_client"]

T = TypeVar("T")

#: How much one read of the socket asks for; replies are at most 4112 bytes.
RECEIVE_SIZE = 65536
#: Seconds a watch's exit waits for UNWATCH's reply, even when cancelled.
UNWATCH_TIMEOUT = 5.0


class _State(enum.Enum):
    OPEN = "open"
    #: The daemon closed the connection (or broke the framing).
    LOST = "lost"
    #: open_client() exited.
    CLOSED = "closed"


class _Waiter:
    """A request waiting for its reply; ``reply`` stays None if the connection ends."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.reply: Packet | None = None


class AsyncClient:
    """One connection to a XenStore daemon, shared by any number of trio tasks.

    Make one with :func:`open_client`, which also runs the task that reads the
    replies. Paths are ``str``, values ``bytes`` (``str`` values are written as
    UTF-8), ``tx`` is a transaction id from :meth:`transaction_start` (0: none).
    """

    def __init__(self, stream: trio.abc.Stream, path: str = "") -> None:
        self._stream = stream
        #: The daemon's socket, for messages.
        self.path = path
        # trio streams refuse concurrent send_all calls; the lock also keeps
        # each request's bytes contiguous on the wire.
        self._send_lock = trio.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._watches = WatchTable()
        self._next_req_id = 1
        self._next_token = 0
        self._state = _State.OPEN
        # The reader is shielded so that it keeps routing replies while a
        # cancelled task's shielded UNWATCH waits; close() cancels it.
        self._reader_scope = trio.CancelScope(shield=True)

    # -- the connection -----------------------------------------------------

    async def run_reader(self) -> None:
        """Route replies and events until the connection ends or :meth:`close` is called.

        :func:`open_client` runs it in its nursery; it returns (never raises)
        when the daemon closes the connection, failing what still waits.
        """
        framer = Framer()
        with self._reader_scope:
            try:
                while True:
                    data = await self._stream.receive_some(RECEIVE_SIZE)
                    if not data:
                        break
                    # bytes(): no copy for the bytes a socket stream returns.
                    for packet in framer.feed(bytes(data)):
                        self._route(packet)
            except (trio.BrokenResourceError, trio.ClosedResourceError, errors.ProtocolError):
                # A reset, our own close, or a stream that cannot be resynchronised:
                # the connection is over in every case.
                pass
            finally:
                self._end()

    def close(self) -> None:
        """Stop the reader: later requests raise :class:`trio.ClosedResourceError`.

        :func:`open_client` calls it on exit and then closes the socket.
        """
        if self._state is _State.OPEN:
            self._state = _State.CLOSED
        self._reader_scope.cancel()

    def _end(self) -> None:
        """The connection is over: wake every waiting request and end every watch."""
        if self._state is _State.OPEN:
            self._state = _State.LOST
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters.values():
            waiter.done.set()  # reply None: the request raises _connection_error()
        self._watches.close_all()

    def _connection_error(self) -> Exception:
        if self._state is _State.CLOSED:
            return trio.ClosedResourceError("the XenStore client is closed")
        where = f" at {self.path!r}" if self.path else ""
        return ConnectionResetError(f"the XenStore daemon{where} closed the connection")

    def _route(self, packet: Packet) -> None:
        if packet.op == Op.WATCH_EVENT:
            self._watches.deliver(packet.payload)
            return
        waiter = self._waiters.pop(packet.req_id, None)
        if waiter is None:
            return  # the reply to a request abandoned by cancellation
        waiter.reply = packet
        waiter.done.set()

    def _new_req_id(self) -> int:
        req_id = self._next_req_id
        # After 2**32 requests the ids wrap: skip those still waiting, and 0,
        # the req_id of watch events.
        while req_id == 0 or req_id in self._waiters:
            req_id = (req_id + 1) & 0xFFFFFFFF
        self._next_req_id = (req_id + 1) & 0xFFFFFFFF
        return req_id

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            # Cancelled up to here, nothing was sent; from here on the whole
            # request goes out, or a half-written one would desynchronise the stream.
            if self._state is not _State.OPEN:
                raise self._connection_error()
            with trio.CancelScope(shield=True):
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    raise self._connection_error() from exc

    async def request(self, op: Op, payload: bytes, tx: int = 0) -> bytes:
        """Send one request and return its reply payload, or raise its error."""
        requests.check_size(op, payload, tx)
        if self._state is not _State.OPEN:
            raise self._connection_error()
        req_id = self._new_req_id()
        waiter = _Waiter()
        self._waiters[req_id] = waiter
        try:
            await self._send(encode_parts(op, req_id, tx, payload))
            await waiter.done.wait()
        finally:
            # Cancelled while waiting: the request is abandoned and the reader
            # will drop its reply.
            self._waiters.pop(req_id, None)
        reply = waiter.reply
        if reply is None:
            raise self._connection_error()
        if reply.op == Op.ERROR:
            raise requests.error_of(reply.payload, op, payload, tx)
        return reply.payload

    # -- nodes ----------------------------------------------------------------

    async def read(self, path: str, tx: int = 0) -> bytes:
        """The value of a node."""
        return await self.request(Op.READ, join(path), tx)

    async def write(self, path: str, value: bytes | str, tx: int = 0) -> None:
        """Set a node's value, creating it and any missing ancestors."""
        await self.request(Op.WRITE, requests.write_payload(path, value), tx)

    async def mkdir(self, path: str, tx: int = 0) -> None:
        """Create a node with an empty value if it does not exist."""
        await self.request(Op.MKDIR, join(path), tx)

    async def rm(self, path: str, tx: int = 0) -> None:
        """Remove a node and everything below it."""
        await self.request(Op.RM, join(path), tx)

    async def exists(self, path: str, tx: int = 0) -> bool:
        """Whether the node exists (other errors, e.g. EACCES, are raised)."""
        try:
            await self.read(path, tx)
        except errors.ENOENT:
            return False
        return True

    async def directory(self, path: str | bytes, tx: int = 0) -> list[str]:
        """The children's names; falls back to DIRECTORY_PART on E2BIG, as libxenstore."""
        try:
            reply = await self.request(Op.DIRECTORY, join(path), tx)
        except errors.E2BIG:
            return await self.directory_part(path, tx)
        return requests.listing_names(reply)

    async def directory_part(self, path: str | bytes, tx: int = 0) -> list[str]:
        """List a directory of any size in parts, restarting if it changes meanwhile."""
        parts = requests.DirectoryParts(path)
        while True:
            try:
                reply = await self.request(Op.DIRECTORY_PART, parts.payload(), tx)
            except errors.ENOSYS:
                raise parts.unsupported() from None
            names = parts.add(reply)
            if names is not None:
                return names

    async def get_perms(self, path: str, tx: int = 0) -> list[str]:
        """A node's permissions, e.g. ``["n0", "r5"]``: owner and default first."""
        return requests.listing_names(await self.request(Op.GET_PERMS, join(path), tx))

    async def set_perms(self, path: str, perms: Iterable[str], tx: int = 0) -> None:
        """Replace a node's permissions (``"n0"``, ``"r5"``, ... owner first)."""
        await self.request(Op.SET_PERMS, join(path, *perms), tx)

    # -- transactions, domains, control -----------------------------------------

    async def transaction_start(self) -> int:
        """Open a transaction; pass its id as ``tx`` to the node operations."""
        return requests.tx_id_of(await self.request(Op.TRANSACTION_START, b"\0"))

    async def transaction_end(self, tx: int, commit: bool = True) -> None:
        """Commit (or abort) a transaction; :class:`errors.EAGAIN` means retry it."""
        await self.request(Op.TRANSACTION_END, requests.transaction_end_payload(commit), tx)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncTransaction]:
        """``async with xs.transaction() as t: await t.write(...)``: commits on exit.

        An exception (or cancellation) inside the block aborts the transaction
        instead. The commit raises :class:`errors.EAGAIN` when another client
        changed what the transaction read: see :meth:`retry`.
        """
        t = AsyncTransaction(self, await self.transaction_start())
        try:
            yield t
        except BaseException:
            with trio.CancelScope(shield=True), contextlib.suppress(
                errors.XenStoreError, OSError, trio.ClosedResourceError
            ):
                await self.transaction_end(t.tx_id, commit=False)
            raise
        await self.transaction_end(t.tx_id, commit=True)

    async def retry(
        self,
        work: Callable[[AsyncTransaction], Awaitable[T]],
        attempts: int = ATTEMPTS,
    ) -> T:
        """Run ``await work(t)`` in a transaction until it commits; EAGAIN after ``attempts``.

        Between attempts it sleeps a capped, jittered, growing delay
        (:func:`xenstore.retry.backoff`). ``work`` may run several times, so it
        should only act through ``t``.
        """
        delays = backoff(attempts)
        while True:
            try:
                async with self.transaction() as t:
                    result = await work(t)
                return result
            except errors.EAGAIN:
                delay = next(delays, None)
                if delay is None:
                    raise
                await trio.sleep(delay)

    async def get_domain_path(self, domid: int) -> str:
        """The home path of a domain, ``/local/domain/<domid>``."""
        return requests.domain_path_of(
            await self.request(Op.GET_DOMAIN_PATH, requests.domid_payload(domid)))

    async def control(self, *args: str | bytes) -> bytes:
        """A CONTROL request (``control("help")``) and its raw reply."""
        return await self.request(Op.CONTROL, join(*args))

    # -- domains (the toolstack's requests; pyxs's names) ---------------------------

    async def introduce_domain(
        self, domid: int, mfn: int = requests.STORE_GFN, eventchn: int = requests.STORE_PORT
    ) -> None:
        """INTRODUCE: the daemon serves ``domid`` from now on (see
        :meth:`xenstore.client.Client.introduce_domain`)."""
        await self.request(Op.INTRODUCE, requests.introduce_payload(domid, mfn, eventchn))

    async def release_domain(self, domid: int) -> None:
        """RELEASE: the domain is gone; its connections close and ``@releaseDomain`` fires."""
        await self.request(Op.RELEASE, requests.domid_payload(domid))

    async def is_domain_introduced(self, domid: int) -> bool:
        """Whether ``domid`` is introduced (and not released since)."""
        reply = await self.request(Op.IS_DOMAIN_INTRODUCED, requests.domid_payload(domid))
        return requests.introduced_of(reply)

    async def resume_domain(self, domid: int) -> None:
        """RESUME: clear the domain's shutdown flag."""
        await self.request(Op.RESUME, requests.domid_payload(domid))

    async def set_target(self, domid: int, target: int) -> None:
        """SET_TARGET: ``domid`` (a device model, say) gets ``target``'s rights."""
        await self.request(Op.SET_TARGET, requests.set_target_payload(domid, target))

    # -- watches ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self, wpath: str, token: str | None = None, depth: int | None = None
    ) -> AsyncIterator[WatchEvents]:
        """Watch ``wpath`` (and below it, to ``depth`` levels if given) while inside.

        ``token=None`` picks a token unique on this connection. The daemon's
        first event (``wpath`` itself) is the first one yielded. Events are
        buffered without bound, so none is lost however slowly they are read.
        On exit the watch is removed: UNWATCH, sent even when cancelled, its
        reply awaited for at most :data:`UNWATCH_TIMEOUT` seconds.
        """
        if token is None:
            self._next_token += 1
            token = f"aclient:{self._next_token}"
        # Registered before WATCH is sent: the first event follows the reply at once.
        watch, receive = self._watches.register(wpath, token)
        try:
            try:
                await self.request(Op.WATCH, requests.watch_payload(wpath, token, depth))
            except errors.XenStoreError:
                raise  # refused (EINVAL, EEXIST...): nothing to undo on the daemon
            except BaseException:
                # Cancelled (or the connection lost) perhaps after WATCH was
                # sent: make sure the daemon forgets it.
                await self._unwatch(watch)
                raise
            watch.active = True
            try:
                yield WatchEvents(wpath, token, receive, self._lost)
            finally:
                await self._unwatch(watch)
        finally:
            self._watches.forget(watch)
            watch.send.close()
            receive.close()

    def _lost(self) -> Exception | None:
        """Why the watches ended, if the daemon closed the connection."""
        return self._connection_error() if self._state is _State.LOST else None

    async def _unwatch(self, watch: Registration) -> None:
        self._watches.forget(watch)
        if self._watches.held_elsewhere(watch):
            # Another of ours holds the same (wpath, token) on the daemon, and
            # this one's WATCH got (or would have got) EEXIST: leave it be.
            return
        # Shielded, so that leaving a cancelled scope still unwatches, but
        # bounded: a daemon that stopped answering must not hang the caller's
        # cancellation (the reader drops the events of a forgotten watch).
        # ENOENT: the WATCH never reached the daemon. A closed connection has
        # dropped the watch with it.
        with (
            trio.CancelScope(deadline=trio.current_time() + UNWATCH_TIMEOUT, shield=True),
            contextlib.suppress(errors.ENOENT, ConnectionResetError, trio.ClosedResourceError),
        ):
            await self.request(Op.UNWATCH, requests.unwatch_payload(watch.wpath, watch.token))


@contextlib.asynccontextmanager
async def open_client(path: str | None = None) -> AsyncIterator[AsyncClient]:
    """Connect to the daemon's Unix socket; the client lives inside the ``async with``.

    ``path`` defaults to :func:`xenstore.sockets.default_socket_path`
    (``$XENSTORED_PATH``, ...). A connection failure raises
    :class:`xenstore.errors.ConnectionError` (an :class:`OSError`, naming the socket).
    """
    socket_path = path if path is not None else default_socket_path()
    try:
        stream = await trio.open_unix_socket(socket_path)
    except OSError as exc:
        raise errors.connection_error(exc, socket_path, connect_hint(path)) from None
    async with stream:
        client = AsyncClient(stream, socket_path)
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.run_reader)
            try:
                yield client
            except BaseException as exc:
                # Re-raised below, outside the nursery, so that the caller's
                # exception (ENOENT, Cancelled...) arrives as itself rather
                # than wrapped in an ExceptionGroup by the nursery.
                body_error = exc
            finally:
                client.close()
        if body_error is not None:
            raise body_error
