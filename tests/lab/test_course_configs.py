"""The course's two configs, created through the host's commands as `pyxl create` sends
them: every device of the PV and the HVM guest reaches Connected; attach, detach and
lists work as xl's; a bad config gets xl's message, never a traceback."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.conftest import OurDaemon
from tests.xenbus.helpers import wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.lab.commands import Commands
from xenstore.lab.host import Host, HostOptions
from xenstore.lab.labmain import prepare
from xenstore.lab.xen import LabError
from xenstore.xenbus import DeviceAddress, XenbusState

S = XenbusState
DEADLINE = 30



@pytest.fixture
async def lab(daemon: OurDaemon) -> AsyncIterator[tuple[Commands, AsyncClient, str]]:
    examples = prepare(daemon.directory)
    async with open_client(daemon.socket_path) as xs, trio.open_nursery() as nursery:
        host = Host(xs, HostOptions(daemon.directory))
        await nursery.start(host.run)
        yield Commands(host), xs, examples
        nursery.cancel_scope.cancel()


async def call(commands: Commands, cmd: str, **args: Any) -> Any:
    return await commands.handlers[cmd]({"cmd": cmd, **args})


async def all_connected(xs: AsyncClient, commands: Commands, domid: int) -> list[Any]:
    disks = await call(commands, "block_list", domain=str(domid))
    nics = await call(commands, "network_list", domain=str(domid))
    for row in disks + nics:
        address = DeviceAddress.of_backend(row["backend"])
        await wait_states(xs, address, S.Connected, S.Connected)
    return [*(await call(commands, "block_list", domain=str(domid))),
            *(await call(commands, "network_list", domain=str(domid)))]


async def test_the_pv_guest_of_the_course(lab: tuple[Commands, AsyncClient, str]) -> None:
    commands, xs, examples = lab
    path = os.path.join(examples, "debian-pv.cfg")
    with trio.fail_after(DEADLINE):
        text = await trio.Path(path).read_text()
        created = await call(commands, "create", config=text, path=path)
        assert created == {"domid": 1, "name": "debian-pv", "warnings": []}
        rows = await all_connected(xs, commands, 1)
        assert [(r.get("vdev"), r["state"]) for r in rows] == [
            ("xvda", 4), ("xvdc", 4), (None, 4)]
        assert rows[2]["mac"] == "00:16:3e:12:34:56"
        assert await xs.read("/local/domain/0/backend/vif/1/0/bridge") == b"Br0"
        # block-attach / -detach, network-attach, as the course's exercises do.
        image = Path(examples).parent / "images" / "debian.img"
        added = await call(commands, "block_attach", domain="debian-pv",
                           spec=f"{image},raw,xvdb,r")
        rows = await all_connected(xs, commands, 1)
        assert added == {"devid": 51728} and [r.get("vdev") for r in rows][:3] == [
            "xvda", "xvdb", "xvdc"]
        await call(commands, "block_detach", domain="debian-pv", device="xvdb")
        assert not await xs.exists("/local/domain/1/device/vbd/51728")
        await call(commands, "network_attach", domain="debian-pv", spec=["bridge=Br0"])
        rows = await all_connected(xs, commands, 1)
        assert [r["idx"] for r in rows if "idx" in r] == [0, 1]


async def test_the_hvm_guest_of_the_course(lab: tuple[Commands, AsyncClient, str]) -> None:
    commands, xs, examples = lab
    path = os.path.join(examples, "win-hvm.cfg")
    with trio.fail_after(DEADLINE):
        text = await trio.Path(path).read_text()
        created = await call(commands, "create", config=text, path=path)
        assert created["name"] == "win-hvm"
        rows = await all_connected(xs, commands, created["domid"])
        assert [(r.get("vdev"), r["state"]) for r in rows] == [
            ("hda", 4), ("hdc", 4), (None, 4)]
        assert "/backend/qdisk/" in rows[0]["backend"]


@pytest.mark.parametrize(("text", "message"), [
    ('name = "x"\nmemory = "lots"\n', "cfg:2: parameter `memory' is not a valid number"),
    ('name = "x"\nkernel = "/k"\ndisk = [ "/nonexistent.img,raw,xvda,w" ]\n',
     "failed to stat: /nonexistent.img: No such file or directory"),
    ('name = "x"\ntype = "xen"\n', "Invalid domain type xen."),
    ('name = "x"\nmemory = = 3\n', "config parsing error near `='"),
])
async def test_a_bad_config_gets_xls_message(
    lab: tuple[Commands, AsyncClient, str], text: str, message: str,
) -> None:
    commands = lab[0]
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace("?", r"\?")):
        await call(commands, "create", config=text, path="/tmp/bad.cfg")


async def test_an_hvm_guest_without_pv_drivers_needs_the_acpi_button(
    lab: tuple[Commands, AsyncClient, str],
) -> None:
    """The course's exercise of a guest that never acknowledges shutdown: an HVM guest
    with xen_platform_pci = 0 has no PV control interface; xl shutdown says so, and
    shutdown -F presses the ACPI power button, which it does answer."""
    commands, xs, examples = lab
    path = os.path.join(examples, "win-hvm.cfg")
    with trio.fail_after(DEADLINE):
        text = await trio.Path(path).read_text()
        created = await call(commands, "create", config=text, path=path,
                             overrides=["xen_platform_pci=0"])
        domid = created["domid"]
        guest = commands.host.guest(str(domid))
        assert guest.kernel is not None
        await guest.kernel.booted.wait()
        # libxl made the node for the guest; a kernel without PV drivers never says "1"
        assert await xs.read(f"/local/domain/{domid}/control/feature-poweroff") == b""
        with pytest.raises(LabError, match=r'(?s)PV control interface not available.*Use "-F"'):
            await call(commands, "shutdown", domain="win-hvm")
        # Paused, it answers nothing; unpaused, the button works.
        await call(commands, "pause", domain="win-hvm")
        asked = await call(commands, "shutdown", domain="win-hvm", fallback=True)
        assert asked == {"domids": [domid], "acpi": True}
        with trio.move_on_after(0.3):
            await guest.down.wait()
        assert not guest.down.is_set()
        await call(commands, "unpause", domain="win-hvm")
        await call(commands, "wait_gone", domids=[domid])
        assert guest.reason == "poweroff" and not await xs.exists(f"/local/domain/{domid}")
