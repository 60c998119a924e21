"""The simulated host over a real daemon: a guest boots, connects its devices, prints on
its console, follows the toolstack, and goes as xl's monitor says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.lab.host import GuestConfig, Host, HostOptions
from xenstore.lab.xen import RunState
from xenstore.xenbus import DeviceAddress, XenbusState, vdev_to_devid
from xenstore.xenbus.specs import DiskSpec, DomainSpec, NicSpec

S = XenbusState
DEADLINE = 20



@pytest.fixture
async def host(daemon: OurDaemon) -> AsyncIterator[tuple[Host, AsyncClient]]:
    async with open_client(daemon.socket_path) as xs, trio.open_nursery() as nursery:
        host = Host(xs, HostOptions(daemon.directory))
        await nursery.start(host.run)
        yield host, xs
        nursery.cancel_scope.cancel()


def config(image: Path, **domain: object) -> GuestConfig:
    return GuestConfig(DomainSpec(1, "guest1", memory_kib=256 * 1024, **domain),  # type: ignore[arg-type]
                       disks=[DiskSpec("xvda", str(image))],
                       nics=[NicSpec(bridge="Br0", mac="00:16:3e:00:00:01")])


async def test_a_guest_boots_connects_and_powers_off(
    host: tuple[Host, AsyncClient], tmp_path: Path,
) -> None:
    lab, xs = host
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    with trio.fail_after(DEADLINE):
        guest = await lab.create(config(image))
        domid = guest.domain.domid
        assert domid == 1
        disk = DeviceAddress("vbd", domid, vdev_to_devid("xvda"), 0)
        nic = DeviceAddress("vif", domid, 0, 0)
        await wait_states(xs, disk, S.Connected, S.Connected)
        await wait_states(xs, nic, S.Connected, S.Connected)
        home = f"/local/domain/{domid}"
        assert await xs.read(f"{home}/control/feature-poweroff") == b"1"
        assert guest.console is not None
        receive = guest.console.attach()
        while b"login: " not in guest.console.scrollback:
            await receive.receive()
        assert b"Booting paravirtualized kernel on Xen" in guest.console.scrollback
        guest.console.type_in(b"root\r")
        echoed = b""
        while b"Login incorrect" not in echoed:
            echoed += await receive.receive()
        assert echoed.startswith(b"root")
        await xs.write(f"{home}/memory/target", str(128 * 1024))
        async with xs.watch(f"{home}/attr") as events:
            async for _ in events:
                if await xs.exists(f"{home}/attr/vif/0/ipv4/0"):
                    break
        await xs.write(f"{home}/control/shutdown", "poweroff")
        await guest.gone.wait()
        assert guest.reason == "poweroff"
        assert not await xs.exists(home)
        assert domid not in lab.xen.domains


async def test_reboot_makes_a_new_domain_with_the_same_name_and_uuid(
    host: tuple[Host, AsyncClient], tmp_path: Path,
) -> None:
    lab, xs = host
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    with trio.fail_after(DEADLINE):
        guest = await lab.create(config(image))
        assert guest.kernel is not None
        await guest.kernel.booted.wait()
        await xs.write("/local/domain/1/control/shutdown", "reboot")
        await guest.gone.wait()
        async with xs.watch("/local/domain/2/name") as events:
            async for _ in events:
                if await xs.exists("/local/domain/2/name"):
                    break
        again = lab.guest("guest1")
        assert again.domain.domid == 2 and again.domain.uuid == guest.domain.uuid
        assert again.domain.state is RunState.RUNNING
        await lab.destroy(2)


async def test_an_hvm_guest_with_qcow2_and_cdrom_connects_through_qdisk(
    host: tuple[Host, AsyncClient], tmp_path: Path,
) -> None:
    lab, xs = host
    disk, iso = tmp_path / "win.qcow2", tmp_path / "win.iso"
    disk.write_bytes(bytes(1 << 20))
    iso.write_bytes(bytes(1 << 20))
    hvm = GuestConfig(DomainSpec(1, "win-hvm", type="hvm", memory_kib=512 * 1024),
                      disks=[DiskSpec("hda", str(disk), format="qcow2"),
                             DiskSpec("hdc", str(iso), mode="r", cdrom=True)],
                      nics=[NicSpec(bridge="Br0", mac="00:16:3e:00:00:02")])
    with trio.fail_after(DEADLINE):
        guest = await lab.create(hvm)
        domid = guest.domain.domid
        for vdev in ("hda", "hdc"):
            address = DeviceAddress("vbd", domid, vdev_to_devid(vdev), 0, "qdisk")
            await wait_states(xs, address, S.Connected, S.Connected)
        assert (await xs.read(f"/local/domain/0/backend/qdisk/{domid}/"
                              f"{vdev_to_devid('hda')}/params")).startswith(b"qcow2:")
        cdrom = DeviceAddress("vbd", domid, vdev_to_devid("hdc"), 0, "qdisk")
        assert await xs.read(cdrom.backend / "info") == b"7"  # read-only, removable cdrom
        await lab.destroy(domid)
        assert not await xs.exists(f"/local/domain/{domid}")
