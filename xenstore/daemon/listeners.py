"""The sockets that accept: dom0's, and one per introduced domain (``--domain-dir``).

Each listening socket belongs to the task that accepts on it: only that task
closes it, when it is cancelled or fails, so a socket is never closed under a
task about to wait on it (RELEASE used to close a guest's listener before its
accept task first ran, and trio's wait then failed on descriptor -1 and took
the daemon down). RELEASE cancels the task and removes the socket file at once,
so the domain can be introduced again straight away; the task closes its socket
at its next checkpoint.

A socket file is removed only while it is still the one this daemon bound (same
device and inode): never a file that someone else put there since.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass

import trio

from xenstore.daemon.supervision import supervised
from xenstore.sockets import SUN_PATH_MAX

log = logging.getLogger("xenstore.daemon")

#: How long a pause after a failed accept (EMFILE and friends) lasts.
ACCEPT_RETRY = 0.05


class SocketInUse(OSError):
    """A live daemon answers on the socket path: it is not ours to replace."""


def answers(path: str) -> bool:
    """Whether something accepts connections on the Unix socket at ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return False  # a stale file: nobody listens
    except OSError as exc:
        # EAGAIN (its backlog is full), a timeout, EACCES: someone is there, or we
        # cannot tell; either way the file is not ours to remove.
        return exc.errno != errno.ECONNREFUSED
    finally:
        probe.close()
    return True


def bind_unix(path: str, mode: int) -> socket.socket:
    """A listening Unix socket at ``path``, created with ``mode``.

    A stale socket file there (nobody accepts on it) is replaced; a live one
    raises :class:`SocketInUse`, so a second daemon cannot silently take over the
    socket of a running one.
    """
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise ValueError(f"socket path is longer than {SUN_PATH_MAX} bytes: {path}")
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            if answers(path):
                raise SocketInUse(errno.EADDRINUSE, "a running daemon answers on it", path)
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # Create it with the final mode: no window in which others may connect.
        old_umask = os.umask(0o777 & ~mode)
        try:
            sock.bind(path)
        finally:
            os.umask(old_umask)
        os.chmod(path, mode)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def identity(path: str) -> tuple[int, int] | None:
    """The (device, inode) of the file at ``path``, or None if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def unlink_if_ours(path: str, ours: tuple[int, int] | None) -> None:
    """Remove the socket file at ``path`` if it is still the one we bound."""
    if ours is not None and identity(path) == ours:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def close_listener(sock: socket.socket) -> None:
    """Close a listening socket that trio may have been waiting on."""
    with contextlib.suppress(Exception):
        trio.lowlevel.notify_closing(sock)
    sock.close()


async def accept_loop(listener: socket.socket, accepted: Callable[[socket.socket], None]) -> None:
    """Accept connections on ``listener`` until cancelled, handing each to ``accepted``."""
    while True:
        await trio.lowlevel.wait_readable(listener)
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            continue
        except OSError as exc:  # EMFILE and friends: keep serving the others
            log.warning("accept on %s failed: %s", listener.getsockname(), exc)
            await trio.sleep(ACCEPT_RETRY)
            continue
        sock.setblocking(False)
        try:
            accepted(sock)
        except BaseException:
            sock.close()  # nobody else will: it must not leak
            raise


@dataclass(slots=True, eq=False)
class DomainSocket:
    """The listening socket of one introduced domain, and its accept task's scope."""

    domid: int
    path: str
    scope: trio.CancelScope
    #: The file we bound at ``path`` (device, inode): only that one is ever removed.
    ident: tuple[int, int] | None


class DomainSockets:
    """A socket per introduced domain in ``directory``: whoever connects to
    ``directory/<domid>`` is that domain.

    ``accepted(sock, domid)`` starts serving a connection; ``introduced(domid)``
    says whether the domain still exists (a failed listener is re-created only then).
    """

    def __init__(
        self,
        directory: str | None,
        mode: int,
        owner: tuple[int, int] | None,
        accepted: Callable[[socket.socket, int], None],
        introduced: Callable[[int], bool],
    ) -> None:
        self.directory = directory
        self.mode = mode
        self.owner = owner
        self._accepted = accepted
        self._introduced = introduced
        self.nursery: trio.Nursery | None = None
        self.open: dict[int, DomainSocket] = {}

    def _bind(self, domid: int) -> tuple[socket.socket, str]:
        assert self.directory is not None
        path = os.path.join(self.directory, str(domid))
        sock = bind_unix(path, self.mode)
        try:
            if self.owner is not None:
                os.chown(path, *self.owner)
        except BaseException:
            sock.close()
            raise
        return sock, path

    def listen(self, domid: int) -> None:
        """Open ``domid``'s socket now (its file exists when this returns)."""
        if self.directory is None or self.nursery is None or domid in self.open:
            return
        try:
            sock, path = self._bind(domid)
        except (OSError, ValueError) as exc:
            log.warning("domain %d: cannot listen: %s", domid, exc)
            return
        entry = DomainSocket(domid, path, trio.CancelScope(), identity(path))
        self.open[domid] = entry
        self.nursery.start_soon(self._serve, entry, sock)
        log.info("domain %d: listening on %s", domid, path)

    def unlisten(self, domid: int) -> None:
        """Close ``domid``'s socket: its file goes now, the socket with its task."""
        entry = self.open.pop(domid, None)
        if entry is None:
            return
        entry.scope.cancel()
        unlink_if_ours(entry.path, entry.ident)

    def close_all(self) -> None:
        for domid in list(self.open):
            self.unlisten(domid)

    def _wanted(self, entry: DomainSocket) -> bool:
        return self.open.get(entry.domid) is entry and self._introduced(entry.domid)

    async def _serve(self, entry: DomainSocket, first: socket.socket) -> None:
        """Accept on ``entry``'s socket until it is unlistened; a failure re-creates the
        socket while the domain is still introduced."""
        pending: socket.socket | None = first

        async def accept() -> None:
            nonlocal pending
            if pending is not None:
                sock, pending = pending, None
            else:  # started again after a failure: a fresh socket at the same path
                sock, _ = self._bind(entry.domid)  # the old one, closed, is stale
                entry.ident = identity(entry.path)
                log.warning("domain %d: listening again on %s", entry.domid, entry.path)
            try:
                await accept_loop(sock, self._on_accept(entry))
            finally:
                close_listener(sock)

        try:
            with entry.scope:
                await supervised(f"the socket of domain {entry.domid}", accept,
                                 again=lambda: self._wanted(entry))
        finally:
            if pending is not None:  # cancelled before it ever ran
                close_listener(pending)
            if self.open.get(entry.domid) is entry:  # gave up, not unlistened
                self.unlisten(entry.domid)

    def _on_accept(self, entry: DomainSocket) -> Callable[[socket.socket], None]:
        def accepted(sock: socket.socket) -> None:
            # A connection accepted in the moment between RELEASE and this task's
            # cancellation would belong to a domain that is gone.
            if entry.scope.cancel_called or not self._introduced(entry.domid):
                sock.close()
                return
            self._accepted(sock, entry.domid)

        return accepted
