"""The course's PV and HVM guests, made by the toolstack, against libxl 4.17's layout.

The toolstack makes both guests over our daemon in libxl's order; Debian's C
``xenstore-ls -f -p /`` reads the whole store back (``-f``: full paths, as the
tree form cuts values at 80 columns when not on a terminal); and every node
(its value, or a pattern for what is generated, and its perms) must be the
table's, written here from Xen 4.17's ``tools/libs/light`` (files named in the
comments are there), in the order cxenstored lists children: as created.
Then both go, and the store is as before but for the empty directories libxl
never removes, with an ``@releaseDomain`` for each.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio

from tests.conftest import OurDaemon
from xenstore.aclient import AsyncClient, open_client
from xenstore.protocol.codec import join
from xenstore.protocol.ops import Op
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec
from xenstore.xenbus.toolstack import Toolstack

XENSTORE_LS = "/usr/bin/xenstore-ls"
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
START_TIME = re.compile(r"[1-9][0-9]*\.[0-9]{2}\Z")  # seconds "." centiseconds
PID = re.compile(r"[1-9][0-9]*\Z")

# The course's guests, as their xl.cfg would give them.
PV = DomainSpec(1, "debian", memory_kib=1024 << 10, vcpus=2, kernel="/srv/vmlinuz",
                ramdisk="/srv/initrd.img", cmdline="root=/dev/xvda ro console=hvc0")
PV_DISKS = [DiskSpec("xvda", "/srv/debian.img"),
            DiskSpec("xvdc", "/srv/debian-12.iso", cdrom=True)]
PV_NIC = NicSpec(mac="00:16:3e:5a:01:01", bridge="Br0")
HVM = DomainSpec(2, "debian-hvm", type="hvm", memory_kib=4096 << 10, vcpus=2, boot="d",
                 vnc=True)
HVM_DISKS = [DiskSpec("hda", "/srv/debian-hvm.qcow2", format="qcow2"),
             DiskSpec("hdc", "/srv/debian-12.iso", cdrom=True)]
HVM_NIC = NicSpec(mac="00:16:3e:5a:02:01", bridge="Br0", model="e1000")

Value = str | re.Pattern[str]


class Table:
    """Expected nodes in creation order: path -> (value or pattern, perms as listed).

    A path written again keeps its place (a node's children stay in creation
    order); a parent made on the way takes its parent's perms, as listed.
    """

    def __init__(self) -> None:
        self.rows: dict[str, tuple[Value, str]] = {}

    def add(self, path: str, value: Value = "", perms: str | None = None) -> None:
        parent = path.rsplit("/", 1)[0]
        if parent and parent not in self.rows:
            self.add(parent)  # an implicit parent: empty, perms inherited
        if perms is None:
            perms = self.rows[parent][1] if parent else "n0"
        self.rows[path] = (value, perms)

    def device(self, kind: str, domid: int, devid: int, back: list[tuple[str, str]],
               front: list[tuple[str, str]], ro_front: Sequence[tuple[str, str]] = (),
               backend_kind: str | None = None, frontend: str | None = None) -> None:
        """libxl_device.c, libxl__device_generic_add, with the backend in dom0."""
        fe = frontend or f"/local/domain/{domid}/device/{kind}/{devid}"
        be = f"/local/domain/0/backend/{backend_kind or kind}/{domid}/{devid}"
        lx = f"/libxl/{domid}/device/{kind}/{devid}"
        guests, dom0s = f"n{domid},r0", f"n0,r{domid}"
        # libxl's record first, then the frontend: the guest's, readable by the
        # backend, but for console 0 (and its backend-id) that holds what the
        # guest must not change; ro_front nodes are the backend domain's.
        self.add(lx, perms="n0")
        self.add(f"{lx}/frontend", fe)
        self.add(f"{lx}/backend", be)
        self.add(fe, perms=dom0s if frontend else guests)
        self.add(f"{fe}/backend", be)
        for name, value in front:
            self.add(f"{fe}/{name}", value, guests)
        for name, value in ro_front:
            self.add(f"{fe}/{name}", value, dom0s)
        # The backend: dom0's, readable by the guest; its nodes copied to libxl's.
        self.add(be, perms=dom0s)
        self.add(f"{be}/frontend", fe)
        for name, value in back:
            self.add(f"{be}/{name}", value)
        for name, value in back:
            self.add(f"{lx}/{name}", value)


def domain(table: Table, spec: DomainSpec, hvm: bool) -> None:
    d, vm, home = spec.domid, f"/vm/{spec.uuid}", f"/local/domain/{spec.domid}"
    ro, rw = f"n0,r{d}", f"n{d}"
    # libxl_create.c, libxl__domain_make, one transaction: roperm n0,r<D> for
    # the home and /vm/<uuid>; noperm n0 for /libxl/<D>; rwperm n<D> for what
    # the guest writes.
    table.add(home, perms=ro)
    table.add(vm, perms=ro)
    table.add(f"/libxl/{d}", perms="n0")
    table.add(f"/libxl/{d}/device", perms="n0")
    table.add(f"{home}/vm", vm)
    table.add(f"{home}/name", spec.name)  # libxl_domain.c, libxl__domain_rename,
    table.add(f"{vm}/name", spec.name)    # which writes /vm's name too
    for name in ("cpu", "memory", "device"):
        table.add(f"{home}/{name}", perms=ro)
    table.add(f"{home}/device/suspend/event-channel", perms=rw)  # no xend compat
    table.add(f"{home}/control", perms=ro)
    if hvm:
        table.add(f"{home}/hvmloader", perms=ro)
    answers = ["shutdown", "feature-poweroff", "feature-reboot", "feature-suspend"]
    answers += ["feature-s3", "feature-s4"] if hvm else []  # HVM only
    for name in [*answers, "sysrq"]:
        table.add(f"{home}/control/{name}", perms=rw)
    for name in ("data", "drivers", "feature", "attr", "error"):
        table.add(f"{home}/{name}", perms=rw)
    table.add(f"{vm}/uuid", UUID)  # xl makes a random one
    table.add(f"{home}/control/platform-feature-multiprocessor-suspend", "1")
    table.add(f"{home}/control/platform-feature-xs_reset_watches", "1")
    table.add(f"/libxl/{d}/type", "hvm" if hvm else "pv")
    # libxl_create.c, store_libxl_entry: on its own, for every type; qemu-xen is
    # libxl's default device model (libxl__domain_build_info_setdefault).
    table.add(f"/libxl/{d}/dm-version", "qemu_xen")
    # libxl_dom.c, libxl__build_post, a second transaction (then INTRODUCE):
    # sizes in KiB. HVM: qemu-xen's cirrus card has 8 MiB of video RAM
    # (libxl_create.c), taken off the target (libxl__get_targetmem_fudge).
    mib = 4096 if hvm else 1024
    table.add(f"{home}/memory/static-max", str(mib << 10))
    table.add(f"{home}/memory/target", str((mib << 10) - (8192 if hvm else 0)))
    table.add(f"{home}/memory/videoram", "8192" if hvm else "0")
    table.add(f"{home}/domid", str(d))
    table.add(f"{home}/store/port", "1")               # the ring's event channel
    table.add(f"{home}/store/ring-ref", str(0xFEFFC))  # and page
    for cpu in (0, 1):
        table.add(f"{home}/cpu/{cpu}/availability", "online")
    if hvm:  # libxl_create.c, libxl__domain_build: ACPI's defaults, the device model
        for name, value in (("acpi", "1"), ("acpi_s3", "1"), ("acpi_s4", "1"),
                            ("acpi_laptop_slate", "0"), ("device-model", "qemu_xen")):
            table.add(f"{home}/platform/{name}", value)
        table.add(f"{vm}/rtc/timeoffset", "")
        table.add(f"{vm}/image/ostype", "hvm")
        table.add(f"{vm}/start_time", START_TIME)
    else:
        table.add(f"{vm}/image/ostype", "linux")
        table.add(f"{vm}/image/kernel", "/srv/vmlinuz")
        table.add(f"{vm}/start_time", START_TIME)
        table.add(f"{vm}/image/ramdisk", "/srv/initrd.img")
        table.add(f"{vm}/image/cmdline", "root=/dev/xvda ro console=hvc0")


def disk(table: Table, d: int, vdev: str, devid: int, target: str, *, hvm: bool,
         cdrom: bool) -> None:
    # libxl_disk.c, device_disk_add (libxl_device.c, disk_try_backend): a raw
    # image goes to phy (backend vbd, with the block script), qcow2 and any HVM
    # cdrom to qemu's qdisk (params "<format>:<path>", raw being "aio").
    qdisk = hvm  # the HVM guest's qcow2 disk and cdrom; the PV guest's are raw
    params = (f"aio:{target}" if cdrom else f"qcow2:{target}") if qdisk else target
    back = [("params", params)] + ([] if qdisk else [("script", "/etc/xen/scripts/block")])
    back += [("frontend-id", str(d)), ("online", "1"), ("removable", "1" if cdrom else "0"),
             ("bootable", "1"), ("state", "1"), ("dev", vdev),
             ("type", "qdisk" if qdisk else "phy"), ("mode", "r" if cdrom else "w"),
             ("device-type", "cdrom" if cdrom else "disk"),
             ("discard-enable", "0" if cdrom else "1"),  # default: on when writable
             ("specification", "xen")]
    front = [("backend-id", "0"), ("state", "1"), ("virtual-device", str(devid)),
             ("device-type", "cdrom" if cdrom else "disk"), ("trusted", "1")]
    if not hvm:  # PV only, for frontends before Linux 2.6.26
        front.append(("protocol", "x86_64-abi"))
    table.device("vbd", d, devid, back, front, backend_kind="qdisk" if qdisk else None)


def console(table: Table, d: int) -> None:
    # libxl_console.c, libxl__device_console_add with the build state: console 0
    # lives at ~/console, its ring written by the toolstack, served by xenconsoled.
    table.device("console", d, 0,
                 [("frontend-id", str(d)), ("online", "1"), ("state", "1"),
                  ("protocol", "vt100")],
                 [("backend-id", "0")],
                 [("limit", "1048576"), ("type", "xenconsoled"), ("output", "pty"),
                  ("tty", ""), ("port", "2"), ("ring-ref", str(0xFEFFD))],
                 frontend=f"/local/domain/{d}/console")


def nic(table: Table, d: int, mac: str, nictype: str) -> None:
    # libxl_nic.c, libxl__set_xenstore_nic: mtu 1500 is left out of the backend;
    # hotplug-status empty makes netback wait for vif-bridge. An HVM guest's nic
    # made with it is vif_ioemu (qemu's e1000 is on qemu's command line only).
    table.device("vif", d, 0,
                 [("frontend-id", str(d)), ("online", "1"), ("state", "1"),
                  ("script", "/etc/xen/scripts/vif-bridge"), ("mac", mac),
                  ("bridge", "Br0"), ("handle", "0"), ("type", nictype),
                  ("hotplug-status", "")],
                 [("backend-id", "0"), ("state", "1"), ("handle", "0"), ("mac", mac),
                  ("trusted", "1")],
                 [("mtu", "1500")])


def device_model(table: Table, d: int) -> None:
    home = f"/local/domain/{d}"
    # libxl_create.c, domcreate_launch_dm: the PV keyboard qemu serves (libxl_vkb.c)
    table.device("vkbd", d, 0, [("frontend-id", str(d)), ("online", "1"), ("state", "1")],
                 [("backend-id", "0"), ("state", "1")])
    # libxl_dm.c, libxl__spawn_local_dm, lone writes: the firmware, no memory
    # relocation with qemu-xen, the device model's directory, its pid
    # (libxl_exec.c, libxl__spawn_record_pid)
    table.add(f"{home}/hvmloader/bios", "seabios")
    table.add(f"{home}/hvmloader/allow-memory-relocate", "0")
    table.add(f"/local/domain/0/device-model/{d}")
    table.add(f"{home}/image/device-model-pid", PID)
    table.add(f"/local/domain/0/device-model/{d}/state", "running")  # qemu's (the test's)
    # libxl_dm.c, device_model_postconfig_vnc: qemu's answer to query-vnc
    table.add(f"{home}/console/vnc-listen", "127.0.0.1")
    table.add(f"{home}/console/vnc-port", "5900")


def expected(before: list[tuple[str, str, str]]) -> Table:
    table = Table()
    for path, value, perms in before:
        table.add(path, value, perms)
    domain(table, PV, hvm=False)
    disk(table, 1, "xvda", 51712, "/srv/debian.img", hvm=False, cdrom=False)
    disk(table, 1, "xvdc", 51744, "/srv/debian-12.iso", hvm=False, cdrom=True)
    console(table, 1)
    nic(table, 1, "00:16:3e:5a:01:01", "vif")
    domain(table, HVM, hvm=True)
    disk(table, 2, "hda", 768, "/srv/debian-hvm.qcow2", hvm=True, cdrom=False)
    disk(table, 2, "hdc", 5632, "/srv/debian-12.iso", hvm=True, cdrom=True)
    console(table, 2)
    device_model(table, 2)
    nic(table, 2, "00:16:3e:5a:02:01", "vif_ioemu")
    return table


def in_tree_order(table: Table) -> list[str]:
    """The paths as a depth-first walk lists them, children in creation order."""
    children: dict[str, list[str]] = {}
    for path in table.rows:
        children.setdefault(path.rsplit("/", 1)[0], []).append(path)

    def walk(path: str) -> Iterator[str]:
        for child in children.get(path, []):
            yield child
            yield from walk(child)

    return list(walk(""))


# -- running it --------------------------------------------------------------------

LS_LINE = re.compile(r'(?P<path>/\S*) = "(?P<value>.*)"\s+\((?P<perms>[^)]*)\)\Z')


def c_tool() -> str:
    if not os.path.exists(XENSTORE_LS):
        if os.environ.get("XS_REQUIRE_REFERENCE") == "1":
            pytest.fail(f"{XENSTORE_LS} is required (XS_REQUIRE_REFERENCE=1) but absent")
        pytest.skip(f"{XENSTORE_LS} absent: Debian's xenstore-utils is not installed")
    return XENSTORE_LS


async def xenstore_ls(socket_path: str) -> list[tuple[str, str, str]]:
    """The whole store as Debian's ``xenstore-ls -f -p /`` lists it: (path, value, perms)."""
    result = await trio.run_process(
        [c_tool(), "-f", "-p", "/"], capture_stdout=True, capture_stderr=True,
        env={**os.environ, "XENSTORED_PATH": socket_path})
    listed = []
    for line in result.stdout.decode().splitlines():
        match = LS_LINE.match(line)
        assert match, line
        listed.append((match["path"], match["value"], match["perms"]))
    return listed


