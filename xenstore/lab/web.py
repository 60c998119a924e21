"""The live page of a pyxl host: its domains, the store as a tree, and who told whom.

A trio HTTP server on 127.0.0.1 (stdlib and trio only; the page is plain
HTML, CSS and JavaScript shipped in ``static/``, no build step):

- ``GET /``: the page; ``GET /static/<file>``: its script and style;
- ``GET /api/snapshot``: the store as dom0 reads it (every node's value,
  permissions and owner), the domains and the latest monitor lines, as JSON;
- ``GET /events``: a Server-Sent Events stream (``text/event-stream``): a
  ``snapshot``, then ``line`` (each monitor line: a change and the watch
  events it caused), ``nodes`` (what changed in the tree), ``domains`` and
  ``status`` (see :mod:`xenstore.lab.webfeed`).

Run it beside a daemon started with ``--monitor``::

    pyxenstored --domain-dir run --monitor run/monitor &
    python -m xenstore.lab.web --monitor run/monitor [--port N]   # XENSTORED_PATH

or from a host, with :func:`serve_page` and the host's own domains provider.
"""

from __future__ import annotations

import argparse
import importlib.resources
import json
import logging
import sys
from collections.abc import Sequence
from typing import NamedTuple

import trio

from xenstore.daemon.supervision import supervised
from xenstore.lab.webfeed import DomainsProvider, Feed
from xenstore.sockets import default_socket_path

log = logging.getLogger("xenstore.lab.web")

#: Only this machine may look: the store holds every guest's configuration.
HOST = "127.0.0.1"
#: Host header names a page on this machine may use; any other is refused, so that a
#: web site cannot reach the page through a name it points at 127.0.0.1 (DNS rebinding).
LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")
HEAD_MAX = 16 * 1024
HEAD_TIMEOUT = 10.0
#: A comment this often keeps an idle event stream open, and finds closed ones.
KEEPALIVE = 15.0
STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


class Request(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]


def parse_head(head: bytes) -> Request | None:
    """The request line and headers; None when malformed."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return None
    if not version.startswith("HTTP/1."):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Request(method, target.split("?", 1)[0], headers)


def local_host(host: str | None) -> bool:
    if not host:
        return False
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name in LOCAL_NAMES


def response(status: str, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
             ) -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
            "X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n").encode() + body


def static_file(name: str) -> tuple[bytes, str] | None:
    """A file of the page (by plain name only: nothing outside ``static/``)."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        return None
    resource = importlib.resources.files("xenstore.lab").joinpath("static", name)
    try:
        return resource.read_bytes(), STATIC_TYPES[suffix]
    except (FileNotFoundError, IsADirectoryError):
        return None


async def read_head(stream: trio.SocketStream) -> bytes | None:
    data = b""
    with trio.move_on_after(HEAD_TIMEOUT):
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk or len(data) + len(chunk) > HEAD_MAX:
                return None
            data += chunk
        return data.split(b"\r\n\r\n", 1)[0]
    return None


class WebServer:
    """Serves the page, the snapshot and the event stream of one :class:`Feed`."""

    def __init__(self, feed: Feed, port: int = 0) -> None:
        self.feed = feed
        self.port = port
        self.url = ""

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
                    ) -> None:
        """Listen on 127.0.0.1 until cancelled; ``task_status.started(url)``."""
        listeners: list[trio.SocketListener] | None = await trio.open_tcp_listeners(
            self.port, host=HOST)
        assert listeners
        self.port = listeners[0].socket.getsockname()[1]
        self.url = f"http://{HOST}:{self.port}/"
        log.info("the host's page: %s", self.url)
        task_status.started(self.url)

        async def accept() -> None:
            nonlocal listeners
            if listeners is None:  # started again after a failure: the same port
                listeners = await trio.open_tcp_listeners(self.port, host=HOST)
            try:
                await trio.serve_listeners(self._connection, listeners)
            finally:
                for listener in listeners:
                    listener.socket.close()
                listeners = None

        await supervised("the web server's accept loop", accept)

    async def _connection(self, stream: trio.SocketStream) -> None:
        """One HTTP request; whatever fails costs this connection alone."""
        try:
            await self._answer(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError):
            pass  # the browser went away
        except Exception:
            log.exception("internal error answering a request of the page")
        finally:
            stream.socket.close()

    async def _answer(self, stream: trio.SocketStream) -> None:
        head = await read_head(stream)
        request = parse_head(head) if head is not None else None
        if request is None:
            await stream.send_all(response("400 Bad Request", b"bad request\n"))
            return
        if not local_host(request.headers.get("host")):
            await stream.send_all(response("403 Forbidden", b"only for this machine\n"))
            return
        if request.method not in ("GET", "HEAD"):
            await stream.send_all(response("405 Method Not Allowed", b"GET only\n"))
            return
        path = request.path
        if path == "/events":
            await self._events(stream)
            return
        if path == "/api/snapshot":
            body = json.dumps(self.feed.snapshot()).encode()
            reply = response("200 OK", body, "application/json")
        elif path in ("/", "/index.html") or path.startswith("/static/"):
            found = static_file("index.html" if not path.startswith("/static/")
                                else path[len("/static/"):])
            reply = (response("200 OK", *found) if found
                     else response("404 Not Found", b"no such file\n"))
        elif path == "/favicon.ico":
            reply = response("204 No Content")
        else:
            reply = response("404 Not Found", b"no such page\n")
        if request.method == "HEAD":
            reply = reply.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        await stream.send_all(reply)

    async def _events(self, stream: trio.SocketStream) -> None:
        joined = self.feed.subscribe()
        if joined is None:
            await stream.send_all(response("503 Service Unavailable", b"too many pages open\n"))
            return
        snapshot, events = joined
        async with events:
            await stream.send_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
                b"retry: 1000\n\n" + snapshot)
            while True:
                frame = b": keep-alive\n\n"
                with trio.move_on_after(KEEPALIVE):
                    try:
                        frame = await events.receive()
                    except trio.EndOfChannel:
                        return  # cut off for not keeping up: the browser comes back
                await stream.send_all(frame)


async def serve_page(
    socket_path: str,
    monitor_path: str,
    *,
    port: int = 0,
    domains: DomainsProvider | None = None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the page of the daemon at ``socket_path`` (its monitor at ``monitor_path``)
    until cancelled; ``task_status.started(url)`` once it listens.

    ``domains``: a callable (plain or async) returning the domains as dicts
    (``domid``, ``name``, ``state``, ``memory`` in KiB, ``vcpus``...); by default
    those the store names, all ``running``.
    """
    feed = Feed(socket_path, monitor_path, domains)
    server = WebServer(feed, port)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed.run)
        url = await nursery.start(server.serve)
        task_status.started(url)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xenstore.lab.web",
        description="Serve a live page of a XenStore daemon on 127.0.0.1: its domains, "
        "the store as a tree, and the watch events each change caused.")
    parser.add_argument("--monitor", metavar="PATH", required=True,
                        help="the daemon's monitor socket (pyxenstored --monitor PATH)")
    parser.add_argument("--socket", metavar="PATH", default=None,
                        help="the daemon's socket (default: $XENSTORED_PATH, ...)")
    parser.add_argument("--port", metavar="N", type=int, default=0,
                        help="the port on 127.0.0.1 (default 0: any free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="pyxl web: %(message)s")
    socket_path = args.socket or default_socket_path()
    try:
        trio.run(lambda: serve_page(socket_path, args.monitor, port=args.port))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"pyxl web: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
