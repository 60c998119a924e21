"""The live page's server without a browser: the store copy kept from monitor lines,
the HTTP endpoints and the event stream, over a real daemon started with --monitor."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from xenstore.aclient import open_client
from xenstore.lab import storeview, web, webfeed
from xenstore.lab.storeview import Affected, Delta, NodeView, StoreView, affected
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op

DEADLINE = 20


# -- the store copy (pure) ---------------------------------------------------------------

def test_what_a_monitor_line_asks_to_read_again() -> None:
    ok = {"reply": "OK", "tx": 0}
    assert affected({**ok, "op": "WRITE", "path": "/a/b"}) == Affected(reread=("/a/b",))
    assert affected({**ok, "op": "RM", "path": "/a"}) == Affected(gone=("/a",))
    assert affected({**ok, "op": "SET_PERMS", "path": "@releaseDomain"}) == storeview.NOTHING
    assert affected({**ok, "op": "WRITE", "path": "/a", "tx": 4}) == storeview.NOTHING
    assert affected({"op": "WRITE", "path": "/a", "reply": "EACCES"}) == storeview.NOTHING
    assert affected({**ok, "op": "WATCH", "path": "/a"}) == storeview.NOTHING
    commit = {**ok, "op": "TRANSACTION_END", "tx": 3, "changes": [
        {"op": "WRITE", "path": "/x"}, {"op": "RM", "path": "/y"}, {"op": "MKDIR", "path": "/z"}]}
    assert affected(commit) == Affected(reread=("/x", "/z"), gone=("/y",))
    assert affected({**commit, "changes_omitted": 5}).everything
    assert affected({**ok, "op": "RELEASE", "args": ["3"]}).everything
    assert affected({"op": "READ", "dropped": 2, "reply": "OK"}).everything


def n(path: str, value: str = "", perms: tuple[str, ...] = ("n0",)) -> NodeView:
    return NodeView(path, value, perms)


def test_the_store_copy_takes_subtrees_and_forgets_removed_ones() -> None:
    view = StoreView()
    delta = Delta()
    view.replace("/", [n("/"), n("/a"), n("/a/b", "1"), n("/c")], delta)
    assert list(delta.changed) == ["/", "/a", "/a/b", "/c"] and not delta.removed
    assert view.topmost_missing("/a/x/y") == "/a/x" and view.topmost_missing("/a/b") == "/a/b"
    delta = Delta()
    view.replace("/", [n("/"), n("/a"), n("/a/b", "2"), n("/d")], delta)
    assert list(delta.changed) == ["/a/b", "/d"] and delta.removed == {"/c"}
    delta = Delta()
    view.remove("/a", delta)
    assert delta.removed == {"/a", "/a/b"} and "/a" not in view
    assert delta.as_json()["removed"] == ["/a/b", "/a"]  # children first
    assert n("/local/domain/3", perms=("n3", "r0")).owner == 3


def test_domains_named_in_the_store() -> None:
    view = StoreView()
    home = "/local/domain/3"
    view.put([n("/local"), n("/local/domain"), n("/local/domain/0"),
              n("/local/domain/0/name", "Domain-0"), n(home), n(f"{home}/name", "web"),
              n(f"{home}/memory"), n(f"{home}/memory/target", "262144"), n(f"{home}/cpu"),
              n(f"{home}/cpu/0"), n(f"{home}/cpu/0/availability", "online"), n(f"{home}/cpu/1"),
              n(f"{home}/cpu/1/availability", "offline"), n("/local/domain/7")], Delta())
    assert storeview.domains_in(view) == [
        {"domid": 0, "name": "Domain-0", "state": "running", "memory": None, "vcpus": None},
        {"domid": 3, "name": "web", "state": "running", "memory": 262144, "vcpus": 1},
    ]


def test_requests_are_parsed_and_only_this_machine_is_answered() -> None:
    request = web.parse_head(b"GET /events?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nA: b")
    assert request == web.Request("GET", "/events", {"host": "127.0.0.1:8080", "a": "b"})
    assert web.parse_head(b"nonsense") is None
    assert web.local_host("localhost:1") and web.local_host("[::1]") and web.local_host("127.0.0.1")
    assert not web.local_host("evil.example:8080") and not web.local_host(None)
    assert web.static_file("../web.py") is None and web.static_file("web.py") is None
    found = web.static_file("app.js")
    assert found is not None and found[1].startswith("text/javascript")


def test_a_page_that_does_not_keep_up_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webfeed, "VIEWER_BACKLOG", 2)
    viewers = webfeed.Viewers()
    slow = viewers.join()
    assert slow is not None
    for i in range(3):
        viewers.publish(b"frame %d" % i)
    assert len(viewers) == 0  # cut off: its browser reconnects to a fresh snapshot
    assert slow.receive_nowait() == b"frame 0"


# -- over a real daemon ------------------------------------------------------------------

@pytest.fixture
def daemon() -> Iterator[tuple[OurDaemon, str]]:
    monitor_dir = short_tempdir()
    monitor = os.path.join(monitor_dir, "monitor")
    started = OurDaemon("--domain-dir", None, "--monitor", monitor)
    try:
        yield started, monitor
    finally:
        started.stop()
        shutil.rmtree(monitor_dir, ignore_errors=True)


async def http(port: int, path: str, host: str = "127.0.0.1") -> tuple[str, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        data = b""
        with trio.fail_after(DEADLINE):
            while chunk := await stream.receive_some(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


class Events:
    """An open /events stream: its events, parsed."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.pending = b""

    async def next(self, name: str | None = None) -> tuple[str, Any]:
        with trio.fail_after(DEADLINE):
            while True:
                while b"\n\n" in self.pending:
                    raw, self.pending = self.pending.split(b"\n\n", 1)
                    fields = dict(line.split(": ", 1) for line in raw.decode().split("\n")
                                  if ": " in line and not line.startswith(":"))
                    if "event" in fields and (name is None or fields["event"] == name):
                        return fields["event"], json.loads(fields["data"])
                chunk = await self.stream.receive_some(65536)
                assert chunk, "the event stream ended"
                self.pending += chunk

    async def until(self, name: str, check: Any) -> Any:
        while True:
            _, data = await self.next(name)
            if check(data):
                return data


