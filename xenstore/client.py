"""A blocking XenStore client: what the command-line tools and scripts use.

It imports neither trio nor construct, so that a tool starts in a few
milliseconds. Errors are raised as the typed exceptions of
:mod:`xenstore.errors`, naming the request and its path
(``write '/bad path': EINVAL (invalid argument)``), and a socket that cannot be
reached as :class:`xenstore.errors.ConnectionError`, naming it and what to set.
Watch events that arrive while a reply is awaited are queued, never lost.
"""

from __future__ import annotations

import time
from collections import deque

from xenstore import errors
from xenstore.protocol import requests
from xenstore.protocol.codec import Framer, Packet, encode_parts, join
from xenstore.protocol.ops import Op
from xenstore.protocol.requests import WatchEvent
from xenstore.retry import ATTEMPTS, backoff
from xenstore.sockets import connect_hint, default_socket_path
from xenstore.transport import DeviceStream, UnixStream

# typing, contextlib and collections.abc are for the type checker only: importing
# them would cost every tool a third of its start-up (tests/protocol/test_imports.py).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Protocol, TypeVar

    T = TypeVar("T")

    class _Stream(Protocol):
        """What the client needs of its connection: a socket, or a xenbus device."""

        def recv(self, bufsize: int, /) -> bytes: ...

        def sendall(self, data: bytes, /) -> None: ...

        def close(self) -> None: ...


