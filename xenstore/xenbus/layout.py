"""Which nodes Xen's toolstack (libxl) writes for a domain and its devices, with which perms.

Pure functions from a spec (:mod:`.specs`) to the list of :class:`Entry`
(path, value, permissions) in the order libxl writes them; the I/O is
:mod:`.toolstack`'s. The facts come from Xen's ``tools/libs/light``:

**A domain** (libxl_create.c, libxl__domain_make; libxl_dom.c, libxl__build_post):
its home ``/local/domain/<D>`` and ``/vm/<uuid>`` are dom0's, readable by the
domain (``n0 r<D>``), and so is everything below them unless made otherwise;
the guest owns (``n<D>``) only ``device/suspend/event-channel``, the
``control`` nodes it answers (``shutdown``, ``feature-*``, ``sysrq``) and its
own corners ``data``, ``drivers``, ``feature``, ``attr`` and ``error``.
``/libxl/<D>`` is the toolstack's private record (``n0``: the guest cannot
even read it). The xenstore ring's page and event channel go to ``~/store``
and to INTRODUCE. libxl writes a domain in three steps (:func:`domain_steps`):
the skeleton in one transaction, ``/libxl/<D>/dm-version`` on its own, then
the build's nodes in a second transaction, followed by INTRODUCE.

**An HVM guest** also gets ``~/hvmloader`` (read by its firmware), the
``control/feature-s3``/``-s4`` nodes it answers, ``~/platform/*`` (ACPI flags
and the device model), ``/vm/<uuid>/rtc/timeoffset`` and its video RAM in
``~/memory/videoram`` (taken off ``memory/target``); its device model's
nodes are :mod:`.layout_hvm`'s.

**A device** (libxl_device.c, libxl__device_generic_add): the frontend
directory ``~/device/<type>/<devid>`` is owned by the guest and readable by
the backend domain (``n<D> r<B>``); the backend directory
``/local/domain/<B>/backend/<type>/<D>/<devid>`` is owned by the backend
domain and readable by the guest (``n<B> r<D>``). Each points at the other
(``backend``, ``frontend``), names the other's domain (``backend-id``,
``frontend-id``) and starts in ``state`` 1 (Initialising); the backend has
``online`` = 1. Frontend nodes the guest must not change (a nic's ``mtu``, the
primary console's ring) are the backend domain's (``n<B> r<D>``). A copy of
the backend's nodes goes to ``/libxl/<D>/device/<type>/<devid>``, which is
also how the toolstack later finds the device again.

**What the other parties write.** The guest's frontend writes its ring
(``ring-ref``, ``event-channel`` or ``port``...) and ``state`` in its own
directory; the backend writes its features and ``state`` in its own. Linux's
hotplug scripts (tools/hotplug/Linux; here the backend driver library plays
them) write in the backend directory: ``physical-device`` (``major:minor`` in
hex) and ``physical-device-path`` (block), ``node`` (the loop device of a
file-backed disk), ``hotplug-status`` = ``connected`` on success (libxl writes
it empty for a nic, so that netback waits for the script), or
``hotplug-error`` (a message) with ``hotplug-status`` = ``error`` (``busy``
when a disk is in use elsewhere). xenconsoled writes the primary console's
``tty``.
"""

from __future__ import annotations

from dataclasses import dataclass

from xenstore.xenbus.paths import ROOT, DeviceAddress, XsPath, domain_home
from xenstore.xenbus.specs import (
    DEFAULT_MTU,
    ConsoleSpec,
    DiskSpec,
    DomainSpec,
    NicSpec,
    script_path,
)
from xenstore.xenbus.state import XenbusState

#: The domain that runs the toolstack (LIBXL_TOOLSTACK_DOMID).
TOOLSTACK_DOMID = 0
#: A console's buffer limit and protocol (LIBXL_XENCONSOLE_LIMIT, _PROTOCOL).
CONSOLE_LIMIT = 1048576
CONSOLE_PROTOCOL = "vt100"
#: What a 64-bit x86 PV guest's disk frontend speaks (io/protocols.h).
PV_PROTOCOL = "x86_64-abi"

Perms = tuple[str, ...]
#: A device type's own nodes, (name, value) in the order libxl writes them.
Pairs = list[tuple[str, str]]
_INITIALISING = str(XenbusState.Initialising.value)


