"""The toolstack over a real daemon with guest sockets: layout, rights, unplug, destroy."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from tests.conftest import OurDaemon
from xenstore import errors
from xenstore.aclient import AsyncClient, open_client
from xenstore.xenbus import DeviceAddress, XenbusState
from xenstore.xenbus.layout import (
    Entry,
    console_layout,
    disk_layout,
    domain_layout,
    frontend_path,
    nic_layout,
)
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec
from xenstore.xenbus.toolstack import (
    BackendTimeout,
    DeviceExists,
    DeviceModelTimeout,
    DomainExists,
    NoSuchDomain,
    Toolstack,
)

START = 1700000000.0
GUEST = DomainSpec(5, "guest5", uuid="5e5e5e5e-0000-4000-8000-000000000005")
DISK = DiskSpec("xvda", "/srv/guest5.img")
NIC = NicSpec(mac="00:16:3e:00:00:05")
CONSOLE = ConsoleSpec()
XENSTORE_LS = "/usr/bin/xenstore-ls"



@asynccontextmanager
async def dom0(daemon: OurDaemon) -> AsyncIterator[Toolstack]:
    async with open_client(daemon.socket_path) as xs:
        toolstack = Toolstack(xs, clock=lambda: START)
        await toolstack.init_dom0()
        yield toolstack


async def guest_with_devices(toolstack: Toolstack) -> list[DeviceAddress]:
    await toolstack.create_domain(GUEST)
    return [await toolstack.add_disk(5, DISK), await toolstack.add_nic(5, NIC),
            await toolstack.add_console(5, CONSOLE)]


def expected_entries() -> list[Entry]:
    return [*domain_layout(GUEST, START).entries, *disk_layout(5, "pv", DISK).entries,
            *nic_layout(5, NIC, 0).entries, *console_layout(5, CONSOLE).entries]


async def test_the_store_holds_the_layout_and_the_guest_its_socket(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        xs = toolstack.xs
        async with xs.watch("@introduceDomain") as introduced:
            assert (await introduced.receive()).path == "@introduceDomain"  # on registration
            devices = await guest_with_devices(toolstack)
            with trio.fail_after(10):
                assert (await introduced.receive()).path == "@introduceDomain"
        assert await trio.Path(daemon.directory, "5").exists()
        assert devices == [DeviceAddress("vbd", 5, 51712, 0), DeviceAddress("vif", 5, 0, 0),
                           DeviceAddress("console", 5, 0, 0)]
        assert await toolstack.devices(5) == devices
        # Every node as the layout says, inherited perms included: what the
        # daemon gave a node created below its parent is what libxl relies on.
        for entry in expected_entries():
            assert (await xs.read(entry.path), await xs.get_perms(entry.path)) == (
                entry.value.encode(), list(entry.perms)), entry.path
        # The parents made on the way inherit too (libxl writes no perms on them).
        assert await xs.get_perms("/local/domain/5/device/vbd") == ["n0", "r5"]
        assert await xs.get_perms("/local/domain/0/backend/vbd/5") == ["n0"]
        assert await xs.read("/local/domain/0/name") == b"Domain-0"


async def test_the_guest_and_the_backend_have_libxls_rights(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        disk, nic, console = await guest_with_devices(toolstack)
        async with open_client(os.path.join(daemon.directory, "5")) as guest:
            # The guest reads its frontends and the backends, and writes its own
            # nodes, new ones included (its ring details)...
            assert await guest.read("device/vbd/51712/backend") == disk.backend.encode()
            assert "state" in await guest.directory(disk.backend)
            for address in (disk, nic):
                await guest.write(address.frontend / "state", XenbusState.Initialised.encoded())
                await guest.write(address.frontend / "ring-ref", "8")
            await guest.write("data/ip", "10.0.0.5")
            await guest.write("control/shutdown", "")
            await guest.write("console/backend-id", "0")
            # ...but not the backends, nor what libxl keeps from it.
            for path in (disk.backend / "state", nic.backend / "online", nic.frontend / "mtu",
                         frontend_path(console) / "ring-ref", "/local/domain/5/name",
                         "memory/target", "device/vbd/new"):
                with pytest.raises(errors.EACCES):
                    await guest.write(path, "6")
            with pytest.raises(errors.EACCES):
                await guest.read("/libxl/5/type")
            with pytest.raises(errors.EACCES):
                await guest.directory("/local/domain/0")
        # The backend domain (dom0 here) reads the guest's writes and runs its end.
        xs = toolstack.xs
        assert await xs.read(disk.frontend / "ring-ref") == b"8"
        await xs.write(disk.backend / "state", XenbusState.InitWait.encoded())
        await xs.write(disk.backend / "physical-device", "fe:0")


async def test_a_driver_domain_runs_its_backend_only(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        await toolstack.create_domain(DomainSpec(2, "netdom", driver_domain=True))
        await toolstack.create_domain(GUEST)
        nic = await toolstack.add_nic(5, NicSpec(backend_domid=2))
        assert nic.backend == "/local/domain/2/backend/vif/5/0"
        async with open_client(os.path.join(daemon.directory, "2")) as netdom:
            assert await netdom.read(nic.frontend / "mac") == (await toolstack.xs.read(
                nic.backend / "mac"))
            await netdom.write(nic.backend / "hotplug-status", "connected")
            await netdom.write(nic.backend / "feature-sg", "1")
            await netdom.write(nic.backend / "state", XenbusState.InitWait.encoded())
            await netdom.write("libxl/disable_udev", "1")  # a driver domain's own corner
            with pytest.raises(errors.EACCES):
                await netdom.write(nic.frontend / "state", "4")
            with pytest.raises(errors.EACCES):
                await netdom.read("/local/domain/5/name")


async def stand_in_backend(xs: AsyncClient, address: DeviceAddress, seen: list[bytes],
                           *, remove: bool = False) -> None:
    """A backend that answers the toolstack's Closing with Closed (and records online)."""
    state = address.backend / "state"
    async with xs.watch(state) as events:
        async for _ in events:
            if XenbusState.parse(await xs.read(state)) is XenbusState.Closing:
                seen.append(await xs.read(address.backend / "online"))
                await xs.write(state, XenbusState.Closed.encoded())
                if remove:  # as a driver domain's own tools clean up
                    await xs.rm(address.backend)
                return


