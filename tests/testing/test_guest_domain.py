"""xenstore.testing.guest_domain: the toolstack played for a split driver's tests."""

from __future__ import annotations

import pytest
import trio

from xenstore import errors, testing
from xenstore.aclient import AsyncClient, open_client
from xenstore.testing import TestDaemon, guest_domain
from xenstore.xenbus import XenbusState
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec


async def nothing_of(xs: AsyncClient, domid: int) -> None:
    for path in (f"/local/domain/{domid}", f"/libxl/{domid}",
                 "/local/domain/0/backend/vbd", "/local/domain/0/backend/vif"):
        assert not await xs.exists(path), path
    assert await xs.directory("/vm") == []


@pytest.mark.xenstored(guests=True)
async def test_a_guest_with_devices_for_the_test(xenstored: TestDaemon) -> None:
    disk, nic = DiskSpec("xvda", "/srv/guest.img"), NicSpec(mac="00:16:3e:01:02:03")
    async with guest_domain(xenstored, 5, disks=[disk], nics=[nic], consoles=[ConsoleSpec()],
                            wait=0.2) as guest:
        assert (guest.domid, guest.home) == (5, "/local/domain/5")
        assert guest.socket_path == xenstored.guest_socket(5)
        assert await trio.Path(guest.socket_path).exists()
        assert [d.type for d in guest.devices] == ["vbd", "vif", "console"]
        async with open_client(guest.socket_path) as xs:  # acts as domain 5
            vbd = guest.disks[0]
            assert await xs.read(vbd.frontend / "backend") == vbd.backend.encode()
            assert await xs.read(guest.nics[0].frontend / "mac") == b"00:16:3e:01:02:03"
            await xs.write(vbd.frontend / "state", XenbusState.Initialised.encoded())
            with pytest.raises(errors.EACCES):
                await xs.write(vbd.backend / "state", XenbusState.Connected.encoded())
        await guest.toolstack.remove_device(guest.nics[0], 0.1, force=True)
    assert not await trio.Path(guest.socket_path).exists()
    async with open_client(xenstored.socket_path) as xs:
        await nothing_of(xs, 5)


async def test_the_domain_goes_even_when_the_test_fails() -> None:
    with testing.xenstored(guests=True) as daemon:
        spec = DomainSpec(9, "doomed", type="pvh")
        with pytest.raises(RuntimeError, match="the test failed"):
            async with guest_domain(daemon, spec, disks=[DiskSpec("xvdb", "/i")], wait=0.1):
                raise RuntimeError("the test failed")
        async with open_client(daemon.socket_path) as xs:
            await nothing_of(xs, 9)


async def test_a_daemon_without_guest_sockets_says_so() -> None:
    with testing.xenstored() as daemon:
        assert daemon.domain_dir is None
        with pytest.raises(ValueError, match="guests=True"):
            async with guest_domain(daemon, 5):
                pass