def owned(owner: int, *readers: int) -> Perms:
    """Perms as written to SET_PERMS: ``n<owner>`` then ``r<reader>`` for each reader."""
    return (f"n{owner}", *(f"r{reader}" for reader in readers))


@dataclass(frozen=True, slots=True)
class Entry:
    """One node libxl writes: its value and the perms it ends up with.

    ``explicit``: libxl sets the perms itself (mknod or set_permissions);
    otherwise the node takes them from its parent when created, as every
    node a privileged client creates does.
    """

    path: XsPath
    value: str
    perms: Perms
    explicit: bool

    def __str__(self) -> str:
        how = "" if self.explicit else ", inherited"
        return f'{self.path} = "{self.value}" ({" ".join(self.perms)}{how})'


@dataclass(frozen=True, slots=True)
class Layout:
    """What to write, and what to remove first (libxl clears stale leftovers)."""

    replaces: tuple[XsPath, ...]
    entries: tuple[Entry, ...]
    #: The device laid out (None for a domain).
    address: DeviceAddress | None = None
    #: One transaction, as libxl's; False: one request per entry (libxl's XBT_NULL).
    atomic: bool = True


def vm_path(uuid: str) -> XsPath:
    """``/vm/<uuid>``: the toolstack's record of the VM, readable by the domain."""
    return ROOT / "vm" / uuid


def libxl_path(domid: int) -> XsPath:
    """``/libxl/<D>``: the toolstack's private record of a domain."""
    return ROOT / "libxl" / domid


def libxl_device_path(address: DeviceAddress) -> XsPath:
    """``/libxl/<D>/device/<type>/<devid>``: libxl's trusted copy of a device."""
    return libxl_path(address.frontend_id) / "device" / address.type / address.devid


def frontend_path(address: DeviceAddress) -> XsPath:
    """A device's frontend directory (the primary console's is ``~/console``, as
    libxl__device_frontend_path places it: :attr:`DeviceAddress.frontend` knows)."""
    return address.frontend


def domain_steps(spec: DomainSpec, start_time: float) -> tuple[Layout, ...]:
    """A new domain's nodes in libxl's steps: libxl__domain_make's transaction,
    store_libxl_entry's ``dm-version`` (written for every type), then
    libxl__build_post's transaction (after which INTRODUCE).

    ``start_time`` (seconds since the epoch) becomes ``/vm/<uuid>/start_time``.
    """
    d = spec.domid
    make = Layout((domain_home(d), vm_path(spec.uuid), libxl_path(d)),
                  tuple(_domain_make(spec)))
    version = Entry(libxl_path(d) / "dm-version", spec.dm_version, owned(0), False)
    return (make, Layout((), (version,), atomic=False),
            Layout((), tuple(_build_post(spec, start_time))))


def domain_layout(spec: DomainSpec, start_time: float) -> Layout:
    """All of :func:`domain_steps` as one table (what the store holds after them)."""
    steps = domain_steps(spec, start_time)
    return Layout(steps[0].replaces, tuple(e for step in steps for e in step.entries))


def _domain_make(spec: DomainSpec) -> list[Entry]:
    d = spec.domid
    home, vm, lx = domain_home(d), vm_path(spec.uuid), libxl_path(d)
    ro, rw, private = owned(0, d), owned(d), owned(0)
    hvm = spec.type == "hvm"
    out = [Entry(home, "", ro, True), Entry(vm, "", ro, True),
           Entry(lx, "", private, True), Entry(lx / "device", "", private, True),
           Entry(home / "vm", vm, ro, False), Entry(home / "name", spec.name, ro, False),
           # libxl_domain.c, libxl__domain_rename: the name goes to /vm too
           Entry(vm / "name", spec.name, ro, False)]
    out += [Entry(home / name, "", ro, True) for name in ("cpu", "memory", "device")]
    # Not xend's compatibility mode: ~/device stays read-only, the guest gets this node.
    out.append(Entry(home / "device" / "suspend" / "event-channel", "", rw, True))
    out.append(Entry(home / "control", "", ro, True))
    if hvm:  # what the guest's firmware reads
        out.append(Entry(home / "hvmloader", "", ro, True))
    answers = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"]
    answers += ["feature-s3", "feature-s4"] if hvm else []
    out += [Entry(home / "control" / name, "", rw, True) for name in [*answers, "sysrq"]]
    guest_dirs = ["data", "drivers", "feature", "attr", "error"]
    if spec.driver_domain:  # so that libxl and qemu may run inside it
        guest_dirs += ["libxl", "device-model"]
    out += [Entry(home / name, "", rw, True) for name in guest_dirs]
    out += [Entry(vm / "uuid", spec.uuid, ro, False), Entry(vm / "name", spec.name, ro, False)]
    out += [Entry(home / "control" / name, "1", ro, False) for name in
            ("platform-feature-multiprocessor-suspend", "platform-feature-xs_reset_watches")]
    out.append(Entry(lx / "type", spec.type, private, False))
    return out


