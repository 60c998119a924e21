"""The byte streams the blocking client talks over (its transport): a Unix socket, or a
xenbus device.

Both are made without ``import socket``: that module converts every constant to
an enum, which costs a command-line tool ~2 ms of its start-up; ``_socket`` is
what it wraps.
"""

from __future__ import annotations

import _socket
import os


class DeviceStream:
    """A xenbus character device (``/dev/xen/xenbus`` in a guest) opened read-write.

    libxenstore falls back to it when there is no daemon socket; the kernel
    takes whole requests on write and hands back replies on read.
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def recv(self, bufsize: int, /) -> bytes:
        return os.read(self._fd, bufsize)

    def sendall(self, data: bytes, /) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    def close(self) -> None:
        os.close(self._fd)

    def fileno(self) -> int:
        return self._fd


class UnixStream:
    """A connected Unix stream socket, made with the socket module's C core.

    ``import socket`` costs a tool ~2 ms of its start-up (it converts every
    constant to an enum); ``_socket`` is what it wraps. Like a guest's ring
    (:mod:`xsref.guest`) it has a settable :attr:`timeout`.
    """

    def __init__(self, path: str, timeout: float | None) -> None:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        self._sock = sock

    def recv(self, bufsize: int, /) -> bytes:
        return self._sock.recv(bufsize)

    def sendall(self, data: bytes, /) -> None:
        self._sock.sendall(data)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    @property
    def timeout(self) -> float | None:
        """Seconds a receive or send may wait (None: for ever), as ``socket.settimeout``."""
        return self._sock.gettimeout()

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)