async def assert_device_gone(xs: AsyncClient, address: DeviceAddress) -> None:
    for path in (frontend_path(address), address.backend,
                 f"/libxl/{address.frontend_id}/device/{address.type}/{address.devid}"):
        assert not await xs.exists(path), path


async def test_unplug_waits_for_the_backends_closed(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        disk, nic, console = await guest_with_devices(toolstack)
        seen: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stand_in_backend, toolstack.xs, disk, seen)
            await toolstack.remove_device(disk, 10)
        assert seen == [b"0"]  # online went to 0 with Closing, in one transaction
        await assert_device_gone(toolstack.xs, disk)
        # Parents left empty go too (libxl__xs_path_cleanup), not those still used.
        assert not await toolstack.xs.exists("/local/domain/5/device/vbd")
        assert not await toolstack.xs.exists("/local/domain/0/backend/vbd")
        assert await toolstack.xs.exists("/local/domain/0/backend/vif/5/0")
        assert await toolstack.devices(5) == [nic, console]
        await toolstack.remove_device(console, 0.1)  # consoles go at once, as libxl's
        await assert_device_gone(toolstack.xs, console)


async def test_unplug_from_a_driver_domain_waits_for_its_cleanup(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        await toolstack.create_domain(DomainSpec(2, "netdom", driver_domain=True))
        await toolstack.create_domain(GUEST)
        nic = await toolstack.add_nic(5, NicSpec(backend_domid=2))
        seen: list[bytes] = []
        async with open_client(os.path.join(daemon.directory, "2")) as netdom, \
                trio.open_nursery() as nursery:
            nursery.start_soon(lambda: stand_in_backend(netdom, nic, seen, remove=True))
            await toolstack.remove_device(nic, 10)
        assert seen == [b"0"]
        await assert_device_gone(toolstack.xs, nic)


async def test_unplug_with_no_backend_times_out_clearly(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        disk, nic, _ = await guest_with_devices(toolstack)
        start = trio.current_time()
        with pytest.raises(BackendTimeout, match=r"vbd 51712 of domain 5: the backend "
                           r"/local/domain/0/backend/vbd/5/51712 did not close it within 0.3 s"):
            await toolstack.remove_device(disk, 0.3)
        assert 0.3 <= trio.current_time() - start < 5
        xs = toolstack.xs  # asked to close, left in place
        assert await xs.read(disk.backend / "state") == b"5"
        assert await xs.read(disk.backend / "online") == b"0"
        assert await xs.exists(disk.frontend)
        await toolstack.remove_device(disk, 0.1, force=True)  # xl block-detach --force
        await assert_device_gone(xs, disk)
        # A backend already Closed is not set back to Closing; one gone is cleaned up.
        await xs.write(nic.backend / "state", XenbusState.Closed.encoded())
        await toolstack.remove_device(nic, 5)
        await assert_device_gone(xs, nic)


async def test_adding_twice_or_to_nobody_is_refused(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        await guest_with_devices(toolstack)
        with pytest.raises(DomainExists, match="domain 5 exists"):
            await toolstack.create_domain(GUEST)
        with pytest.raises(DomainExists, match="named 'guest5'"):
            await toolstack.create_domain(DomainSpec(6, "guest5"))
        with pytest.raises(DeviceExists, match="vbd 51712 of domain 5 exists"):
            await toolstack.add_disk(5, DiskSpec("xvda", "/other.img"))
        with pytest.raises(NoSuchDomain):
            await toolstack.add_disk(9, DISK)
        # Without a number a nic takes the next one (libxl__device_nextid).
        assert (await toolstack.add_nic(5, NicSpec())).devid == 1
        assert (await toolstack.add_nic(5, NicSpec(devid=7))).devid == 7
        assert (await toolstack.add_nic(5, NicSpec())).devid == 8


async def everything(xs: AsyncClient, path: str = "/") -> list[str]:
    found = []
    for name in await xs.directory(path):
        below = f"{path.rstrip('/')}/{name}"
        found += [below, *await everything(xs, below)]
    return found


async def test_destroy_leaves_nothing_behind(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        xs = toolstack.xs
        before = await everything(xs)
        devices = await guest_with_devices(toolstack)
        async with open_client(os.path.join(daemon.directory, "5")) as guest, \
                xs.watch("@releaseDomain") as released:
            await guest.write("data/x", "1")
            await released.receive()  # on registration
            seen: list[bytes] = []
            async with trio.open_nursery() as nursery:
                nursery.start_soon(stand_in_backend, xs, devices[0], seen)
                forced = await toolstack.destroy_domain(5, 0.5)
            with trio.fail_after(10):
                assert (await released.receive()).path == "@releaseDomain"
            with pytest.raises(ConnectionResetError):
                await guest.read("data/x")
        assert seen == [b"0"]
        assert forced == [devices[1]]  # the nic had no backend; the console needs none
        after = await everything(xs)
        # /vm and /libxl stay, empty, as on Xen; nothing of domain 5 does.
        assert [p for p in after if p not in before] == ["/vm", "/libxl"]
        assert not await trio.Path(daemon.directory, "5").exists()
        assert await toolstack.destroy_domain(5) == []  # again: nothing to do


async def test_an_hvm_guests_qdisk_and_device_model(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        xs, spec = toolstack.xs, DomainSpec(6, "hvm6", type="hvm")
        await toolstack.create_domain(spec)
        disk = await toolstack.add_disk(6, DiskSpec("hda", "/srv/hvm6.qcow2", format="qcow2"))
        assert disk == DeviceAddress("vbd", 6, 768, 0, "qdisk")
        assert disk.backend == "/local/domain/0/backend/qdisk/6/768"
        assert await xs.read(disk.backend / "params") == b"qcow2:/srv/hvm6.qcow2"
        # A nic made with the domain is emulated too; one hotplugged later is PV only.
        made = await toolstack.add_nic(6, NicSpec(model="e1000"))
        hot = await toolstack.add_nic(6, NicSpec(), hotplug=True)
        assert await xs.read(made.backend / "type") == b"vif_ioemu"
        assert await xs.read(hot.backend / "type") == b"vif"
        assert await toolstack.devices(6) == [disk, made, hot]  # found again from /libxl
        # Nobody plays qemu: no "running", no VNC nodes; the rest stays for destroy.
        with pytest.raises(DeviceModelTimeout, match=r"did not report running within 0\.2 s"):
            await toolstack.start_device_model(spec, 4242, wait=0.2)
        assert await xs.read("/local/domain/6/image/device-model-pid") == b"4242"
        assert not await xs.exists("/local/domain/6/console/vnc-port")
        # libxl__dm_active (the pid) says a device model runs: its directory goes.
        assert set(await toolstack.destroy_domain(6, 0.1)) == {disk, made, hot}
        assert not await xs.exists("/local/domain/0/device-model/6")
        assert not await xs.exists("/local/domain/0/backend")


def reference_tool(path: str) -> str:
    if not os.path.exists(path):
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"{path} is required (XS_REQUIRE_REFERENCE=1) but absent")
        pytest.skip(f"{path} absent: Debian's xenstore-utils is not installed")
    return path


LS_LINE = re.compile(r'(?P<path>\S+) = "(?P<value>.*)"\s+\((?P<perms>[^)]*)\)\Z')


async def xenstore_ls(socket_path: str, path: str) -> dict[str, tuple[str, list[str]]]:
    """``xenstore-ls -f -p path`` run against ``socket_path``: path -> (value, perms)."""
    result = await trio.run_process(
        [reference_tool(XENSTORE_LS), "-f", "-p", path], capture_stdout=True,
        capture_stderr=True, env={**os.environ, "XENSTORED_PATH": socket_path})
    shown = {}
    for line in result.stdout.decode().splitlines():
        match = LS_LINE.match(line)
        assert match, line
        shown[match["path"]] = (match["value"], match["perms"].split(","))
    return shown


async def test_debians_xenstore_ls_shows_the_layout(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        await guest_with_devices(toolstack)
    shown = await xenstore_ls(daemon.socket_path, "/")
    for entry in expected_entries():
        assert shown[entry.path] == (entry.value, list(entry.perms)), entry.path
    # As the guest sees it, relative to its home: its frontends and their backends.
    as_guest = await xenstore_ls(os.path.join(daemon.directory, "5"), "device/vif")
    assert as_guest["device/vif/0/backend"] == ("/local/domain/0/backend/vif/5/0", ["n5", "r0"])
    assert as_guest["device/vif/0/mtu"] == ("1500", ["n0", "r5"])