@asynccontextmanager
async def events(port: int) -> AsyncIterator[Events]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /events HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n".encode())
        yield Events(stream)


def port_of(url: str) -> int:
    return int(url.rstrip("/").rsplit(":", 1)[1])


async def test_the_snapshot_and_the_stream_follow_the_store(
        daemon: tuple[OurDaemon, str]) -> None:
    ours, monitor = daemon
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery, open_client(ours.socket_path) as dom0:
            await dom0.write("/local/domain/0/name", "Domain-0")
            url = await nursery.start(functools.partial(web.serve_page, ours.socket_path,
                                                        monitor))
            port = port_of(url)
            status, headers, body = await http(port, "/")
            assert status == "HTTP/1.1 200 OK" and b"/static/app.js" in body
            assert headers["content-type"].startswith("text/html")
            assert (await http(port, "/", host="evil.example"))[0].startswith("HTTP/1.1 403")
            assert (await http(port, "/nope"))[0].startswith("HTTP/1.1 404")
            async with events(port) as stream:
                _, snap = await stream.next("snapshot")
                if snap["status"]["daemon"] != "connected":  # the page may open first
                    await stream.until("status", lambda s: s["daemon"] == "connected")
                _, body = (await http(port, "/api/snapshot"))[1:]
                nodes = {node["path"]: node for node in json.loads(body)["nodes"]}
                assert nodes["/local/domain/0/name"] == {
                    "path": "/local/domain/0/name", "value": "Domain-0", "perms": ["n0"],
                    "owner": 0}

                # A write: its monitor line (who, and the watch it fired), then the node.
                async with dom0.watch("/local/domain/5"):
                    await dom0.write("/local/domain/5/name", "five")
                    line = await stream.until("line", lambda d: d.get("op") == "WRITE")
                    assert line["path"] == "/local/domain/5/name" and line["domid"] == 0
                    assert [e["path"] for e in line["events"]] == ["/local/domain/5/name"]
                    delta = await stream.until("nodes", lambda d: d["set"])
                    assert [x["path"] for x in delta["set"]] == [
                        "/local/domain/5", "/local/domain/5/name"]
                await stream.until("domains", lambda d: any(x["domid"] == 5 for x in d))

                # A guest writes through its own socket: owner and perms follow.
                await dom0.set_perms("/local/domain/5", ["n5", "r0"])
                await dom0.request(Op.INTRODUCE, join("5", "4096", "1"))
                async with open_client(os.path.join(ours.directory, "5")) as guest:
                    await guest.write("data/x", "1")
                delta = await stream.until(
                    "nodes", lambda d: any(x["path"] == "/local/domain/5/data/x"
                                           for x in d["set"]))
                made = {x["path"]: x for x in delta["set"]}
                assert made["/local/domain/5/data/x"]["owner"] == 5

                # A transaction's commit, a removal, then a RELEASE (a re-read of it all).
                async with dom0.transaction() as t:
                    await t.write("/local/domain/5/a", "1")
                    await t.rm("/local/domain/5/data")
                delta = await stream.until("nodes", lambda d: d["removed"])
                assert delta["removed"] == ["/local/domain/5/data/x", "/local/domain/5/data"]
                assert [x["path"] for x in delta["set"]] == ["/local/domain/5/a"]
                await dom0.rm("/local/domain/5")
                await stream.until("nodes", lambda d: "/local/domain/5" in d["removed"])
                await stream.until("domains", lambda d: all(x["domid"] != 5 for x in d))
                await dom0.request(Op.RELEASE, join("5"))
                await stream.until("line", lambda d: d.get("op") == "RELEASE")
            nursery.cancel_scope.cancel()


