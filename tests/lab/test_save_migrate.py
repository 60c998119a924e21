"""Save, restore and migrate between two simulated hosts, and the console over the host's
socket: a guest suspends through control/shutdown, comes back with a new domid and the
same name and uuid, and its devices connect again."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.conftest import OurDaemon, short_tempdir
from tests.xenbus.helpers import wait_states
from xenstore.aclient import AsyncClient, open_client
from xenstore.lab.commands import Commands, Server
from xenstore.lab.host import GuestConfig, Host, HostOptions
from xenstore.lab.rpc import HostClient, HostError
from xenstore.xenbus import DeviceAddress, XenbusState, vdev_to_devid
from xenstore.xenbus.specs import DiskSpec, DomainSpec, NicSpec

S = XenbusState
DEADLINE = 30


@pytest.fixture
def hosts_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    directory = short_tempdir("xshosts")
    monkeypatch.setenv("PYXL_HOSTS", directory)
    yield directory


@pytest.fixture
def daemons() -> Iterator[tuple[OurDaemon, OurDaemon]]:
    a, b = OurDaemon("--domain-dir", None), OurDaemon("--domain-dir", None)
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


@asynccontextmanager
async def running_host(daemon: OurDaemon, name: str) -> AsyncIterator[tuple[Host, AsyncClient]]:
    async with open_client(daemon.socket_path) as xs, trio.open_nursery() as nursery:
        host = Host(xs, HostOptions(daemon.directory, name))
        await nursery.start(host.run)
        await nursery.start(Server(Commands(host), os.path.join(daemon.directory,
                                                                 "pyxl-host.sock")).run)
        yield host, xs
        nursery.cancel_scope.cancel()


def config(image: Path) -> GuestConfig:
    return GuestConfig(DomainSpec(1, "web", memory_kib=256 * 1024),
                       disks=[DiskSpec("xvda", str(image))],
                       nics=[NicSpec(bridge="Br0", mac="00:16:3e:00:00:07")])


async def call(socket_path: str, cmd: str, **args: object) -> object:
    def sync() -> object:
        with HostClient(socket_path) as client:
            return client.call(cmd, **args)
    return await trio.to_thread.run_sync(sync)


async def connected(xs: AsyncClient, domid: int) -> None:
    await wait_states(xs, DeviceAddress("vbd", domid, vdev_to_devid("xvda"), 0),
                      S.Connected, S.Connected)
    await wait_states(xs, DeviceAddress("vif", domid, 0, 0), S.Connected, S.Connected)


async def test_save_and_restore(
    daemons: tuple[OurDaemon, OurDaemon], hosts_dir: str, tmp_path: Path,
) -> None:
    daemon = daemons[0]
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    sock = os.path.join(daemon.directory, "pyxl-host.sock")
    with trio.fail_after(DEADLINE):
        async with running_host(daemon, "alpha") as (host, xs):
            guest = await host.create(config(image))
            await connected(xs, 1)
            saved = tmp_path / "web.save"
            await call(sock, "save", domain="web", file=str(saved))
            assert saved.read_bytes().startswith(b"Xen saved domain, xl format\n")
            assert not await xs.exists("/local/domain/1")
            assert [d["name"] for d in await call(sock, "list")] == ["Domain-0"]  # type: ignore[union-attr]
            restored = await call(sock, "restore", file=str(saved))
            assert restored == {"domid": 2, "name": "web"}
            await connected(xs, 2)
            again = host.guest("web")
            assert again.domain.uuid == guest.domain.uuid
            assert again.console is not None
            assert b"login:" in again.console.scrollback  # the old scrollback came along
            assert b"PM: resume" in again.console.scrollback
            with pytest.raises(HostError, match="wrong magic number"):
                bogus = tmp_path / "bogus"
                bogus.write_bytes(b"not a save file")
                await call(sock, "restore", file=str(bogus))


async def test_migrate_between_two_hosts(
    daemons: tuple[OurDaemon, OurDaemon], hosts_dir: str, tmp_path: Path,
) -> None:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    a_sock = os.path.join(daemons[0].directory, "pyxl-host.sock")
    with trio.fail_after(DEADLINE):
        async with running_host(daemons[0], "alpha") as (alpha, xs_a), \
                running_host(daemons[1], "beta") as (beta, xs_b):
            guest = await alpha.create(config(image))
            await connected(xs_a, 1)
            result = await call(a_sock, "migrate", domain="web", host="beta")
            assert isinstance(result, dict) and result["lines"][-1] == "Migration successful."
            assert not await xs_a.exists("/local/domain/1")
            moved = beta.guest("web")
            assert moved.domain.uuid == guest.domain.uuid
            domid = moved.domain.domid
            assert await xs_b.read(f"/local/domain/{domid}/name") == b"web"
            await connected(xs_b, domid)
            b_sock = os.path.join(daemons[1].directory, "pyxl-host.sock")
            with pytest.raises(HostError, match="no simulated host named 'gamma'"):
                await call(b_sock, "migrate", domain="web", host="gamma")
            assert beta.guest("web").domain.domid == domid  # a failed migration costs nothing


async def test_console_over_the_hosts_socket(
    daemons: tuple[OurDaemon, OurDaemon], hosts_dir: str, tmp_path: Path,
) -> None:
    daemon = daemons[0]
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(1 << 20))
    sock = os.path.join(daemon.directory, "pyxl-host.sock")
    with trio.fail_after(DEADLINE):
        async with running_host(daemon, "alpha") as (host, _xs):
            guest = await host.create(config(image))
            assert guest.kernel is not None
            await guest.kernel.booted.wait()

            def session() -> bytes:
                with HostClient(sock, timeout=10) as client:
                    client.call("console", domain="web")
                    seen = client.leftover()
                    while b"login: " not in seen:
                        seen += client.sock.recv(4096)
                    client.sock.sendall(b"student\r")
                    while b"Login incorrect" not in seen:
                        seen += client.sock.recv(4096)
                    return seen

            seen = await trio.to_thread.run_sync(session)
            assert b"Booting paravirtualized kernel on Xen" in seen and b"student" in seen
