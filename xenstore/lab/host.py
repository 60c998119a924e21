"""``pyxl host``: a Xen host on a laptop, run against a XenStore daemon as dom0.

It composes what a real host has:

- the hypervisor (:class:`~xenstore.lab.xen.Xen`): domains, states, memory, CPU time;
- the domain builder's part: grant the console page and its event channel;
- the toolstack (:class:`~xenstore.xenbus.toolstack.Toolstack`): libxl's store layout;
- dom0's backends, from the xenbus library: block, network, and xenconsoled's part
  for the primary consoles (:mod:`.consoled`);
- xl's monitoring side: a guest that shuts down is destroyed or restarted as its
  ``on_poweroff``/``on_reboot``/``on_crash`` say;
- a simulated kernel per guest (:mod:`.kernel`), connected through that guest's own
  domain socket.

``pyxl`` commands reach it through :mod:`.rpc`; the host publishes its socket at
``/tool/pyxl/host``. The commands' logic lives in :mod:`.commands`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient, AsyncTransaction
from xenstore.lab.consoled import ConsoleLog, open_console
from xenstore.lab.kernel import GuestKernel, KernelCalls, PrimaryConsole
from xenstore.lab.xen import Domain, LabError, ShutdownReason, Xen
from xenstore.xenbus import BackendBus
from xenstore.xenbus.drivers.block import Blkback
from xenstore.xenbus.drivers.console import ConsoleRing
from xenstore.xenbus.drivers.net import Netback
from xenstore.xenbus.hypervisor import Hypervisor
from xenstore.xenbus.paths import domain_home
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec
from xenstore.xenbus.toolstack import Toolstack

log = logging.getLogger("xenstore.lab")

#: The bridges of the simulated host (the course's Br0 among them).
BRIDGES = ("xenbr0", "Br0", "br0")
#: How long a dead guest's backends get to close before its devices go anyway.
DESTROY_WAIT = 1.0


@dataclass
class GuestConfig:
    """What ``pyxl create`` asks for: the specs and the actions. ``domain``'s domid is
    a placeholder: the hypervisor chooses the real one at creation."""

    domain: DomainSpec
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_crash: str = "destroy"
    #: The guest has PV drivers (frontends, control/shutdown); an HVM guest with
    #: ``xen_platform_pci = 0`` has not.
    pv_drivers: bool = True


@dataclass
class Guest:
    """A running guest: its hypervisor record, config, kernel and console."""

    domain: Domain
    config: GuestConfig
    spec: DomainSpec
    scope: trio.CancelScope
    kernel: GuestKernel | None = None
    console: ConsoleLog | None = None
    #: Set once it is gone (destroyed), for ``shutdown -w`` and others to wait on.
    gone: trio.Event = field(default_factory=trio.Event)
    #: Set when it shuts down (before any action on it).
    down: trio.Event = field(default_factory=trio.Event)
    reason: str | None = None


@dataclass
class HostOptions:
    domain_dir: str
    name: str = "pyxl"
    total_kib: int = 16 << 20
    cpus: int = 4
    socket_path: str | None = None


class Host:
    """The simulated host over ``xs`` (a dom0 connection)."""

    def __init__(self, xs: AsyncClient, options: HostOptions,
                 clock: Callable[[], float] | None = None) -> None:
        self.xs = xs
        self.options = options
        self.xen = Xen(options.total_kib, options.cpus) if clock is None else Xen(
            options.total_kib, options.cpus, clock=clock)
        self.toolstack = Toolstack(xs)
        self.grants = Hypervisor(os.path.join(options.domain_dir, "pyxl-hv"))
        self.guests: dict[int, Guest] = {}
        self.nursery: trio.Nursery | None = None
        self.buses: dict[str, BackendBus] = {}

    # -- running -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
                  ) -> None:
        await self.toolstack.init_dom0()
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            self.buses = {
                "vbd": BackendBus(self.xs, 0, "vbd", Blkback),
                # qemu's disk backend: libxl gives it qcow2 and the other image formats.
                "qdisk": BackendBus(self.xs, 0, "qdisk", Blkback),
                "vif": BackendBus(self.xs, 0, "vif",
                                  functools.partial(Netback, bridges=BRIDGES)),
            }
            for bus in self.buses.values():
                await nursery.start(bus.run)
            task_status.started()

    # -- guests ------------------------------------------------------------------

    def guest(self, name_or_id: str | int) -> Guest:
        domain = self.xen.find(str(name_or_id))
        guest = self.guests.get(domain.domid)
        if guest is None:
            raise LabError(f"{name_or_id} is not a guest of this host")
        return guest

    async def create(self, config: GuestConfig, *, domid: int | None = None,
                     resumed: bool = False) -> Guest:
        """Build the domain (hypervisor, store, devices) and boot its kernel (or, for a
        restored guest, resume it)."""
        assert self.nursery is not None
        template = config.domain
        domain = self.xen.create(template.name, template.uuid, template.type,
                                 template.memory_kib, template.maxmem, template.vcpus,
                                 template.vcpu_slots, domid=domid)
        spec = dataclasses.replace(template, domid=domain.domid)
        guest = Guest(domain, config, spec, trio.CancelScope())
        self.guests[domain.domid] = guest  # known as soon as the store shows it
        try:
            await self.toolstack.create_domain(spec)
        except Exception:
            del self.guests[domain.domid]
            self.xen.destroy(domain.domid)
            raise
        try:
            console = self._build_console(guest, resumed)
            await self.toolstack.add_console(domain.domid, console)
            for disk in config.disks:
                await self.toolstack.add_disk(domain.domid, disk)
            for nic in config.nics:
                await self.toolstack.add_nic(domain.domid, nic)
        except Exception:
            await self.destroy(domain.domid)
            raise
        self.nursery.start_soon(self._boot, guest)
        log.info("created domain %d (%s)", domain.domid, domain.name)
        return guest

    def _build_console(self, guest: Guest, resumed: bool = False) -> ConsoleSpec:
        """The console page and channel, as Xen's domain builder makes them."""
        domid = guest.domain.domid
        ref, page = self.grants.grant(domid)
        channel = self.grants.alloc_unbound(domid)
        guest.kernel = GuestKernel(
            domid, guest.domain.name,
            os.path.join(self.options.domain_dir, str(domid)),
            KernelCalls(functools.partial(self._guest_shut_down, guest),
                        functools.partial(self._ballooned, guest),
                        functools.partial(self.xen.set_vcpus, domid)),
            PrimaryConsole(ConsoleRing(page), channel),
            memory_kib=guest.domain.memory_kib, vcpus=guest.domain.vcpus,
            pv_drivers=guest.config.pv_drivers, resumed=resumed)
        guest.console = open_console(self.grants, domid, ref, channel.port)
        return ConsoleSpec(devid=0, ring_ref=ref, port=channel.port)

    def _ballooned(self, guest: Guest, target_kib: int) -> None:
        """The balloon reached ``memory/target``; an HVM guest also holds its video RAM,
        which libxl takes out of the target (xl list shows the two together)."""
        self.xen.set_memory(guest.domain.domid, target_kib + guest.spec.videoram)

    async def _boot(self, guest: Guest) -> None:
        with guest.scope:
            async with trio.open_nursery() as nursery:
                if guest.console is not None:
                    nursery.start_soon(guest.console.serve)
                if guest.kernel is not None:
                    try:
                        await guest.kernel.run()
                    except Exception:
                        log.exception("the kernel of domain %d crashed", guest.domain.domid)
                        await self._guest_shut_down(guest, "crash")
                nursery.cancel_scope.cancel()

    async def _guest_shut_down(self, guest: Guest, reason: str) -> None:
        """The guest's kernel shut down (SCHEDOP_shutdown): act as xl's monitor does."""
        domid = guest.domain.domid
        self.xen.shutdown(domid, ShutdownReason(reason))
        guest.reason = reason
        guest.down.set()
        action = {"poweroff": guest.config.on_poweroff, "reboot": guest.config.on_reboot,
                  "crash": guest.config.on_crash}.get(reason, "preserve")
        log.info("domain %d shut down (%s): %s", domid, reason, action)
        assert self.nursery is not None
        if action in ("destroy", "restart", "rename-restart", "coredump-destroy",
                      "coredump-restart"):
            self.nursery.start_soon(self._after_shutdown, guest, action)

    async def _after_shutdown(self, guest: Guest, action: str) -> None:
        await self.destroy(guest.domain.domid)
        if action.endswith("restart"):
            await self.create(guest.config)

    async def suspend(self, guest: Guest, wait: float = 30.0) -> dict[str, object]:
        """Suspend the guest as ``xl save`` does (``control/shutdown`` = ``suspend``,
        which it acknowledges and acts on); returns its record, then destroys it."""
        from xenstore.lab.saved import state_record

        domid = guest.domain.domid
        home = domain_home(domid)
        if await _read(self.xs, home / "control" / "feature-suspend") != b"1":
            raise LabError(f"domain {domid} does not support suspend "
                           "(no control/feature-suspend)")
        await self.xs.write(home / "control" / "shutdown", "suspend")
        with trio.fail_after(wait):
            await guest.down.wait()
        if guest.reason != "suspend":
            raise LabError(f"domain {domid} shut down ({guest.reason}) instead of suspending")
        scrollback = bytes(guest.console.scrollback) if guest.console is not None else b""
        record = state_record(guest.config, guest.domain.memory_kib, guest.domain.vcpus,
                              scrollback)
        return record

    async def restore(self, record: dict[str, object], name: str | None = None) -> Guest:
        """A new domain (new domid, same uuid) from a saved or migrated record: its
        kernel resumes, its devices connect afresh."""
        import base64

        from xenstore.lab.saved import config_from

        config = config_from(record["config"])  # type: ignore[arg-type]
        if name is not None:
            config.domain = dataclasses.replace(config.domain, name=name)
        guest = await self.create(config, resumed=True)
        if guest.console is not None:
            guest.console.scrollback[:0] = base64.b64decode(str(record.get("console", "")))
        return guest

    async def rename(self, guest: Guest, name: str) -> None:
        """What libxl__domain_rename writes: the name in the home and in /vm."""
        home = domain_home(guest.domain.domid)
        vm = await _read(self.xs, home / "vm")

        async def work(t: AsyncTransaction) -> None:
            await t.write(home / "name", name)
            if vm:
                await t.write(f"{vm.decode()}/name", name)

        await self.xs.retry(work)
        guest.domain.name = name

    def pause(self, guest: Guest) -> None:
        self.xen.pause(guest.domain.domid)
        if guest.kernel is not None:
            guest.kernel.pause()

    def unpause(self, guest: Guest) -> None:
        self.xen.unpause(guest.domain.domid)
        if guest.kernel is not None:
            guest.kernel.unpause()

    def acpi(self, guest: Guest, reason: str) -> None:
        """The platform's power (or reset) button, which ``xl shutdown -F`` presses."""
        if guest.kernel is None or guest.kernel.acpi is None:
            raise LabError(f"domain {guest.domain.domid} has no ACPI")
        with contextlib.suppress(trio.WouldBlock):  # pressed already: more than enough
            guest.kernel.acpi.send_nowait(reason)

    async def destroy(self, domid: int) -> None:
        """``xl destroy``: the guest stops at once; its devices and nodes go; RELEASE."""
        guest = self.guests.pop(domid, None)
        if guest is not None:
            guest.scope.cancel()
            if guest.console is not None:
                guest.console.close()
        await self.toolstack.destroy_domain(domid, DESTROY_WAIT)
        with contextlib.suppress(LabError):
            self.xen.destroy(domid)
        for kind in ("grants", "evtchn"):
            path = os.path.join(self.grants.directory, kind, str(domid))
            with contextlib.suppress(OSError):
                for name in os.listdir(path):
                    os.unlink(os.path.join(path, name))
                os.rmdir(path)
        if guest is not None:
            guest.gone.set()
        log.info("destroyed domain %d", domid)


async def _read(xs: AsyncClient, path: str) -> bytes | None:
    try:
        return await xs.read(path)
    except errors.ENOENT:
        return None