async def test_a_domains_provider_and_a_daemon_that_comes_late(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The page serves before the daemon exists, says it waits, then follows it; the
    domains come from the provider given (a host's hypervisor)."""
    directory = short_tempdir()
    monitor = os.path.join(directory, "monitor")
    socket_path = os.path.join(directory, "socket")
    monkeypatch.setattr(webfeed, "RETRY", 0.05)

    async def provider() -> list[dict[str, Any]]:
        return [{"domid": 0, "name": "Domain-0", "state": "running", "memory": 1 << 20}]

    ours: OurDaemon | None = None
    try:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                url = await nursery.start(functools.partial(
                    web.serve_page, socket_path, monitor, domains=provider))
                async with events(port_of(url)) as stream:
                    _, snap = await stream.next("snapshot")
                    assert snap["status"]["daemon"] == "waiting"
                    domains = snap["domains"] or (await stream.next("domains"))[1]
                    assert domains == await provider()
                    ours = await trio.to_thread.run_sync(functools.partial(
                        OurDaemon, "--socket", socket_path, "--monitor", monitor))
                    await stream.until("status", lambda s: s["daemon"] == "connected")
                nursery.cancel_scope.cancel()
    finally:
        if ours is not None:
            ours.stop()
        shutil.rmtree(directory, ignore_errors=True)


def test_the_command_serves_the_page(daemon: tuple[OurDaemon, str]) -> None:
    ours, monitor = daemon
    process = subprocess.Popen(
        [sys.executable, "-m", "xenstore.lab.web", "--monitor", monitor, "--port", "0"],
        env={**os.environ, "XENSTORED_PATH": ours.socket_path},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + DEADLINE
        url = ""
        while not url:
            assert time.monotonic() < deadline and process.poll() is None
            line = process.stderr.readline().decode()
            if "http://127.0.0.1:" in line:
                url = line[line.index("http://"):].strip()
        status, _, body = trio.run(http, port_of(url), "/static/style.css")
        assert status == "HTTP/1.1 200 OK" and b"--navy" in body
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
