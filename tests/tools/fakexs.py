"""A scripted stand-in for xenstored, to see exactly what a tool sends.

It records every request (op, transaction id, payload) and answers with what a
test's ``answer`` function returns, so a test can make a commit fail with
EAGAIN, make DIRECTORY answer E2BIG, or hang up, and then compare the
conversation with what Xen's C tools have (the goldens were taken from them).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
import threading
from collections.abc import Callable
from typing import NamedTuple

from xenstore.protocol.ops import Op

HEADER = struct.Struct("<IIII")


class Request(NamedTuple):
    op: Op
    tx: int
    payload: bytes


class Reply(NamedTuple):
    op: Op
    payload: bytes


#: None closes the connection instead of answering.
Answer = Callable[[Request], Reply | None]


def ok(request: Request, payload: bytes = b"OK\0") -> Reply:
    return Reply(request.op, payload)


def error(name: str) -> Reply:
    return Reply(Op.ERROR, name.encode() + b"\0")


class FakeXenstored:
    """Serve one client at a time on a fresh socket, in a thread."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[Request] = []
        self.directory = tempfile.mkdtemp(prefix="fakexs", dir="/tmp")
        self.path = os.path.join(self.directory, "socket")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.path)
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with conn:
                self._converse(conn)

    def _converse(self, conn: socket.socket) -> None:
        buf = b""
        while True:
            while len(buf) < HEADER.size or len(buf) < HEADER.size + HEADER.unpack_from(buf)[3]:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
            op, req_id, tx, length = HEADER.unpack_from(buf)
            payload = buf[HEADER.size : HEADER.size + length]
            buf = buf[HEADER.size + length :]
            request = Request(Op(op), tx, payload)
            self.requests.append(request)
            reply = self.answer(request)
            if reply is None:
                return
            conn.sendall(HEADER.pack(reply.op, req_id, tx, len(reply.payload)) + reply.payload)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._listener.close()
        self._thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.rmdir(self.directory)
