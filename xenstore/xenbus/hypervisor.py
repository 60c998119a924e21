"""The two hypervisor services a split driver needs, played on a laptop.

On Xen, a frontend *grants* its backend access to a page of its memory (the
ring) and names it by a grant reference; the two ends signal each other through
an *event channel* named by a port. Here both live in a directory that every
process of the simulated host shares:

- a granted page is a file ``<dir>/grants/<domid>/<ref>`` of :data:`PAGE_SIZE`
  bytes, mapped (``mmap``) by both ends, so writes are seen at once;
- an event channel is a pair of datagram sockets ``<dir>/evtchn/<domid>/<port>``
  (the frontend's end) and ``...<port>.b`` (the backend's): a notification is a
  one-byte datagram to the other end, and notifications coalesce as on Xen.

This is the store's side of the story made tangible for teaching and tests, not
a hypervisor: pages are not protected and anyone with the directory can map them.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import socket

import trio

PAGE_SIZE = 4096


class Hypervisor:
    """Grant tables and event channels under ``directory``."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._refs = itertools.count(8)  # Linux's first grant refs are reserved too

    def _grants(self, domid: int) -> str:
        path = os.path.join(self.directory, "grants", str(domid))
        os.makedirs(path, exist_ok=True)
        return path

    def grant(self, domid: int) -> tuple[int, mmap.mmap]:
        """A fresh zeroed page of ``domid``'s, granted: (its grant ref, the page)."""
        while True:
            ref = next(self._refs)
            path = os.path.join(self._grants(domid), str(ref))
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                continue  # another process of this host took it
            try:
                os.ftruncate(fd, PAGE_SIZE)
                return ref, mmap.mmap(fd, PAGE_SIZE)
            finally:
                os.close(fd)

    def map_grant(self, domid: int, ref: int) -> mmap.mmap:
        """Map the page ``domid`` granted as ``ref`` (what a backend does with ring-ref)."""
        path = os.path.join(self._grants(domid), str(ref))
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise LookupError(f"domain {domid} granted no page {ref}") from None
        try:
            return mmap.mmap(fd, PAGE_SIZE)
        finally:
            os.close(fd)

    def end_grant(self, domid: int, ref: int) -> None:
        """Take back a grant (the frontend is done with the page)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._grants(domid), str(ref)))

    def _channel_path(self, domid: int, port: int, backend: bool) -> str:
        path = os.path.join(self.directory, "evtchn", str(domid))
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, f"{port}.b" if backend else str(port))

    def alloc_unbound(self, domid: int) -> EventChannel:
        """A new event channel of ``domid`` (the frontend), for its backend to bind."""
        for port in itertools.count(1):
            path = self._channel_path(domid, port, backend=False)
            try:
                sock = _bind(path)
            except FileExistsError:
                continue
            return EventChannel(port, sock, path, self._channel_path(domid, port, True))
        raise AssertionError("unreachable")

    def bind_interdomain(self, domid: int, port: int) -> EventChannel:
        """The backend's end of ``domid``'s channel ``port``."""
        front = self._channel_path(domid, port, backend=False)
        if not os.path.exists(front):
            raise LookupError(f"domain {domid} has no event channel {port}")
        path = self._channel_path(domid, port, backend=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # an earlier backend's end
        return EventChannel(port, _bind(path), path, front)


def _bind(path: str) -> socket.socket:
    if os.path.exists(path):
        raise FileExistsError(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind(path)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class EventChannel:
    """One end of an event channel: :meth:`notify` the other end, :meth:`wait` for it."""

    def __init__(self, port: int, sock: socket.socket, path: str, peer: str) -> None:
        self.port = port
        self._sock = sock
        self._path = path
        self._peer = peer
        self._woken: trio.Event | None = None

    def notify(self) -> None:
        """Signal the other end (lost if it is not bound: as on Xen, before it binds)."""
        with contextlib.suppress(BlockingIOError, FileNotFoundError, ConnectionRefusedError):
            self._sock.sendto(b"!", self._peer)

    async def wait(self) -> None:
        """Until the other end notifies; notifications that came meanwhile count as one.

        Several tasks may wait at once (a console's reader and writer): all wake.
        """
        if self._woken is not None:  # another task is at the socket already
            await self._woken.wait()
            return
        self._woken = trio.Event()
        try:
            await self._wait_socket()
        finally:
            self._woken.set()
            self._woken = None

    async def _wait_socket(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self._sock)
            try:
                self._sock.recv(64)
                break
            except BlockingIOError:
                continue
        with contextlib.suppress(BlockingIOError):
            while True:
                self._sock.recv(64)

    def close(self) -> None:
        trio.lowlevel.notify_closing(self._sock)
        self._sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)
