"""The PV console: the guest's output crosses a real xencons ring to dom0's stream."""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from tests.xenbus.helpers import DEADLINE, GUEST, c_watch, introduce, lay_out, wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.xenbus import DeviceAddress, XenbusState
from xenstore.xenbus.backend import BackendBus
from xenstore.xenbus.device import End
from xenstore.xenbus.drivers.console import ConsoleBackend, ConsoleFrontend
from xenstore.xenbus.frontend import Frontend
from xenstore.xenbus.hypervisor import Hypervisor

S = XenbusState
CONSOLE = DeviceAddress("console", GUEST, 1, 0)


@pytest.fixture
def hypervisor() -> Iterator[Hypervisor]:
    directory = short_tempdir("xshv")
    yield Hypervisor(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def host(daemon: OurDaemon) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    async with open_client(daemon.socket_path) as dom0:
        await introduce(dom0, GUEST)
        await lay_out(dom0, CONSOLE)
        await dom0.write(CONSOLE.backend / "protocol", "vt100")
        path = os.path.join(daemon.directory, str(GUEST))
        async with open_client(path) as guest:
            yield dom0, guest


async def test_console_output_is_a_stream(
    daemon: OurDaemon, host: tuple[AsyncClient, AsyncClient], hypervisor: Hypervisor,
) -> None:
    dom0, guest = host
    backends: list[ConsoleBackend] = []

    def backend(end: End) -> ConsoleBackend:
        backends.append(ConsoleBackend(end, hypervisor))
        return backends[-1]

    text = b"".join(b"line %d of the boot log\r\n" % i for i in range(400))  # > the ring
    watcher = c_watch(daemon.socket_path, CONSOLE.backend / "state")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "console", backend).run)
            frontend = Frontend(guest, CONSOLE,
                                functools.partial(ConsoleFrontend, hypervisor=hypervisor))
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            assert await dom0.read(CONSOLE.frontend / "ring-ref") != b""
            console = frontend.driver
            assert isinstance(console, ConsoleFrontend)
            nursery.start_soon(console.write, text)
            got = b""
            while len(got) < len(text):
                got += await backends[0].output.receive()
            assert got == text
            # And the other way: what dom0 types reaches the guest.
            assert backends[0].type_in(b"root\n") == 5
            assert await console.read() == b"root\n"
            frontend.close()
            await frontend.closed.wait()
            await wait_states(dom0, CONSOLE, S.Closed, S.Closed)
            nursery.cancel_scope.cancel()
    if watcher is not None:  # Debian's C xenstore-watch saw every state it went through
        watcher.terminate()
        watched = watcher.communicate(timeout=10)[0].decode().split()
        assert watched[0] == CONSOLE.backend / "state"
        assert len(watched) >= 5  # the first event, InitWait, Connected, Closing, Closed


async def test_a_console_with_another_protocol_is_refused(
    host: tuple[AsyncClient, AsyncClient], hypervisor: Hypervisor,
) -> None:
    dom0, guest = host
    await dom0.write(CONSOLE.backend / "protocol", "serial-9000")
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(
                dom0, 0, "console", functools.partial(ConsoleBackend, hypervisor=hypervisor)).run)
            frontend = Frontend(guest, CONSOLE,
                                functools.partial(ConsoleFrontend, hypervisor=hypervisor))
            nursery.start_soon(frontend.run)
            await frontend.closed.wait()
            assert b"not vt100" in await dom0.read(CONSOLE.backend / "error")
            nursery.cancel_scope.cancel()