def _build_post(spec: DomainSpec, start_time: float) -> list[Entry]:
    d = spec.domid
    home, vm, ro = domain_home(d), vm_path(spec.uuid), owned(0, d)
    local = [("memory/static-max", str(spec.maxmem)),
             ("memory/target", str(spec.target_kib)),  # less HVM's video RAM
             ("memory/videoram", str(spec.videoram)), ("domid", str(d)),
             ("store/port", str(spec.store_port)), ("store/ring-ref", str(spec.store_gfn))]
    local += [(f"cpu/{n}/availability", "online" if n < spec.vcpus else "offline")
              for n in range(spec.vcpu_slots)]
    seconds = int(start_time)
    started = f"{seconds}.{int((start_time - seconds) * 100):02d}"
    # libxl_create.c, libxl__domain_build: each type's /vm entries (and HVM's platform)
    if spec.type == "pv":
        image = [("image/ostype", "linux"), ("image/kernel", spec.kernel),
                 ("start_time", started)]
        if spec.ramdisk is not None:
            image.append(("image/ramdisk", spec.ramdisk))
        if spec.cmdline is not None:
            image.append(("image/cmdline", spec.cmdline))
    elif spec.type == "hvm":
        image = [("rtc/timeoffset", spec.timeoffset), ("image/ostype", "hvm"),
                 ("start_time", started)]
        local += [(f"platform/{name}", "1" if on else "0") for name, on in (
            ("acpi", spec.acpi), ("acpi_s3", spec.acpi_s3), ("acpi_s4", spec.acpi_s4),
            ("acpi_laptop_slate", spec.acpi_laptop_slate))]
        local.append(("platform/device-model", spec.dm_version))
    else:
        image = [("start_time", started)]
    return ([Entry(_below(home, name), value, ro, False) for name, value in local]
            + [Entry(_below(vm, name), value, ro, False) for name, value in image])


def _below(path: XsPath, relative: str) -> XsPath:
    for name in relative.split("/"):
        path = path / name
    return path



def device_layout(address: DeviceAddress, back: Pairs, front: Pairs,
                  ro_front: Pairs | None = None) -> Layout:
    """Both ends of a device, as libxl__device_generic_add writes them.

    ``back``, ``front`` and ``ro_front`` are the type's own nodes: the
    backend's, the frontend's the guest may change, and the frontend's it
    may only read.
    """
    d, b = address.frontend_id, address.backend_id
    fe, be, lx = frontend_path(address), address.backend, libxl_device_path(address)
    fe_perms, ro_fe, be_perms, private = owned(d, b), owned(b, d), owned(b, d), owned(0)
    primary_console = address.type == "console" and address.devid == 0
    out = [Entry(lx / "frontend", fe, private, False), Entry(lx / "backend", be, private, False)]
    # The primary console's directory also holds what the guest must not change.
    fe_dir = ro_fe if primary_console else fe_perms
    out.append(Entry(fe, "", fe_dir, True))
    out.append(Entry(fe / "backend", be, fe_dir, False))
    out += [Entry(fe / name, value, fe_perms, True) for name, value in front]
    out += [Entry(fe / name, value, ro_fe, True) for name, value in ro_front or []]
    out.append(Entry(be, "", be_perms, True))
    out.append(Entry(be / "frontend", fe, be_perms, False))
    out += [Entry(be / name, value, be_perms, False) for name, value in back]
    # The copy the toolstack trusts, rather than what the backend domain may change.
    out += [Entry(lx / name, value, private, False) for name, value in back]
    return Layout((lx, fe, be), tuple(out), address)


def _common(address: DeviceAddress) -> tuple[Pairs, Pairs]:
    """What every device starts with (libxl__device_add_async)."""
    back = [("frontend-id", str(address.frontend_id)), ("online", "1"),
            ("state", _INITIALISING)]
    front = [("backend-id", str(address.backend_id)), ("state", _INITIALISING)]
    return back, front


