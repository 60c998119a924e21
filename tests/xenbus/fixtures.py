"""Shared pieces of the example drivers' tests: a host with one guest made by the
toolstack, drivers recorded as the buses make them, and Debian's C ``xenstore-watch``
looking on."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import NamedTuple, TypeVar

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import C_WATCH, DEADLINE, GUEST
from xenstore.aclient import AsyncClient, open_client
from xenstore.xenbus.device import End
from xenstore.xenbus.specs import DomainSpec
from xenstore.xenbus.toolstack import Toolstack

D = TypeVar("D")


class Host(NamedTuple):
    """A daemon's dom0 socket, a dom0 client, the guest's client (its domain socket), and
    the toolstack that made the guest (to add and remove its devices)."""

    socket_path: str
    dom0: AsyncClient
    guest: AsyncClient
    toolstack: Toolstack


@contextlib.asynccontextmanager
async def open_host(daemon: OurDaemon) -> AsyncIterator[Host]:
    """Domain :data:`GUEST` made as ``xl create`` makes it, without devices yet."""
    async with open_client(daemon.socket_path) as dom0:
        toolstack = Toolstack(dom0)
        await toolstack.init_dom0()
        await toolstack.create_domain(DomainSpec(GUEST, f"guest{GUEST}"))
        async with open_client(os.path.join(daemon.directory, str(GUEST))) as guest:
            yield Host(daemon.socket_path, dom0, guest, toolstack)


def recorded(make: Callable[[End], D]) -> tuple[list[D], Callable[[End], D]]:
    """A driver factory that keeps each driver it makes (a bus keeps only its tasks)."""
    made: list[D] = []

    def factory(end: End) -> D:
        made.append(make(end))
        return made[-1]

    return made, factory


def need_xenstore_watch() -> None:
    if not os.path.exists(C_WATCH):
        reason = f"{C_WATCH} is absent (apt install xenstore-utils)"
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


class WatchLines:
    """The paths a ``xenstore-watch`` printed so far, one per event."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._more = trio.Event()

    async def _read(self, stdout: trio.abc.ReceiveStream) -> None:
        pending = b""
        async for chunk in stdout:
            pending += chunk
            *complete, pending = pending.split(b"\n")
            self.lines.extend(line.decode() for line in complete)
            self._more.set()
            self._more = trio.Event()

    async def wait_for(self, done: Callable[[list[str]], bool]) -> None:
        """Until the lines so far satisfy ``done`` (woken by each new line)."""
        with trio.fail_after(DEADLINE):
            while not done(self.lines):
                await self._more.wait()

    def count(self, path: str) -> int:
        return self.lines.count(path)

    def first(self, path: str) -> int:
        """The index of the first event on ``path``."""
        return self.lines.index(path)


@contextlib.asynccontextmanager
async def xenstore_watch(socket_path: str, path: str) -> AsyncIterator[WatchLines]:
    """Debian's C ``xenstore-watch path`` against ``socket_path``, its watch in place
    (its first event, the path itself, printed) when this yields; killed on exit."""
    need_xenstore_watch()
    env = {**os.environ, "XENSTORED_PATH": socket_path}
    process = await trio.lowlevel.open_process(
        [C_WATCH, path], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    assert process.stdout is not None
    lines = WatchLines()
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lines._read, process.stdout)
            await lines.wait_for(lambda seen: path in seen)
            yield lines
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            process.kill()
            await process.wait()
            await process.stdout.aclose()