class Client:
    """One connection to a XenStore daemon over its Unix socket.

    Every method takes an optional ``tx`` (a transaction id from
    :meth:`transaction_start`; 0 means none). Paths are ``str``, values ``bytes``.
    With ``device=True``, ``path`` is a xenbus device file rather than a socket
    (``timeout`` is then ignored). With ``stream``, the client talks over that
    open connection (anything with ``recv``, ``sendall`` and ``close``, such as
    a guest's ring from :mod:`xenstore.reference.guest`), ``path`` only names it
    and ``timeout`` is ignored; :meth:`close` closes the stream.
    """

    def __init__(
        self,
        path: str | None = None,
        timeout: float | None = None,
        *,
        device: bool = False,
        stream: _Stream | None = None,
    ) -> None:
        given = path
        if path is None:
            path = "" if stream is not None else default_socket_path()
        self.path = path
        self._sock: _Stream
        if stream is not None:
            self._sock = stream
        else:
            try:
                self._sock = DeviceStream(path) if device else UnixStream(path, timeout)
            except OSError as exc:
                raise errors.connection_error(exc, path, connect_hint(given)) from None
        self._framer = Framer()
        self._pending: deque[Packet] = deque()
        self._events: deque[WatchEvent] = deque()
        self._next_req_id = 1
        self._next_token = 0

    # -- connection -------------------------------------------------------

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _receive(self) -> None:
        data = self._sock.recv(65536)
        if not data:
            raise ConnectionResetError("the daemon closed the connection")
        for packet in self._framer.feed(data):
            if packet.op == Op.WATCH_EVENT:
                event = requests.watch_event_of(packet.payload)
                if event is not None:
                    self._events.append(event)
            else:
                self._pending.append(packet)

    def request(self, op: Op, payload: bytes, tx: int = 0) -> bytes:
        """Send one request and return its reply payload, or raise its error.

        An error names the request and its path (:func:`requests.located`).
        """
        requests.check_size(op, payload, tx)
        req_id = self._next_req_id
        self._next_req_id = (req_id + 1) & 0xFFFFFFFF
        try:
            self._sock.sendall(encode_parts(op, req_id, tx, payload))
            while True:
                while self._pending:
                    reply = self._pending.popleft()
                    if reply.req_id != req_id:
                        continue  # a reply to a request abandoned by an earlier error
                    if reply.op == Op.ERROR:
                        raise requests.error_of(reply.payload, op, payload, tx)
                    return reply.payload
                self._receive()
        except OSError as exc:  # the daemon went away, a timeout...
            raise requests.lost(exc, op, payload, tx, self.path) from None

    # -- nodes ------------------------------------------------------------

    def read(self, path: str, tx: int = 0) -> bytes:
        return self.request(Op.READ, join(path), tx)

    def write(self, path: str, value: bytes | str, tx: int = 0) -> None:
        self.request(Op.WRITE, requests.write_payload(path, value), tx)

    def mkdir(self, path: str, tx: int = 0) -> None:
        self.request(Op.MKDIR, join(path), tx)

    def rm(self, path: str, tx: int = 0) -> None:
        self.request(Op.RM, join(path), tx)

    def exists(self, path: str, tx: int = 0) -> bool:
        try:
            self.read(path, tx)
        except errors.ENOENT:
            return False
        return True

    def directory(self, path: str | bytes, tx: int = 0) -> list[str]:
        """The children's names; falls back to DIRECTORY_PART on E2BIG, as libxenstore."""
        try:
            reply = self.request(Op.DIRECTORY, join(path), tx)
        except errors.E2BIG:
            return self.directory_part(path, tx)
        return requests.listing_names(reply)

    def directory_part(self, path: str | bytes, tx: int = 0) -> list[str]:
        """List a directory of any size in parts, restarting if it changes meanwhile."""
        parts = requests.DirectoryParts(path)
        while True:
            try:
                reply = self.request(Op.DIRECTORY_PART, parts.payload(), tx)
            except errors.ENOSYS:
                raise parts.unsupported() from None
            names = parts.add(reply)
            if names is not None:
                return names

    def get_perms(self, path: str, tx: int = 0) -> list[str]:
        return requests.listing_names(self.request(Op.GET_PERMS, join(path), tx))

    def set_perms(self, path: str, perms: Iterable[str], tx: int = 0) -> None:
        self.request(Op.SET_PERMS, join(path, *perms), tx)

    # -- transactions, domains, control ------------------------------------

    def transaction_start(self) -> int:
        return requests.tx_id_of(self.request(Op.TRANSACTION_START, b"\0"))

    def transaction_end(self, tx: int, commit: bool = True) -> None:
        self.request(Op.TRANSACTION_END, requests.transaction_end_payload(commit), tx)

    def transaction(self) -> ClientTransaction:
        """``with xs.transaction() as t: t.write(...)``: commits on leaving the block.

        An exception inside the block aborts the transaction instead. The
        commit raises :class:`~xenstore.errors.EAGAIN` when another client
        changed what the transaction read: see :meth:`retry`.
        """
        return ClientTransaction(self, self.transaction_start())

    def retry(
        self,
        work: Callable[[ClientTransaction], T],
        attempts: int = ATTEMPTS,
        *,
        sleep: Callable[[float], object] = time.sleep,
    ) -> T:
        """Run ``work(t)`` in a transaction until it commits; EAGAIN after ``attempts``.

        ``work`` may run several times, so it should only act through ``t``.
        """
        delays = backoff(attempts)
        while True:
            try:
                with self.transaction() as t:
                    result = work(t)
                return result
            except errors.EAGAIN:
                delay = next(delays, None)
                if delay is None:
                    raise
                sleep(delay)

    def get_domain_path(self, domid: int) -> str:
        """The home path of a domain, ``/local/domain/<domid>``."""
        return requests.domain_path_of(
            self.request(Op.GET_DOMAIN_PATH, requests.domid_payload(domid)))

    def control(self, *args: str | bytes) -> bytes:
        return self.request(Op.CONTROL, join(*args))

    # -- domains (the toolstack's requests; pyxs's names) ---------------------

    def introduce_domain(
        self, domid: int, mfn: int = requests.STORE_GFN, eventchn: int = requests.STORE_PORT
    ) -> None:
        """INTRODUCE: the daemon serves ``domid`` from now on (on its guest socket
        ``DIR/<domid>`` with ``pyxenstored --domain-dir DIR``) and fires
        ``@introduceDomain``. ``mfn`` and ``eventchn`` are its ring's frame and
        event channel, which a daemon without Xen ignores."""
        self.request(Op.INTRODUCE, requests.introduce_payload(domid, mfn, eventchn))

    def release_domain(self, domid: int) -> None:
        """RELEASE: the domain is gone; its connections close and ``@releaseDomain`` fires."""
        self.request(Op.RELEASE, requests.domid_payload(domid))

    def is_domain_introduced(self, domid: int) -> bool:
        """Whether ``domid`` is introduced (and not released since)."""
        reply = self.request(Op.IS_DOMAIN_INTRODUCED, requests.domid_payload(domid))
        return requests.introduced_of(reply)

    def resume_domain(self, domid: int) -> None:
        """RESUME: clear the domain's shutdown flag (after a suspend was cancelled)."""
        self.request(Op.RESUME, requests.domid_payload(domid))

    def set_target(self, domid: int, target: int) -> None:
        """SET_TARGET: ``domid`` (a device model, say) gets ``target``'s rights."""
        self.request(Op.SET_TARGET, requests.set_target_payload(domid, target))

    # -- watches ------------------------------------------------------------

    def watch(self, wpath: str, token: str, depth: int | None = None) -> None:
        self.request(Op.WATCH, requests.watch_payload(wpath, token, depth))

    def unwatch(self, wpath: str, token: str) -> None:
        self.request(Op.UNWATCH, requests.unwatch_payload(wpath, token))

    def read_watch(self, timeout: float | None = None) -> WatchEvent:
        """Block until a watch event arrives, of any watch; return it (``(epath, token)``).

        With ``timeout``, raise :class:`TimeoutError` when none came within that
        many seconds.
        """
        event = self._next_event(None, timeout)
        if event is None:
            raise TimeoutError(f"no watch event within {timeout} s")
        return event

    def watches(
        self,
        wpath: str,
        timeout: float | None = None,
        *,
        token: str | None = None,
        depth: int | None = None,
    ) -> Iterator[WatchEvent]:
        """Watch ``wpath`` and iterate over its events::

            for event in xs.watches("/local/domain/5/device", timeout=10):
                print(event.path)

        The watch is registered at once (errors are raised here); the first
        event is ``wpath`` itself. The iteration ends when no event came for
        ``timeout`` seconds (None: never), and the watch is removed then, or
        when the loop is left (``break``, an exception) or the iterator closed.
        ``token=None`` picks one unique on this client. Other watches' events
        stay queued for :meth:`read_watch`.
        """
        if token is None:
            self._next_token += 1
            token = f"client:{self._next_token}"
        self.watch(wpath, token, depth)
        return self._follow(wpath, token, timeout)

    def _follow(self, wpath: str, token: str, timeout: float | None) -> Iterator[WatchEvent]:
        try:
            while (event := self._next_event(token, timeout)) is not None:
                yield event
        finally:
            try:  # noqa: SIM105 (contextlib would cost the tools' start-up)
                self.unwatch(wpath, token)
            except (errors.XenStoreError, OSError):
                pass  # a lost connection lost the watch too

    def _next_event(self, token: str | None, timeout: float | None) -> WatchEvent | None:
        """The first queued event (of ``token`` if given), waiting at most ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for index, event in enumerate(self._events):
                if token is None or event.token == token:
                    del self._events[index]
                    return event
            if deadline is not None and not self._readable(deadline - time.monotonic()):
                return None
            self._receive()

    def _readable(self, seconds: float) -> bool:
        """Whether the connection has bytes to read within ``seconds`` (if it can tell)."""
        fileno = getattr(self._sock, "fileno", None)
        if fileno is None:
            return True  # a stream that cannot be polled: wait as long as it takes
        import select  # only here: tools never wait with a timeout

        return bool(select.select([fileno()], [], [], max(seconds, 0))[0])


class ClientTransaction:
    """A :class:`Client`'s node operations bound to one open transaction.

    As a context manager (:meth:`Client.transaction`) it commits when the block
    ends, and aborts when it ends with an exception (which goes on).
    """

    __slots__ = ("client", "tx_id")

    def __init__(self, client: Client, tx_id: int) -> None:
        self.client = client
        self.tx_id = tx_id

    def __enter__(self) -> ClientTransaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.client.transaction_end(self.tx_id, commit=True)
            return
        try:  # noqa: SIM105 (contextlib would cost the tools' start-up)
            self.client.transaction_end(self.tx_id, commit=False)
        except (errors.XenStoreError, OSError):
            pass  # the block's own exception says more

    def read(self, path: str) -> bytes:
        return self.client.read(path, self.tx_id)

    def write(self, path: str, value: bytes | str) -> None:
        self.client.write(path, value, self.tx_id)

    def mkdir(self, path: str) -> None:
        self.client.mkdir(path, self.tx_id)

    def rm(self, path: str) -> None:
        self.client.rm(path, self.tx_id)

    def exists(self, path: str) -> bool:
        return self.client.exists(path, self.tx_id)

    def directory(self, path: str) -> list[str]:
        return self.client.directory(path, self.tx_id)

    def get_perms(self, path: str) -> list[str]:
        return self.client.get_perms(path, self.tx_id)

    def set_perms(self, path: str, perms: Iterable[str]) -> None:
        self.client.set_perms(path, perms, self.tx_id)
