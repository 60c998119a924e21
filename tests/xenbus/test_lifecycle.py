"""Drivers that restart, die mid-handshake, lack permissions or meet a flaky daemon.

Over a real daemon started with ``--faults`` (see ``xenstore.testing``'s fault
injection): commits refused with EAGAIN and late watch events must not keep the
handshake from reaching Connected.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import DEADLINE, GUEST, S, introduce, lay_out, wait_states
from tests.xenbus.test_handshake import DISK, Disk, DiskFront
from xenstore.aclient import AsyncClient, open_client
from xenstore.testing import FaultInjector
from xenstore.xenbus.backend import BackendBus
from xenstore.xenbus.device import XenbusError
from xenstore.xenbus.frontend import Frontend
from xenstore.xenbus.observe import observe
from xenstore.xenbus.rings import Ring


@pytest.fixture
def daemon() -> Iterator[OurDaemon]:
    started = OurDaemon("--domain-dir", None, "--faults")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
async def dom0(daemon: OurDaemon) -> AsyncIterator[AsyncClient]:
    async with open_client(daemon.socket_path) as client:
        await introduce(client, GUEST)
        await lay_out(client, DISK)
        yield client


def guest_socket(daemon: OurDaemon) -> str:
    return os.path.join(daemon.directory, str(GUEST))


async def record_states(xs: AsyncClient, seen: list[tuple[str, S]],
                        task_status: trio.TaskStatus[None]) -> None:
    """Every (end, state) the two ends show, in order, until cancelled."""
    paths = {DISK.backend / "state": "backend", DISK.frontend / "state": "frontend"}
    async with observe(xs, list(paths)) as observer:
        task_status.started()
        while True:
            snap = await observer.next()
            for path, end in paths.items():
                state = S.parse(snap[path])
                if [s for e, s in seen if e == end][-1:] != [state]:
                    seen.append((end, state))


async def test_a_restarted_backend_reattaches_without_touching_the_states(
    daemon: OurDaemon, dom0: AsyncClient,
) -> None:
    reattached = trio.Event()

    class Reattaching(Disk):
        async def reattach(self, ring: Ring) -> None:
            reattached.set()

    seen: list[tuple[str, S]] = []
    with trio.fail_after(DEADLINE):
        async with open_client(guest_socket(daemon)) as guest, trio.open_nursery() as nursery:
            backend_scope = trio.CancelScope()

            async def first_backend(task_status: trio.TaskStatus[None]) -> None:
                with backend_scope:
                    await BackendBus(dom0, 0, "vbd", Disk).run(task_status=task_status)

            await nursery.start(first_backend)
            frontend = Frontend(guest, DISK, DiskFront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            await nursery.start(record_states, dom0, seen)
            backend_scope.cancel()  # the backend process dies...
            await nursery.start(BackendBus(dom0, 0, "vbd", Reattaching).run)  # ...and is back
            await wait_states(dom0, DISK, S.Connected, S.Connected)
            await reattached.wait()
            assert seen == [("backend", S.Connected), ("frontend", S.Connected)]
            nursery.cancel_scope.cancel()


async def test_a_frontend_killed_mid_handshake_starts_afresh(
    daemon: OurDaemon, dom0: AsyncClient,
) -> None:
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
            # The guest's first kernel publishes its ring details and dies before Connected.
            async with open_client(guest_socket(daemon)) as first:
                await wait_states(dom0, DISK, S.InitWait, S.Initialising)
                await first.write(DISK.frontend / "ring-ref", "99")
                await first.write(DISK.frontend / "event-channel", "1")
                await first.write(DISK.frontend / "state", "3")
            await wait_states(dom0, DISK, S.Connected, S.Initialised)
            # A new kernel: it goes through Closing and connects with its own ring.
            async with open_client(guest_socket(daemon)) as second:
                frontend = Frontend(second, DISK, DiskFront)
                nursery.start_soon(frontend.run)
                await frontend.connected.wait()
                assert await dom0.read(DISK.frontend / "ring-ref") == b"8"
                await wait_states(dom0, DISK, S.Connected, S.Connected)
                nursery.cancel_scope.cancel()


async def test_a_backend_killed_mid_handshake_is_picked_up(
    daemon: OurDaemon, dom0: AsyncClient,
) -> None:
    with trio.fail_after(DEADLINE):
        async with open_client(guest_socket(daemon)) as guest, trio.open_nursery() as nursery:
            killed = trio.CancelScope()

            async def dying_backend() -> None:
                with killed:
                    await BackendBus(dom0, 0, "vbd", Disk).run()

            nursery.start_soon(dying_backend)
            await wait_states(dom0, DISK, S.InitWait, S.Initialising)
            killed.cancel()  # dead in InitWait, before the frontend came
            frontend = Frontend(guest, DISK, DiskFront)
            nursery.start_soon(frontend.run)
            await wait_states(dom0, DISK, S.InitWait, S.Initialised)
            await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
            await frontend.connected.wait()
            await wait_states(dom0, DISK, S.Connected, S.Connected)
            nursery.cancel_scope.cancel()


async def test_a_frontend_without_write_access_gets_a_clear_error(
    daemon: OurDaemon, dom0: AsyncClient,
) -> None:
    # A toolstack bug: the device directory left to dom0 alone.
    await dom0.set_perms(DISK.frontend, ["n0", f"r{GUEST}"])
    await dom0.set_perms(DISK.frontend / "state", ["n0", f"r{GUEST}"])
    with trio.fail_after(DEADLINE):
        async with open_client(guest_socket(daemon)) as guest, trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
            frontend = Frontend(guest, DISK, DiskFront)
            with pytest.raises(XenbusError, match="permission denied writing under "
                               "/local/domain/3/device/vbd/51712: this frontend"):
                await frontend.run()
            nursery.cancel_scope.cancel()


async def test_the_handshake_survives_refused_commits_and_late_events(
    daemon: OurDaemon, dom0: AsyncClient,
) -> None:
    faults = FaultInjector(daemon.socket_path)
    faults.eagain(6)           # every publication and snapshot retries a few times...
    faults.event_delay(0.1)    # ...and every watch event comes late
    with trio.fail_after(DEADLINE):
        async with open_client(guest_socket(daemon)) as guest, trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
            frontend = Frontend(guest, DISK, DiskFront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            await wait_states(dom0, DISK, S.Connected, S.Connected)
            assert "eagain" not in " ".join(faults.armed())  # all six were used
            conflicts = (await dom0.control("conflicts")).decode()
            assert conflicts.count("refused") >= 6
            nursery.cancel_scope.cancel()
