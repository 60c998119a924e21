"""The toolstack's part: domains and devices made and unmade in the store as libxl does.

::

    async with open_client(dom0_socket) as xs:
        host = Toolstack(xs)
        await host.init_dom0()
        await host.create_domain(DomainSpec(5, "guest5"))  # then DIR/5 is its socket
        disk = await host.add_disk(5, DiskSpec("xvda", "/srv/guest5.img"))
        ...
        await host.remove_device(disk)       # waits for the backend's Closed
        await host.destroy_domain(5)

An HVM guest is made in libxl's order: ``create_domain``, its disks,
``add_console``, ``add_vkbd``, ``start_device_model`` (with the pid of the
qemu that serves it, which must report ``running``), then its nics.

The nodes and perms are :mod:`.layout`'s (and :mod:`.layout_hvm`'s); this
module does the I/O, each step as libxl takes it: in one transaction (retried
on EAGAIN), or request by request where libxl writes outside one; and the
waiting, always on a watch.
It keeps no state of its own: like ``xl``, whose every command is a fresh
process, it finds domains and devices again in the store (``/libxl/<D>``).

Without a hypervisor, two things stand in for Xen: INTRODUCE after a domain's
nodes are written (libxl__build_post's xs_introduce_domain; our daemon then
opens the guest's socket and fires ``@introduceDomain``), and RELEASE where
libxl would destroy the domain (after which xenstored would release it).
Hotplug scripts are not run: the backend driver library plays them. Nor is
qemu: whoever plays it passes its pid and writes its ``state``; the toolstack
removes its directory at destroy but stops no process.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient, AsyncTransaction
from xenstore.xenbus.layout import (
    TOOLSTACK_DOMID,
    Layout,
    console_layout,
    disk_layout,
    domain_steps,
    frontend_path,
    libxl_device_path,
    libxl_path,
    nic_layout,
)
from xenstore.xenbus.layout_hvm import (
    device_model_dir,
    device_model_layout,
    vkbd_layout,
    vnc_layout,
)
from xenstore.xenbus.paths import ROOT, DeviceAddress, XsPath, domain_home
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec
from xenstore.xenbus.state import XenbusState

__all__ = [
    "DESTROY_TIMEOUT",
    "DEVICE_MODEL_START_TIMEOUT",
    "BackendTimeout",
    "DeviceExists",
    "DeviceModelTimeout",
    "DomainExists",
    "NoSuchDomain",
    "Toolstack",
    "ToolstackError",
]

log = logging.getLogger("xenstore.xenbus.toolstack")

#: How long libxl waits for a backend to close a device (LIBXL_DESTROY_TIMEOUT).
DESTROY_TIMEOUT = 10.0
#: How long libxl waits for qemu's ``running`` (LIBXL_DEVICE_MODEL_START_TIMEOUT).
DEVICE_MODEL_START_TIMEOUT = 60.0


class ToolstackError(Exception):
    """A domain or device operation the store's contents refuse."""


class DomainExists(ToolstackError):
    """The domid is introduced already, or another domain has the name."""


class NoSuchDomain(ToolstackError):
    """No domain made by a toolstack has this domid (``/libxl/<D>/type`` is missing)."""


class DeviceExists(ToolstackError):
    """The guest has a device of this type and number already."""


class BackendTimeout(ToolstackError, TimeoutError):
    """The backend did not close the device (or, in a driver domain, remove it) in time."""


class DeviceModelTimeout(ToolstackError, TimeoutError):
    """The device model did not report ``running`` in time."""


Reader = AsyncClient | AsyncTransaction


async def _read(xs: Reader, path: str) -> bytes | None:
    try:
        return await xs.read(path)
    except errors.ENOENT:
        return None


async def _apply(t: Reader, layout: Layout) -> None:
    """Write a layout as libxl does: stale paths removed, then each node (perms where
    libxl sets them; the others inherit their parent's)."""
    for path in layout.replaces:
        with contextlib.suppress(errors.ENOENT):
            await t.rm(path)
    for entry in layout.entries:
        await t.write(entry.path, entry.value)
        if entry.explicit:
            await t.set_perms(entry.path, entry.perms)