def disk_layout(domid: int, domain_type: str, disk: DiskSpec) -> Layout:
    """A ``vbd``, as libxl_disk.c's device_disk_add writes it.

    The backend is the one libxl picks (:meth:`DiskSpec.backend_for`): phy
    (``backend/vbd``, with its hotplug script) or qemu's qdisk
    (``backend/qdisk``, ``params`` = ``<format>:<target>``, no script); the
    frontend is ``device/vbd`` either way, and so is libxl's record.
    """
    backend = disk.backend_for(domain_type)
    address = DeviceAddress("vbd", domid, disk.devid, disk.backend_domid,
                            "vbd" if backend == "phy" else "qdisk")
    back = [("params", disk.params(backend))]
    if backend == "phy":
        back.append(("script", script_path(disk.script or "block")))
    back += [("frontend-id", str(domid)), ("online", "1"),
             ("removable", "1" if disk.removable else "0"), ("bootable", "1"),
             ("state", _INITIALISING), ("dev", disk.vdev), ("type", backend),
             ("mode", disk.mode), ("device-type", "cdrom" if disk.cdrom else "disk")]
    if disk.direct_io_safe:
        back.append(("direct-io-safe", "1"))
    back += [("discard-enable", "1" if disk.discard_enable else "0"),
             ("specification", "xen")]
    front = [("backend-id", str(disk.backend_domid)), ("state", _INITIALISING),
             ("virtual-device", str(disk.devid)),
             ("device-type", "cdrom" if disk.cdrom else "disk"),
             ("trusted", "1" if disk.trusted else "0")]
    if domain_type == "pv":  # for frontends older than Linux 2.6.26
        front.append(("protocol", PV_PROTOCOL))
    return device_layout(address, back, front)


def nic_layout(domid: int, nic: NicSpec, devid: int, domain_type: str = "pv", *,
               hotplug: bool = False) -> Layout:
    """A ``vif``, as libxl_nic.c's libxl__set_xenstore_nic writes it (``devid`` resolved).

    The backend's ``type`` is ``vif_ioemu`` for an HVM guest's nic made with
    the domain (not ``hotplug``ged), else ``vif`` (:meth:`NicSpec.nictype`).
    """
    nictype = nic.nictype(domain_type, hotplug=hotplug)
    address = DeviceAddress("vif", domid, devid, nic.backend_domid)
    back, front = _common(address)
    back.append(("script", script_path(nic.script)))
    if nic.vifname is not None:
        back.append(("vifname", nic.vifname))
    back.append(("mac", nic.mac))
    if nic.ip is not None:
        back.append(("ip", nic.ip))
    if nic.rate is not None:
        back.append(("rate", f"{nic.rate[0]},{nic.rate[1]}"))
    if nic.mtu != DEFAULT_MTU:
        back.append(("mtu", str(nic.mtu)))
    back += [("bridge", nic.bridge), ("handle", str(devid)), ("type", nictype),
             ("hotplug-status", "")]  # netback waits for the script's "connected"
    front += [("handle", str(devid)), ("mac", nic.mac),
              ("trusted", "1" if nic.trusted else "0")]
    return device_layout(address, back, front, [("mtu", str(nic.mtu))])


def console_layout(domid: int, console: ConsoleSpec) -> Layout:
    """A console, as libxl_console.c's libxl__device_console_add writes it.

    The primary console (devid 0) lives at ``~/console``; the toolstack writes
    its ring (``ring-ref``, ``port``) and it has no frontend ``state``. A
    secondary console's guest writes ``ring-ref`` and ``port`` itself and runs
    the handshake from ``state`` 1. The backend writes ``tty`` (xenconsoled:
    the pty it made).
    """
    address = DeviceAddress("console", domid, console.devid, console.backend_domid)
    back, front = _common(address)
    back.append(("protocol", CONSOLE_PROTOCOL))
    ro_front: Pairs = []
    if console.name is not None:
        ro_front.append(("name", console.name))
        back.append(("name", console.name))
    ro_front += [("limit", str(CONSOLE_LIMIT)), ("type", console.backend_type),
                 ("output", console.output), ("tty", "")]
    if console.devid == 0:
        front = front[:1]  # backend-id only
        ro_front += [("port", str(console.port)), ("ring-ref", str(console.ring_ref))]
    else:
        front.append(("protocol", CONSOLE_PROTOCOL))
    return device_layout(address, back, front, ro_front)
