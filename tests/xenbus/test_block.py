"""The example block driver: blkback in dom0 and blkfront in the guest (through its
domain socket) over a real daemon, with Debian's ``xenstore-watch`` on the backend."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.fixtures import Host, open_host, recorded, xenstore_watch
from tests.xenbus.helpers import DEADLINE, GUEST, wait_states
from xenstore.xenbus import DeviceAddress, XenbusState
from xenstore.xenbus.backend import BackendBus
from xenstore.xenbus.device import Value
from xenstore.xenbus.drivers import Numbers
from xenstore.xenbus.drivers.block import (
    VDISK_CDROM,
    VDISK_READONLY,
    VDISK_REMOVABLE,
    Blkback,
    Blkfront,
    DiskError,
    ReadOnlyDisk,
)
from xenstore.xenbus.frontend import Frontend
from xenstore.xenbus.rings import Ring
from xenstore.xenbus.specs import DiskSpec

S = XenbusState
DISK = DeviceAddress("vbd", GUEST, 51712, 0)  # xvda
MiB = 1 << 20


@pytest.fixture
async def host(daemon: OurDaemon) -> AsyncIterator[Host]:
    async with open_host(daemon) as started:
        yield started


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(MiB))
    return path.resolve()  # what physical-device-path names


async def add_disk(host: Host, disk: DiskSpec) -> None:
    """The toolstack lays the disk out (``params``, ``mode``, ``device-type``...)."""
    assert await host.toolstack.add_disk(GUEST, disk) == DISK


async def test_a_file_disk_connects_and_its_data_reads_back(host: Host, image: Path) -> None:
    dom0, guest = host.dom0, host.guest
    await add_disk(host, DiskSpec("xvda", str(image)))
    backends, make = recorded(Blkback)
    state = DISK.backend / "state"
    with trio.fail_after(DEADLINE):
        async with xenstore_watch(host.socket_path, DISK.backend) as watch, \
                trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", make).run)
            frontend = Frontend(guest, DISK, Blkfront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()

            assert re.fullmatch(rb"7:[0-9a-f]+", await dom0.read(DISK.backend / "physical-device"))
            assert await dom0.read(DISK.backend / "physical-device-path") == bytes(image)
            assert await dom0.read(DISK.backend / "hotplug-status") == b"connected"
            assert await dom0.read(DISK.backend / "sectors") == b"2048"
            assert await dom0.read(DISK.backend / "sector-size") == b"512"
            assert await dom0.read(DISK.backend / "info") == b"0"
            for name, value in (("feature-flush-cache", b"1"), ("feature-persistent", b"1"),
                                ("max-ring-page-order", b"4")):
                assert await dom0.read(DISK.backend / name) == value
            assert await dom0.read(DISK.frontend / "protocol") == b"x86_64-abi"
            assert await dom0.read(DISK.frontend / "feature-persistent") == b"1"
            assert await dom0.read(DISK.frontend / "ring-ref") == b"8"
            assert await dom0.read(DISK.frontend / "event-channel") == b"1"

            front = frontend.driver
            assert isinstance(front, Blkfront) and front.disk is not None
            assert front.disk.size == MiB and front.disk.sector_size == 512
            assert not front.disk.read_only and front.disk.flush and front.disk.persistent
            back = backends[0]
            assert back.ring is not None and back.ring.refs == (8,) and back.persistent

            # The data path: what is written reads back, and reaches the file.
            data = b"".join(bytes([i]) * 512 for i in range(1, 4))
            await back.write(100, data)
            await back.flush()
            assert await back.read(100, 3) == data
            assert (await trio.Path(image).read_bytes())[100 * 512:103 * 512] == data
            with pytest.raises(DiskError, match="past the end"):
                await back.read(2047, 2)
            with pytest.raises(DiskError, match="whole number of sectors"):
                await back.write(0, b"short")

            frontend.close()
            await frontend.closed.wait()
            await wait_states(dom0, DISK, S.Closed, S.Closed)
            with pytest.raises(DiskError, match="not connected"):
                await back.read(0, 1)
            # InitWait, Connected, Closing, Closed: each switch is one event on state.
            await watch.wait_for(lambda lines: lines.count(state) == 4)
            nursery.cancel_scope.cancel()
    assert (watch.first(DISK.backend / "physical-device") < watch.first(state)
            < watch.first(DISK.backend / "sectors"))
    assert watch.first(DISK.backend / "hotplug-status") < watch.first(state)


async def test_a_disk_in_memory_with_a_multi_page_ring(host: Host) -> None:
    dom0, guest = host.dom0, host.guest
    await add_disk(host, DiskSpec("xvda", "(memory)"))  # params: ignored
    memory = bytearray(64 * 1024)
    backends, make = recorded(functools.partial(Blkback, memory=memory,
                                                max_ring_page_order=1))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", make).run)
            # It asks for 8 pages; the backend offers 2.
            frontend = Frontend(guest, DISK, functools.partial(
                Blkfront, ring_page_order=3, grants=Numbers(100), ports=Numbers(7)))
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()

            assert re.fullmatch(rb"1:[0-9a-f]+", await dom0.read(DISK.backend / "physical-device"))
            assert (await dom0.read(DISK.backend / "physical-device-path")).startswith(b"/dev/ram")
            assert await dom0.read(DISK.backend / "sectors") == b"128"
            assert await dom0.read(DISK.frontend / "ring-page-order") == b"1"
            assert await dom0.read(DISK.frontend / "ring-ref0") == b"100"
            assert await dom0.read(DISK.frontend / "ring-ref1") == b"101"
            assert await dom0.read(DISK.frontend / "event-channel") == b"7"
            assert not await dom0.exists(DISK.frontend / "ring-ref")
            back = backends[0]
            assert back.ring is not None and back.ring.refs == (100, 101)
            front = frontend.driver
            assert isinstance(front, Blkfront) and front.disk is not None
            assert front.disk.size == len(memory)

            await back.write(3, b"\xab" * 1024)
            assert memory[3 * 512:5 * 512] == b"\xab" * 1024
            assert await back.read(4, 1) == b"\xab" * 512

            # Unplugged as libxl does: online 0 and the backend Closing; once the
            # backend is Closed, the directories go.
            await host.toolstack.remove_device(DISK)
            await frontend.closed.wait()
            assert front.disk is None and back.ring is None
            assert not await dom0.exists(DISK.backend)
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("cdrom", "info"), [
    (False, VDISK_READONLY),
    (True, VDISK_READONLY | VDISK_CDROM | VDISK_REMOVABLE),  # xl: a cdrom is removable
])
async def test_a_read_only_disk_refuses_writes(
    host: Host, image: Path, cdrom: bool, info: int,
) -> None:
    dom0, guest = host.dom0, host.guest
    await add_disk(host, DiskSpec("xvda", str(image), mode="r", cdrom=cdrom))
    backends, make = recorded(Blkback)
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", make).run)
            frontend = Frontend(guest, DISK, Blkfront)
            nursery.start_soon(frontend.run)
            await frontend.connected.wait()
            assert await dom0.read(DISK.backend / "info") == b"%d" % info
            front = frontend.driver
            assert isinstance(front, Blkfront) and front.disk is not None
            assert front.disk.read_only
            assert front.disk.cdrom == front.disk.removable == cdrom
            back = backends[0]
            with pytest.raises(ReadOnlyDisk):
                await back.write(0, bytes(512))
            assert await back.read(0, 1) == bytes(512)
            assert await trio.Path(image).read_bytes() == bytes(MiB)
            nursery.cancel_scope.cancel()


async def test_a_missing_file_fails_hotplug(host: Host, tmp_path: Path) -> None:
    dom0, guest = host.dom0, host.guest
    missing = str(tmp_path / "missing.img")
    await add_disk(host, DiskSpec("xvda", missing))
    message = f"no such file: {missing}".encode()
    state = DISK.backend / "state"
    with trio.fail_after(DEADLINE):
        async with xenstore_watch(host.socket_path, DISK.backend) as watch, \
                trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", Blkback).run)
            frontend = Frontend(guest, DISK, Blkfront)
            nursery.start_soon(frontend.run)
            await frontend.closed.wait()
            await wait_states(dom0, DISK, S.Closed, S.Closed)
            assert await dom0.read(DISK.backend / "hotplug-status") == b"error"
            assert await dom0.read(DISK.backend / "hotplug-error") == message
            assert await dom0.read(DISK.backend / "error") == b"5 " + message
            assert await dom0.read(DISK.backend_error / "error") == b"5 " + message
            assert not await dom0.exists(DISK.backend / "physical-device")
            # Closing (the fatal error), then Closed: never InitWait.
            await watch.wait_for(lambda lines: lines.count(state) == 2)
            nursery.cancel_scope.cancel()
    assert watch.first(DISK.backend / "hotplug-error") < watch.first(state)


async def test_a_frontend_reset_to_a_smaller_ring_is_mapped_anew(host: Host) -> None:
    dom0, guest = host.dom0, host.guest
    await add_disk(host, DiskSpec("xvda", "(memory)"))
    release = trio.Event()

    class Slow(Blkback):
        async def connect(self, ring: Ring) -> Mapping[str, Value]:
            await release.wait()
            return await super().connect(ring)

    backends, make = recorded(functools.partial(Slow, memory=bytearray(4096)))
    with trio.fail_after(DEADLINE):
        async with trio.open_nursery() as nursery:
            await nursery.start(BackendBus(dom0, 0, "vbd", make).run)
            # A frontend publishes a 2-page ring and dies in Initialised...
            first = trio.CancelScope()

            async def run_first() -> None:
                with first:
                    await Frontend(guest, DISK, functools.partial(
                        Blkfront, ring_page_order=1, grants=Numbers(100))).run()

            nursery.start_soon(run_first)
            await wait_states(dom0, DISK, S.InitWait, S.Initialised)
            first.cancel()
            release.set()
            await wait_states(dom0, DISK, S.Connected, S.Initialised)
            # ...and its successor, with a 1-page ring, resets through Closing.
            again = Frontend(guest, DISK, functools.partial(
                Blkfront, ring_page_order=0, grants=Numbers(200)))
            nursery.start_soon(again.run)
            await again.connected.wait()
            ring = backends[0].ring
            assert ring is not None
            nursery.cancel_scope.cancel()
    # The backend mapped the dead frontend's ring-ref0 and ring-ref1 (100, 101).
    assert ring.refs == (200,)
