"""How ``pyxl`` commands talk to ``pyxl host``: one JSON object a line, over a Unix socket.

A request is ``{"cmd": NAME, ...arguments}``; the answer ``{"ok": true, "result": ...}``
or ``{"ok": false, "error": MESSAGE}`` (the message xl would print). ``console``
is the one exception: after its answer the connection carries the console's bytes
both ways until either side closes it.

The host says where its socket is in the store, at :data:`HOST_NODE`, so that a
command needs nothing but ``XENSTORED_PATH`` to find it; a command started while
the host is still coming up waits for that node (a watch, bounded).

The client side is plain blocking sockets: commands start fast and need no trio.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

#: Where the host publishes its socket's path (under /tool, where daemons keep theirs).
HOST_NODE = "/tool/pyxl/host"
#: How long a command waits for a host that is coming up.
HOST_WAIT = 15.0
MAX_LINE = 1 << 20


class HostError(Exception):
    """The host refused a request; ``str`` is xl's message."""


class NoHost(Exception):
    """No host answers (none is running, or it did not come up in time)."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class HostClient:
    """A connection to a host's socket, for one or more requests."""

    def __init__(self, path: str, timeout: float | None = 120.0) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError as exc:
            self.sock.close()
            raise NoHost(f"no pyxl host answers at {path}: {exc.strerror}") from None
        self._buffer = b""

    def __enter__(self) -> HostClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def _line(self) -> bytes:
        while b"\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                raise NoHost("the pyxl host closed the connection")
            self._buffer += data
            if len(self._buffer) > MAX_LINE:
                raise NoHost("the pyxl host sent an oversized answer")
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def call(self, cmd: str, **args: Any) -> Any:
        """Send one request; its result, or :class:`HostError` with xl's message."""
        self.sock.sendall(encode({"cmd": cmd, **args}))
        answer = json.loads(self._line())
        if not answer.get("ok"):
            raise HostError(str(answer.get("error", "failed")))
        return answer.get("result")

    def leftover(self) -> bytes:
        """Bytes that came after the last answer (a console's first output)."""
        data, self._buffer = self._buffer, b""
        return data


def find_host(socket_path: str | None = None, wait: float = HOST_WAIT) -> str:
    """The host's socket path, read from the store at ``socket_path`` (default:
    $XENSTORED_PATH...), waiting up to ``wait`` seconds for a host coming up."""
    from xenstore import errors
    from xenstore.client import Client

    deadline = time.monotonic() + wait
    while True:  # the daemon itself may still be starting: no watch can tell that
        try:
            xs = Client(socket_path, timeout=wait)
            break
        except OSError as exc:
            if time.monotonic() > deadline:
                raise NoHost(f"cannot reach the XenStore daemon: {exc}") from None
            time.sleep(0.1)
    with xs:
        try:
            return xs.read(HOST_NODE).decode()
        except errors.ENOENT:
            pass
        xs.watch(HOST_NODE, "pyxl")
        xs.read_watch()  # the first event, at once
        try:
            while True:
                xs.read_watch()
                try:
                    return xs.read(HOST_NODE).decode()
                except errors.ENOENT:
                    continue
        except TimeoutError:
            raise NoHost(f"no pyxl host came up within {wait:g} s (start one with "
                         "`pyxl host --domain-dir DIR`, or `pyxl lab`)") from None