async def _write(xs: AsyncClient, layout: Layout) -> None:
    """A layout in one transaction (retried), or request by request when not atomic."""
    if layout.atomic:
        await xs.retry(lambda t: _apply(t, layout))
    else:
        await _apply(xs, layout)


async def _next_devid(t: AsyncTransaction, domid: int, kind: str) -> int:
    """libxl__device_nextid: the last number listed in libxl's record, plus one."""
    try:
        listed = await t.directory(libxl_path(domid) / "device" / kind)
    except errors.ENOENT:
        listed = []
    return int(listed[-1]) + 1 if listed else 0


async def _path_cleanup(t: AsyncTransaction, path: XsPath) -> None:
    """Remove ``path``, then each ancestor left with no child and an empty value
    (libxl__xs_path_cleanup)."""
    try:
        await t.rm(path)
    except errors.ENOENT:
        return
    path = path.parent
    while path != ROOT:
        if await _read(t, path) != b"" or await t.directory(path):
            return
        await t.rm(path)
        path = path.parent


class Toolstack:
    """Dom0's toolstack over ``xs``, a client connected to the daemon's dom0 socket."""

    def __init__(self, xs: AsyncClient, clock: Callable[[], float] = time.time) -> None:
        self.xs = xs
        #: Where ``/vm/<uuid>/start_time`` comes from.
        self.clock = clock

    async def init_dom0(self) -> None:
        """Name dom0 as ``xen-init-dom0`` does at boot: ``domid`` 0, ``name`` Domain-0."""
        home = domain_home(TOOLSTACK_DOMID)
        if await _read(self.xs, home / "domid") is None or await _read(
                self.xs, home / "name") is None:
            await self.xs.write(home / "domid", "0")
            await self.xs.write(home / "name", "Domain-0")

    # -- domains ---------------------------------------------------------------

    async def create_domain(self, spec: DomainSpec) -> XsPath:
        """Lay out a domain's home, ``/vm/<uuid>`` and ``/libxl/<D>`` in libxl's steps
        (:func:`~xenstore.xenbus.layout.domain_steps`), then INTRODUCE it.

        Returns its home. Raises :class:`DomainExists` if the domid is
        introduced or another domain has the name (libxl__domain_rename).
        """
        if await self._introduced(spec.domid):
            raise DomainExists(f"domain {spec.domid} exists")
        await self._check_name(spec)
        for step in domain_steps(spec, self.clock()):
            await _write(self.xs, step)
        await self.xs.introduce_domain(spec.domid, spec.store_gfn, spec.store_port)
        return domain_home(spec.domid)

    async def _introduced(self, domid: int) -> bool:
        return await self.xs.is_domain_introduced(domid)

    async def _check_name(self, spec: DomainSpec) -> None:
        try:
            domids = await self.xs.directory(ROOT / "local" / "domain")
        except errors.ENOENT:
            return
        for other in domids:
            if other != str(spec.domid) and other.isdigit():
                name = await _read(self.xs, domain_home(int(other)) / "name")
                if name == spec.name.encode():
                    raise DomainExists(f"domain {other} is named {spec.name!r} already")

    async def destroy_domain(self, domid: int,
                             wait: float = DESTROY_TIMEOUT) -> list[DeviceAddress]:
        """Remove a domain's devices, its nodes, then the domain (``xl destroy``).

        A device model's directory goes first (libxl__destroy_device_model).
        Devices are removed at once, each as :meth:`remove_device` with
        ``force``: a backend that does not close within ``wait`` seconds loses the
        device anyway. Returns those devices. Then, as libxl's
        devices_destroy_cb: ``/vm/<uuid>``, the home and ``/libxl/<D>`` go, and
        RELEASE (for the hypervisor's destroy) closes the guest's connections
        and its socket and fires ``@releaseDomain``.
        """
        if await _read(self.xs, domain_home(domid) / "image" / "device-model-pid") is not None:
            # libxl__destroy_device_model, first (stopping the process is its owner's)
            with contextlib.suppress(errors.ENOENT):
                await self.xs.rm(device_model_dir(domid))
        forced: list[DeviceAddress] = []

        async def remove(address: DeviceAddress) -> None:
            if not await self._remove(address, wait, force=True):
                forced.append(address)

        async with trio.open_nursery() as nursery:
            for address in await self.devices(domid):
                nursery.start_soon(remove, address)
        home = domain_home(domid)
        vm = await _read(self.xs, home / "vm")
        if vm:
            with contextlib.suppress(errors.ENOENT, errors.EINVAL):
                await self.xs.rm(vm.decode(errors="replace"))
        for path in (home, libxl_path(domid)):
            with contextlib.suppress(errors.ENOENT):
                await self.xs.rm(path)
        with contextlib.suppress(errors.ENOENT):  # never introduced, or released already
            await self.xs.release_domain(domid)
        return forced

    # -- devices -----------------------------------------------------------------

    async def add_disk(self, domid: int, disk: DiskSpec) -> DeviceAddress:
        """Add a ``vbd`` (libxl_disk.c); both ends in one transaction."""

        async def build(t: AsyncTransaction, domain_type: str) -> Layout:
            return disk_layout(domid, domain_type, disk)

        return await self._add(domid, build)

    async def add_nic(self, domid: int, nic: NicSpec, *, hotplug: bool = False
                      ) -> DeviceAddress:
        """Add a ``vif`` (libxl_nic.c); without a devid, the next after the highest.

        ``hotplug``: added to a running guest (``xl network-attach``), which makes
        an HVM guest's nic PV only (type ``vif``) unless its spec says ``ioemu``.
        """

        async def build(t: AsyncTransaction, domain_type: str) -> Layout:
            devid = nic.devid if nic.devid is not None else await _next_devid(t, domid, "vif")
            return nic_layout(domid, nic, devid, domain_type, hotplug=hotplug)

        return await self._add(domid, build)

    async def add_vkbd(self, domid: int, backend_domid: int = TOOLSTACK_DOMID
                       ) -> DeviceAddress:
        """Add the PV keyboard qemu serves an HVM guest (libxl_vkb.c), the next number."""

        async def build(t: AsyncTransaction, domain_type: str) -> Layout:
            return vkbd_layout(domid, await _next_devid(t, domid, "vkbd"), backend_domid)

        return await self._add(domid, build)

    async def add_console(self, domid: int, console: ConsoleSpec) -> DeviceAddress:
        """Add a console (libxl_console.c); number 0 is the primary one, at ``~/console``.

        The primary console's frontend is not ``address.frontend`` but
        :func:`~xenstore.xenbus.layout.frontend_path` of it.
        """

        async def build(t: AsyncTransaction, domain_type: str) -> Layout:
            return console_layout(domid, console)

        return await self._add(domid, build)

    async def start_device_model(self, spec: DomainSpec, pid: int,
                                 wait: float = DEVICE_MODEL_START_TIMEOUT) -> XsPath:
        """Lay out ``spec``'s device model as libxl__spawn_local_dm does, ``pid`` being the
        process that plays qemu; wait for its ``state`` = ``running``, then record
        where its VNC server listens. Returns the device model's directory.

        Raises :class:`DeviceModelTimeout` when nothing reports ``running`` within
        ``wait`` seconds (the nodes stay, as libxl leaves them to the destroy).
        """
        await _write(self.xs, device_model_layout(spec, pid))
        state = device_model_dir(spec.domid) / "state"

        async def running() -> bool:
            return await _read(self.xs, state) == b"running"

        try:
            with trio.fail_after(wait):
                await self._wait_for(state, running)
        except trio.TooSlowError:
            raise DeviceModelTimeout(f"domain {spec.domid}'s device model did not report "
                                     f"running within {wait:g} s") from None
        await _write(self.xs, vnc_layout(spec))
        return device_model_dir(spec.domid)

    async def _add(self, domid: int,
                   build: Callable[[AsyncTransaction, str], Awaitable[Layout]]) -> DeviceAddress:
        async def work(t: AsyncTransaction) -> Layout:
            domain_type = await _read(t, libxl_path(domid) / "type")
            if domain_type is None:
                raise NoSuchDomain(f"no domain {domid}")
            layout = await build(t, domain_type.decode())
            assert layout.address is not None
            if await t.exists(libxl_device_path(layout.address)):
                raise DeviceExists(f"{layout.address} exists")
            await _apply(t, layout)
            return layout

        address = (await self.xs.retry(work)).address
        assert address is not None
        return address

    async def devices(self, domid: int) -> list[DeviceAddress]:
        """A domain's devices, from libxl's own record (as libxl__devices_destroy finds them)."""
        found: list[DeviceAddress] = []
        root = libxl_path(domid) / "device"
        try:
            kinds = await self.xs.directory(root)
        except errors.ENOENT:
            return found
        for kind in kinds:
            with contextlib.suppress(errors.ENOENT):
                for devid in await self.xs.directory(root / kind):
                    backend = await _read(self.xs, root / kind / devid / "backend")
                    with contextlib.suppress(ValueError):  # not a path libxl wrote
                        address = DeviceAddress.of_backend((backend or b"").decode())
                        if address.frontend_id == domid and address.type == kind:
                            found.append(address)
        return found

    async def remove_device(self, address: DeviceAddress, wait: float = DESTROY_TIMEOUT,
                            *, force: bool = False) -> None:
        """Unplug a device as libxl__initiate_device_generic_remove does.

        In one transaction the backend gets ``online`` = 0 and, unless it is
        Closed already, ``state`` = Closing; then a watch waits for the
        backend's Closed (and, for a backend in a driver domain, for that
        domain to remove its directory), at most ``wait`` seconds; then
        both directories and libxl's record go, with parents left empty
        (libxl__device_destroy). A backend already gone: only the rest is
        removed. Consoles are removed at once, as libxl removes them.

        Raises :class:`BackendTimeout` (leaving the device in place) when the
        backend does not answer in time, :class:`ToolstackError` if its state
        vanished before Closed, unless ``force``: then the device is removed
        all the same (``xl block-detach --force``).
        """
        if not await self._remove(address, wait, force=force):
            log.warning("%s: removed by force, its backend did not close it", address)

    async def _remove(self, address: DeviceAddress, wait: float, *, force: bool) -> bool:
        """Remove a device; False when the backend did not close it and ``force`` did."""
        closed = True
        if address.type != "console" and await self.xs.retry(
                lambda t: self._ask_to_close(t, address)):
            try:
                with trio.fail_after(wait):
                    await self._await_backend(address)
            except trio.TooSlowError:
                closed = False
                if not force:
                    raise BackendTimeout(
                        f"{address}: the backend {address.backend} did not close it within "
                        f"{wait:g} s") from None
            except ToolstackError:
                if not force:
                    raise
                closed = False
        await self.xs.retry(lambda t: self._destroy(t, address))
        return closed

    async def _ask_to_close(self, t: AsyncTransaction, address: DeviceAddress) -> bool:
        state = await _read(t, address.backend / "state")
        if state is None:  # the backend domain went: clean up what is left
            return False
        await t.write(address.backend / "online", "0")
        if XenbusState.parse(state) is not XenbusState.Closed:
            await t.write(address.backend / "state", XenbusState.Closing.encoded())
        return True

    async def _await_backend(self, address: DeviceAddress) -> None:
        state_path = address.backend / "state"
        driver_domain = address.backend_id != TOOLSTACK_DOMID

        async def closed() -> bool:
            state = await _read(self.xs, state_path)
            if state is None and not driver_domain:
                raise ToolstackError(f"{address}: the backend's state went before Closed")
            # A driver domain may have closed and removed it already.
            return state is None or XenbusState.parse(state) is XenbusState.Closed

        async def removed() -> bool:
            return not await self.xs.exists(address.backend)

        await self._wait_for(state_path, closed)
        if driver_domain:  # libxl then waits for that domain to remove its directory
            await self._wait_for(address.backend, removed)

    async def _wait_for(self, path: XsPath, done: Callable[[], Awaitable[bool]]) -> None:
        """Return once ``done()`` says so, asking it again on each event of a watch on ``path``."""
        async with self.xs.watch(path) as events:
            async for _ in events:  # the first event comes at once: no change is missed
                if await done():
                    return
        raise ConnectionResetError("the XenStore daemon closed the connection")

    async def _destroy(self, t: AsyncTransaction, address: DeviceAddress) -> None:
        for path in (frontend_path(address), libxl_device_path(address), address.backend):
            await _path_cleanup(t, path)