async def qemu_stand_in(xs: AsyncClient, domid: int) -> None:
    """Plays qemu: reports ``running`` once libxl made its directory."""
    directory = f"/local/domain/0/device-model/{domid}"
    async with xs.watch(directory) as events:
        async for _ in events:
            if await xs.exists(directory):
                await xs.write(f"{directory}/state", "running")
                return


async def make_guests(toolstack: Toolstack) -> None:
    """Both guests in libxl's order (libxl_create.c): the domain, its disks, the
    primary console (for HVM, then the vkbd and the device model), the nics."""
    await toolstack.create_domain(PV)
    for spec in PV_DISKS:
        await toolstack.add_disk(1, spec)
    await toolstack.add_console(1, ConsoleSpec())
    await toolstack.add_nic(1, PV_NIC)
    await toolstack.create_domain(HVM)
    for spec in HVM_DISKS:
        await toolstack.add_disk(2, spec)
    await toolstack.add_console(2, ConsoleSpec())
    await toolstack.add_vkbd(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(qemu_stand_in, toolstack.xs, 2)
        await toolstack.start_device_model(HVM, os.getpid(), wait=10)
    await toolstack.add_nic(2, HVM_NIC)


@pytest.fixture
def daemon() -> Iterator[OurDaemon]:
    c_tool()
    daemon = OurDaemon("--domain-dir", None)
    try:
        yield daemon
    finally:
        daemon.stop()


@asynccontextmanager
async def dom0(daemon: OurDaemon) -> AsyncIterator[Toolstack]:
    async with open_client(daemon.socket_path) as xs:
        toolstack = Toolstack(xs)
        await toolstack.init_dom0()
        yield toolstack


def assert_matches(listed: list[tuple[str, str, str]], table: Table) -> None:
    shown = {path: (value, perms) for path, value, perms in listed}
    assert sorted(shown) == sorted(table.rows), (
        f"missing {sorted(set(table.rows) - set(shown))}, "
        f"unexpected {sorted(set(shown) - set(table.rows))}")
    for path, (value, perms) in table.rows.items():
        got_value, got_perms = shown[path]
        if isinstance(value, re.Pattern):
            assert value.match(got_value), (path, got_value, value.pattern)
        else:
            assert got_value == value, (path, got_value, value)
        assert got_perms == perms, (path, got_perms, perms)
    assert [path for path, _, _ in listed] == in_tree_order(table)


async def test_a_pv_and_an_hvm_guest_as_libxl_lays_them_out(daemon: OurDaemon) -> None:
    async with dom0(daemon) as toolstack:
        xs = toolstack.xs
        before = await xenstore_ls(daemon.socket_path)
        started = time.time()
        await make_guests(toolstack)
        listed = await xenstore_ls(daemon.socket_path)
        assert_matches(listed, expected(before))
        shown = {path: value for path, value, _ in listed}
        # The generated values: xl's uuids, the start times, qemu's pid.
        for spec in (PV, HVM):
            assert shown[f"/vm/{spec.uuid}/uuid"] == spec.uuid
            assert started - 1 <= float(shown[f"/vm/{spec.uuid}/start_time"]) <= time.time()
        assert shown["/local/domain/2/image/device-model-pid"] == str(os.getpid())
        # What only qemu's command line has (boot order, card model) is not in the store.
        assert not [v for v in shown.values() if v in ("d", "e1000", "rtl8139")]
        for domid in (1, 2):
            assert await trio.Path(daemon.directory, str(domid)).exists()

        # Teardown: devices (no backend answers: forced after the wait), the
        # device model's directory, /vm, the home, /libxl, then RELEASE.
        async with xs.watch("@releaseDomain") as released:
            await released.receive()  # on registration
            for domid in (1, 2):
                await toolstack.destroy_domain(domid, 0.2)
                with trio.fail_after(10):
                    assert (await released.receive()).path == "@releaseDomain"
                reply = await xs.request(Op.IS_DOMAIN_INTRODUCED, join(str(domid)))
                assert reply.rstrip(b"\0") == b"F"
                assert not await trio.Path(daemon.directory, str(domid)).exists()
        after = await xenstore_ls(daemon.socket_path)
    # As before, but for the empty directories libxl never removes: /vm and
    # /libxl (it removes /vm/<uuid> and /libxl/<D>) and dom0's device-model
    # (libxl__destroy_device_model removes device-model/<D>).
    left = [("/local/domain/0/device-model", "", "n0"), ("/vm", "", "n0"),
            ("/libxl", "", "n0")]
    assert sorted(after) == sorted(before + left)
