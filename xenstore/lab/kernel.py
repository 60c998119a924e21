"""A simulated guest kernel: what a Linux domU does with the store, through its own socket.

It connects to the guest's domain socket, so everything it does it does as that
domain, with a guest's rights: the store is the only channel it shares with dom0.
It behaves as a Linux PV guest does:

- its frontends (block, network) find ``device/vbd/*`` and ``device/vif/*`` and
  go through the XenBus handshake with dom0's backends;
- it advertises ``control/feature-poweroff``, ``-reboot``, ``-suspend`` and acts on
  ``control/shutdown``: it acknowledges (writes the node empty, as Linux does),
  closes its devices and tells the hypervisor it shut down for that reason;
- it follows ``memory/target`` as the balloon driver does, and brings vCPUs up and
  down as ``cpu/<n>/availability`` says;
- a guest agent writes ``data/`` (OS name, memory) and ``attr/`` (the IP address of
  each vif once connected), as xe-guest-utilities do;
- its console (``hvc0``) prints a boot log and a login prompt that echoes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient, open_client
from xenstore.xenbus import FrontendBus, XenbusState
from xenstore.xenbus.drivers import Numbers
from xenstore.xenbus.drivers.block import Blkfront
from xenstore.xenbus.drivers.console import ConsoleRing
from xenstore.xenbus.drivers.net import Netfront
from xenstore.xenbus.hypervisor import EventChannel
from xenstore.xenbus.paths import domain_home

log = logging.getLogger("xenstore.lab")

SHUTDOWN_REQUESTS = ("poweroff", "halt", "reboot", "suspend", "crash")
#: How long a kernel takes to follow a new balloon target (a real one takes a while).
BALLOON_DELAY = 0.05


@dataclass
class KernelCalls:
    """What the kernel tells the hypervisor (hypercalls), as callbacks of the host."""

    shutdown: Callable[[str], Awaitable[None]]
    memory: Callable[[int], None]
    vcpus: Callable[[int], None]


@dataclass
class PrimaryConsole:
    """hvc0: the console page and event channel the domain builder set up."""

    ring: ConsoleRing
    channel: EventChannel

    async def write(self, data: bytes) -> None:
        while data:
            taken = self.ring.put(data, outward=True)
            data = data[taken:]
            self.channel.notify()
            if data:
                await self.channel.wait()

    async def read(self) -> bytes:
        while True:
            data = self.ring.take(outward=False)
            if data:
                return data
            await self.channel.wait()


@dataclass
class GuestKernel:
    """One guest's kernel; :meth:`run` it until the guest shuts down."""

    domid: int
    name: str
    socket_path: str
    calls: KernelCalls
    console: PrimaryConsole | None = None
    memory_kib: int = 0
    vcpus: int = 1
    #: It has PV drivers: frontends, control/shutdown (an HVM guest with
    #: xen_platform_pci=0 has neither: only the ACPI power button reaches it).
    pv_drivers: bool = True
    #: Restored or migrated: it resumes where it was instead of booting.
    resumed: bool = False
    #: Set once the kernel has booted (its features written).
    booted: trio.Event = field(default_factory=trio.Event)
    #: Set while the domain may run: a paused domain acts on nothing until unpaused.
    running: trio.Event = field(default_factory=trio.Event)
    #: ACPI events from the (emulated) platform: the power button, with -F.
    acpi: trio.MemorySendChannel[str] | None = None
    _acpi_in: trio.MemoryReceiveChannel[str] | None = None
    buses: list[FrontendBus] = field(default_factory=list)

    @property
    def home(self) -> str:
        return domain_home(self.domid)

    def __post_init__(self) -> None:
        self.running.set()
        self.acpi, self._acpi_in = trio.open_memory_channel[str](4)

    def pause(self) -> None:
        self.running = trio.Event()

    def unpause(self) -> None:
        self.running.set()

    async def run(self) -> None:
        async with open_client(self.socket_path) as xs, trio.open_nursery() as nursery:
            grants, ports = Numbers.grant_refs(), Numbers.ports()
            self.buses = [] if not self.pv_drivers else [
                FrontendBus(xs, self.domid, "vbd",
                            functools.partial(Blkfront, grants=grants, ports=ports)),
                FrontendBus(xs, self.domid, "vif",
                            functools.partial(Netfront, grants=grants, ports=ports)),
            ]
            for bus in self.buses:
                await nursery.start(bus.run)
            if self.console is not None:
                nursery.start_soon(self._console, self.console)
            await self._advertise(xs)
            nursery.start_soon(self._balloon, xs)
            nursery.start_soon(self._vcpus, xs)
            nursery.start_soon(self._agent, xs)
            self.booted.set()
            reason = await self._wait_for_shutdown(xs)
            await self._close_devices()
            nursery.cancel_scope.cancel()
        await self.calls.shutdown(reason)

    async def _advertise(self, xs: AsyncClient) -> None:
        """control/feature-*: what this kernel answers (libxl gives the guest these nodes)."""
        if self.pv_drivers:
            for feature in ("poweroff", "reboot", "suspend"):
                with contextlib.suppress(errors.EACCES):
                    await xs.write(f"{self.home}/control/feature-{feature}", "1")

    async def _wait_for_shutdown(self, xs: AsyncClient) -> str:
        """A shutdown request: through control/shutdown (PV drivers), or the ACPI power
        button (the platform's, which any kernel answers)."""
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                found: list[str] = []

                async def acpi() -> None:
                    assert self._acpi_in is not None
                    request = await self._acpi_in.receive()
                    await self.running.wait()
                    found.append(request)
                    scope.cancel()

                async def pv() -> None:
                    found.append(await self._pv_request(xs))
                    scope.cancel()

                nursery.start_soon(acpi)
                nursery.start_soon(pv)
        if self.console is not None:
            with contextlib.suppress(Exception):
                await self.console.write(f"\r\nThe system is going down for "
                                         f"{found[0]} NOW!\r\n".encode())
        return found[0]

    async def _pv_request(self, xs: AsyncClient) -> str:
        path = f"{self.home}/control/shutdown"
        async with xs.watch(path) as events:
            async for _ in events:
                try:
                    request = (await xs.read(path)).decode()
                except errors.ENOENT:
                    continue
                if not self.pv_drivers or request not in SHUTDOWN_REQUESTS:
                    continue
                await self.running.wait()  # a paused guest acknowledges once unpaused
                await xs.write(path, "")  # the acknowledgement libxl waits for
                log.info("domain %d: shutdown request %r", self.domid, request)
                return "poweroff" if request == "halt" else request
        raise ConnectionResetError("the guest's connection closed")

    async def _close_devices(self) -> None:
        """Close every frontend, as a kernel going down does (bounded)."""
        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                for bus in self.buses:
                    for frontend in bus.devices.values():
                        frontend.close()
                        nursery.start_soon(frontend.closed.wait)

    async def _balloon(self, xs: AsyncClient) -> None:
        path = f"{self.home}/memory/target"
        async with xs.watch(path) as events:
            async for _ in events:
                with contextlib.suppress(errors.ENOENT, ValueError):
                    target = int(await xs.read(path))
                    await self.running.wait()
                    await trio.sleep(BALLOON_DELAY)
                    self.memory_kib = target
                    self.calls.memory(target)

    async def _vcpus(self, xs: AsyncClient) -> None:
        cpu = f"{self.home}/cpu"
        async with xs.watch(cpu) as events:
            async for _ in events:
                online = 0
                with contextlib.suppress(errors.ENOENT):
                    for n in await xs.directory(cpu):
                        with contextlib.suppress(errors.ENOENT):
                            if await xs.read(f"{cpu}/{n}/availability") == b"online":
                                online += 1
                if online and online != self.vcpus:
                    self.vcpus = online
                    self.calls.vcpus(online)

    async def _agent(self, xs: AsyncClient) -> None:
        """xe-guest-utilities' daemon: data/ once, attr/vif/<n>/ipv4/0 as vifs connect."""
        with contextlib.suppress(errors.EACCES):
            await xs.write(f"{self.home}/data/os_name", "Debian GNU/Linux 12 (pyxl)")
            await xs.write(f"{self.home}/data/os_uname", "6.1.0-pyxl")
            await xs.write(f"{self.home}/data/meminfo_total", str(self.memory_kib))
        vif_dir = f"{self.home}/device/vif"
        announced: set[str] = set()
        async with xs.watch(vif_dir) as events:
            async for _ in events:
                with contextlib.suppress(errors.ENOENT):
                    for devid in await xs.directory(vif_dir):
                        state = await _read(xs, f"{vif_dir}/{devid}/state")
                        if XenbusState.parse(state) is XenbusState.Connected \
                                and devid not in announced:
                            announced.add(devid)
                            await xs.write(f"{self.home}/attr/vif/{devid}/ipv4/0",
                                           guest_ip(self.domid, int(devid)))

    async def _console(self, console: PrimaryConsole) -> None:
        prompt = f"\r\n{self.name} login: ".encode()
        if self.resumed:
            await console.write(b"\r\nPM: resume devices took 0.010 seconds\r\n" + prompt)
        else:
            await console.write(boot_log(self.name, self.domid, self.memory_kib, self.vcpus))
            await console.write(prompt)
        while True:
            typed = await console.read()
            # The line discipline echoes; a newline ends the (always refused) login.
            echoed = typed.replace(b"\r", b"\r\n").replace(b"\n\n", b"\n")
            await console.write(echoed)
            if b"\r" in typed or b"\n" in typed:
                await console.write(b"\r\nLogin incorrect" + prompt)


async def _read(xs: AsyncClient, path: str) -> bytes | None:
    try:
        return await xs.read(path)
    except errors.ENOENT:
        return None


def guest_ip(domid: int, devid: int) -> str:
    """The address a guest's DHCP would have got on the lab's bridge."""
    return f"10.{devid}.{domid // 250}.{domid % 250 + 2}"


def boot_log(name: str, domid: int, memory_kib: int, vcpus: int) -> bytes:
    lines = [
        "Linux version 6.1.0-pyxl (simulated by pyxl) #1 SMP PREEMPT_DYNAMIC",
        "Booting paravirtualized kernel on Xen",
        f"Xen version: 4.17 (preserve-AD), domain {domid}",
        f"Memory: {memory_kib}K available",
        f"smp: Brought up 1 node, {vcpus} CPU{'s' if vcpus != 1 else ''}",
        "xen:grant_table: Grant tables using version 1 layout",
        "xen_blkfront: probing devices",
        "xen_netfront: Initialising Xen virtual ethernet driver",
        "Run /sbin/init as init process",
        f"Debian GNU/Linux 12 {name} hvc0",
    ]
    return "".join(line + "\r\n" for line in lines).encode()
