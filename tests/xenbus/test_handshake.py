"""The XenBus handshake between a backend (dom0) and a frontend (the guest, through its
domain socket), over a real daemon: to Connected, closing from either side, errors."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import DEADLINE, GUEST, S, introduce, lay_out, wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.xenbus import DeviceAddress
from xenstore.xenbus.backend import BackendBus, BackendDriver, HotplugError
from xenstore.xenbus.device import End, PeerGone, Value, XenbusError
from xenstore.xenbus.frontend import Frontend, FrontendBus, FrontendDriver, frontend_address
from xenstore.xenbus.rings import Ring

DISK = DeviceAddress("vbd", GUEST, 51712, 0)


class Disk(BackendDriver):
    fail_hotplug = False
    fail_connect = False
    removed = 0

    async def remove(self) -> None:
        type(self).removed += 1  # counted per subclass: each test makes its own

    async def hotplug(self) -> Mapping[str, Value]:
        if self.fail_hotplug:
            raise HotplugError("no such file: /srv/missing.img")
        return {"physical-device": "fe:0"}

    def features(self) -> Mapping[str, Value]:
        return {"feature-flush-cache": 1, "max-ring-page-order": 2}

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        if self.fail_connect:
            raise XenbusError("mapping the ring failed", 12)
        self.ring = ring
        return {"sectors": 2048, "sector-size": 512, "info": 0}


class DiskFront(FrontendDriver):
    backend_features = ("feature-flush-cache", "max-ring-page-order")
    connect_details = ("sectors", "sector-size", "info")

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        self.features = dict(features)
        return {"ring-ref": 8, "event-channel": 11, "protocol": "x86_64-abi"}

    async def connected(self, details: Mapping[str, bytes]) -> None:
        self.details = dict(details)


@pytest.fixture
async def host(daemon: OurDaemon) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    async with open_client(daemon.socket_path) as dom0:
        await introduce(dom0, GUEST)
        await lay_out(dom0, DISK)
        async with open_client(os.path.join(daemon.directory, str(GUEST))) as guest:
            yield dom0, guest


async def test_block_handshake_to_connected_and_closed_by_the_frontend(
    host: tuple[AsyncClient, AsyncClient],
) -> None:
    dom0, guest = host
    drivers: list[Disk] = []

    def make(end: End) -> Disk:
        drivers.append(Disk(end))
        return drivers[-1]

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", make).run)
            address = await frontend_address(guest, DISK.frontend)
            frontend = Frontend(guest, address, DiskFront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            assert await dom0.read(DISK.backend / "hotplug-status") == b"connected"
            assert await dom0.read(DISK.backend / "physical-device") == b"fe:0"
            assert await dom0.read(DISK.frontend / "ring-ref") == b"8"
            assert await dom0.read(DISK.frontend / "state") == b"4"
            assert await dom0.read(DISK.backend / "state") == b"4"
            assert drivers[0].ring.refs == (8,) and drivers[0].ring.event_channels == (11,)
            assert drivers[0].ring.protocol == "x86_64-abi"
            front = frontend.driver
            assert isinstance(front, DiskFront)
            assert front.features == {"feature-flush-cache": b"1", "max-ring-page-order": b"2"}
            assert front.details == {"sectors": b"2048", "sector-size": b"512", "info": b"0"}
            frontend.close()
            await frontend.closed.wait()
            await wait_states(dom0, DISK, S.Closed, S.Closed)
            nursery.cancel_scope.cancel()


async def test_the_toolstack_unplugs_a_connected_device(
    host: tuple[AsyncClient, AsyncClient],
) -> None:
    dom0, guest = host
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            class Counted(Disk):
                removed = 0

            bus = BackendBus(dom0, 0, "vbd", Counted)
            await nursery.start(bus.run)
            frontend = Frontend(guest, DISK, DiskFront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            # As libxl removes a device: online 0, the backend Closing, wait for Closed.
            async with dom0.transaction() as t:
                await t.write(DISK.backend / "online", "0")
                await t.write(DISK.backend / "state", "5")
            await frontend.closed.wait()
            await wait_states(dom0, DISK, S.Closed, S.Closed)
            assert DISK in bus.devices  # closed for good: not started again...
            assert Counted.removed == 1 and DISK not in bus.drivers  # ...its hotplug undone
            await dom0.rm(DISK.backend)
            await dom0.rm(DISK.frontend)
            assert Counted.removed == 1
            nursery.cancel_scope.cancel()


async def test_hotplug_failure_is_reported_as_xen_does(
    host: tuple[AsyncClient, AsyncClient],
) -> None:
    dom0, guest = host

    class Broken(Disk):
        fail_hotplug = True

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Broken).run)
            frontend = Frontend(guest, DISK, DiskFront)
            nursery.start_soon(frontend.run)
            await frontend.closed.wait()
            assert await dom0.read(DISK.backend / "hotplug-status") == b"error"
            assert await dom0.read(DISK.backend / "hotplug-error") == (
                b"no such file: /srv/missing.img")
            assert await dom0.read(DISK.backend / "error") == b"5 no such file: /srv/missing.img"
            assert await dom0.read(DISK.backend_error / "error") == (
                b"5 no such file: /srv/missing.img")
            await wait_states(dom0, DISK, S.Closed, S.Closed)
            nursery.cancel_scope.cancel()


async def test_a_device_removed_while_connected_is_removed_once(
    host: tuple[AsyncClient, AsyncClient],
) -> None:
    dom0, guest = host

    gone = trio.Event()

    class Counted(Disk):
        removed = 0

        async def remove(self) -> None:
            await super().remove()
            gone.set()

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            bus = BackendBus(dom0, 0, "vbd", Counted)
            await nursery.start(bus.run)
            frontend = Frontend(guest, DISK, DiskFront)

            async def front() -> None:
                with pytest.raises(PeerGone):  # as the frontend of a vanished backend must
                    await frontend.run()

            nursery.start_soon(front)
            await frontend.connected.wait()
            assert isinstance(bus.drivers[DISK], Counted)
            await dom0.rm(DISK.backend)  # pulled out from under it
            await gone.wait()
            assert Counted.removed == 1 and DISK not in bus.drivers
            nursery.cancel_scope.cancel()
    assert Counted.removed == 1  # stopping the bus removes nothing more


async def test_a_busy_disk_is_reported_busy(host: tuple[AsyncClient, AsyncClient]) -> None:
    dom0 = host[0]

    class Busy(Disk):
        async def hotplug(self) -> Mapping[str, Value]:
            raise HotplugError("/srv/disk.img is in use by domain 7", status="busy")

    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Busy).run)
            await wait_states(dom0, DISK, S.Closing, S.Initialising)
            assert await dom0.read(DISK.backend / "hotplug-status") == b"busy"
            nursery.cancel_scope.cancel()


async def test_a_frontend_whose_backend_vanishes_gets_a_clear_error(
    host: tuple[AsyncClient, AsyncClient],
) -> None:
    dom0, guest = host
    frontend = Frontend(guest, DISK, DiskFront)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            async def remove_backend() -> None:
                await trio.sleep(0.2)
                await dom0.rm(DISK.backend)
            nursery.start_soon(remove_backend)
            with pytest.raises(PeerGone, match="backend of vbd 51712 of domain 3 is gone"):
                await frontend.run()


async def test_frontend_bus_finds_its_devices(host: tuple[AsyncClient, AsyncClient]) -> None:
    dom0, guest = host
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Disk).run)
            bus = FrontendBus(guest, GUEST, "vbd", DiskFront)
            await nursery.start(bus.run)
            second = DeviceAddress("vbd", GUEST, 51728, 0)
            await lay_out(dom0, second)
            await wait_states(dom0, DISK, S.Connected, S.Connected)
            await wait_states(dom0, second, S.Connected, S.Connected)
            nursery.cancel_scope.cancel()
