"""The toolstack's layout against what Xen's libxl writes, node by node.

Each table row is (path, value, perms, explicit); ``explicit`` says libxl sets
the perms itself, otherwise the node inherits them from its parent. Files
named are Xen's tools/libs/light/ unless said otherwise.
"""

from __future__ import annotations

import pytest

from xenstore.xenbus import DeviceAddress
from xenstore.xenbus.layout import (
    Entry,
    Layout,
    console_layout,
    disk_layout,
    domain_layout,
    frontend_path,
    nic_layout,
)
from xenstore.xenbus.specs import ConsoleSpec, DiskSpec, DomainSpec, NicSpec, random_mac

UUID = "0b6d3d2c-6c57-4c0e-9a1e-3f2b8a4c5d6e"
Row = tuple[str, str, str, bool]


def rows(layout: Layout) -> list[Row]:
    return [(e.path, e.value, " ".join(e.perms), e.explicit) for e in layout.entries]


def test_a_pv_domain() -> None:
    spec = DomainSpec(7, "vm7", uuid=UUID.upper(), memory_kib=262144, maxmem_kib=524288,
                      vcpus=2, max_vcpus=3, kernel="/boot/vmlinuz", cmdline="root=/dev/xvda")
    layout = domain_layout(spec, 1700000000.257)
    home, vm = "/local/domain/7", f"/vm/{UUID}"  # the uuid as libxl prints it: lower case
    # Stale nodes of a domid or uuid used before are removed first (libxl__domain_make).
    assert layout.replaces == (home, vm, "/libxl/7")
    assert layout.address is None
    assert rows(layout) == [
        # libxl_create.c, libxl__domain_make: roperm n0 r<D>, rwperm n<D>, noperm n0.
        (home, "", "n0 r7", True),
        (vm, "", "n0 r7", True),
        ("/libxl/7", "", "n0", True),          # libxl_xshelp.c, libxl__xs_libxl_path
        ("/libxl/7/device", "", "n0", True),
        (f"{home}/vm", vm, "n0 r7", False),
        (f"{home}/name", "vm7", "n0 r7", False),   # libxl_domain.c, libxl__domain_rename
        (f"{home}/cpu", "", "n0 r7", True),
        (f"{home}/memory", "", "n0 r7", True),
        # xend_suspend_evtchn_compat off: ~/device read-only, one node for the guest
        (f"{home}/device", "", "n0 r7", True),
        (f"{home}/device/suspend/event-channel", "", "n7", True),
        (f"{home}/control", "", "n0 r7", True),
        (f"{home}/control/shutdown", "", "n7", True),
        (f"{home}/control/feature-poweroff", "", "n7", True),
        (f"{home}/control/feature-reboot", "", "n7", True),
        (f"{home}/control/feature-suspend", "", "n7", True),
        (f"{home}/control/sysrq", "", "n7", True),
        (f"{home}/data", "", "n7", True),
        (f"{home}/drivers", "", "n7", True),
        (f"{home}/feature", "", "n7", True),
        (f"{home}/attr", "", "n7", True),
        (f"{home}/error", "", "n7", True),
        (f"{vm}/uuid", UUID, "n0 r7", False),
        (f"{vm}/name", "vm7", "n0 r7", False),
        (f"{home}/control/platform-feature-multiprocessor-suspend", "1", "n0 r7", False),
        (f"{home}/control/platform-feature-xs_reset_watches", "1", "n0 r7", False),
        ("/libxl/7/type", "pv", "n0", False),
        # libxl_dom.c, libxl__build_post: memory in KiB, the store ring, one cpu
        # node per possible vcpu
        (f"{home}/memory/static-max", "524288", "n0 r7", False),
        (f"{home}/memory/target", "262144", "n0 r7", False),
        (f"{home}/memory/videoram", "0", "n0 r7", False),
        (f"{home}/domid", "7", "n0 r7", False),
        (f"{home}/store/port", "1", "n0 r7", False),
        (f"{home}/store/ring-ref", str(0xFEFFC), "n0 r7", False),
        (f"{home}/cpu/0/availability", "online", "n0 r7", False),
        (f"{home}/cpu/1/availability", "online", "n0 r7", False),
        (f"{home}/cpu/2/availability", "offline", "n0 r7", False),
        # libxl_create.c, libxl__domain_build: a PV guest's image; start_time
        # is seconds "." centiseconds
        (f"{vm}/image/ostype", "linux", "n0 r7", False),
        (f"{vm}/image/kernel", "/boot/vmlinuz", "n0 r7", False),
        (f"{vm}/start_time", "1700000000.25", "n0 r7", False),
        (f"{vm}/image/cmdline", "root=/dev/xvda", "n0 r7", False),
    ]


def test_a_pvh_driver_domain() -> None:
    layout = domain_layout(DomainSpec(2, "storage", uuid=UUID, type="pvh",
                                      driver_domain=True), 5.0)
    table = {e.path: (e.value, e.perms) for e in layout.entries}
    # libxl_create.c: a driver domain may run libxl and qemu itself.
    assert table["/local/domain/2/libxl"] == ("", ("n2",))
    assert table["/local/domain/2/device-model"] == ("", ("n2",))
    # A PVH guest records only its start time under /vm (no image).
    assert [p for p in table if p.startswith(f"/vm/{UUID}/")] == [
        f"/vm/{UUID}/uuid", f"/vm/{UUID}/name", f"/vm/{UUID}/start_time"]
    assert table["/libxl/2/type"] == ("pvh", ("n0",))


def test_a_disk() -> None:
    layout = disk_layout(7, "pv", DiskSpec("xvdb", "/srv/vm7.img", mode="r"))
    fe, be = "/local/domain/7/device/vbd/51728", "/local/domain/0/backend/vbd/7/51728"
    lx = "/libxl/7/device/vbd/51728"
    assert layout.address == DeviceAddress("vbd", 7, 51728, 0)
    assert layout.replaces == (lx, fe, be)
    back = [  # libxl_disk.c, device_disk_add, for the phy backend
        ("params", "/srv/vm7.img"), ("script", "/etc/xen/scripts/block"),
        ("frontend-id", "7"), ("online", "1"), ("removable", "0"), ("bootable", "1"),
        ("state", "1"), ("dev", "xvdb"), ("type", "phy"), ("mode", "r"),
        ("device-type", "disk"),
        ("discard-enable", "0"),  # libxl's default: on only for writable disks
        ("specification", "xen")]
    assert rows(layout) == [
        # libxl_device.c, libxl__device_generic_add: libxl's record first
        (f"{lx}/frontend", fe, "n0", False),
        (f"{lx}/backend", be, "n0", False),
        # the frontend: the guest's, readable by the backend domain
        (fe, "", "n7 r0", True),
        (f"{fe}/backend", be, "n7 r0", False),
        (f"{fe}/backend-id", "0", "n7 r0", True),
        (f"{fe}/state", "1", "n7 r0", True),
        (f"{fe}/virtual-device", "51728", "n7 r0", True),
        (f"{fe}/device-type", "disk", "n7 r0", True),
        (f"{fe}/trusted", "1", "n7 r0", True),
        (f"{fe}/protocol", "x86_64-abi", "n7 r0", True),  # PV only, for old frontends
        # the backend: the backend domain's, readable by the guest
        (be, "", "n0 r7", True),
        (f"{be}/frontend", fe, "n0 r7", False),
        *[(f"{be}/{name}", value, "n0 r7", False) for name, value in back],
        # and the copy libxl trusts
        *[(f"{lx}/{name}", value, "n0", False) for name, value in back],
    ]


def test_a_disk_for_pvh_has_no_protocol() -> None:
    names = [e.path.name for e in disk_layout(7, "pvh", DiskSpec("xvda", "/i")).entries]
    assert "protocol" not in names


def test_a_cdrom_as_xl_parses_it() -> None:
    # tools/libs/util/libxlu_disk.c: a cdrom is read-only and removable, and
    # without a target its format is "empty".
    cdrom = DiskSpec("hdc", "", cdrom=True)
    assert (cdrom.mode, cdrom.removable, cdrom.format, cdrom.devid) == ("r", True, "empty", 5632)
    table = {e.path: e.value for e in disk_layout(7, "pv", cdrom).entries}
    be = "/local/domain/0/backend/vbd/7/5632"
    assert table[f"{be}/device-type"] == "cdrom" and table[f"{be}/removable"] == "1"
    assert table["/local/domain/7/device/vbd/5632/device-type"] == "cdrom"


@pytest.mark.parametrize("bad", [
    {"vdev": "vda"}, {"format": "qcow2"}, {"target": ""}, {"mode": "rw"},
    {"backend_domid": 0x7FF0},
])
def test_disks_libxl_would_refuse(bad: dict[str, object]) -> None:
    # libxl_device.c, disk_try_backend: the phy backend takes raw images only.
    with pytest.raises(ValueError):
        DiskSpec(**{"vdev": "xvda", "target": "/img", **bad})


def test_a_nic_in_a_driver_domain() -> None:
    nic = NicSpec(mac="00:16:3E:AA:BB:CC", bridge="br0", backend_domid=2, mtu=9000,
                  rate=(1250000, 50000), ip="10.0.0.7")
    layout = nic_layout(7, nic, 1)
    fe, be = "/local/domain/7/device/vif/1", "/local/domain/2/backend/vif/7/1"
    lx = "/libxl/7/device/vif/1"
    back = [  # libxl_device.c, libxl__device_add_async, then libxl_nic.c
        ("frontend-id", "7"), ("online", "1"), ("state", "1"),
        ("script", "/etc/xen/scripts/vif-bridge"),
        ("mac", "00:16:3e:aa:bb:cc"),  # printed %02hhx
        ("ip", "10.0.0.7"), ("rate", "1250000,50000"),
        ("mtu", "9000"),               # only when not 1500
        ("bridge", "br0"), ("handle", "1"), ("type", "vif"),
        ("hotplug-status", "")]        # netback waits for vif-bridge's "connected"
    assert rows(layout) == [
        (f"{lx}/frontend", fe, "n0", False),
        (f"{lx}/backend", be, "n0", False),
        (fe, "", "n7 r2", True),
        (f"{fe}/backend", be, "n7 r2", False),
        (f"{fe}/backend-id", "2", "n7 r2", True),
        (f"{fe}/state", "1", "n7 r2", True),
        (f"{fe}/handle", "1", "n7 r2", True),
        (f"{fe}/mac", "00:16:3e:aa:bb:cc", "n7 r2", True),
        (f"{fe}/trusted", "1", "n7 r2", True),
        (f"{fe}/mtu", "9000", "n2 r7", True),  # ro_front: the guest may not change it
        (be, "", "n2 r7", True),
        (f"{be}/frontend", fe, "n2 r7", False),
        *[(f"{be}/{name}", value, "n2 r7", False) for name, value in back],
        *[(f"{lx}/{name}", value, "n0", False) for name, value in back],
    ]


def test_the_primary_console() -> None:
    layout = console_layout(7, ConsoleSpec(ring_ref=4242, port=3))
    fe, be = "/local/domain/7/console", "/local/domain/0/backend/console/7/0"
    lx = "/libxl/7/device/console/0"
    assert layout.address is not None and frontend_path(layout.address) == fe
    back = [("frontend-id", "7"), ("online", "1"), ("state", "1"), ("protocol", "vt100")]
    assert rows(layout) == [
        (f"{lx}/frontend", fe, "n0", False),
        (f"{lx}/backend", be, "n0", False),
        # libxl_device.c: console 0's directory is the backend domain's (it holds
        # what the guest must not change), only backend-id is the guest's
        (fe, "", "n0 r7", True),
        (f"{fe}/backend", be, "n0 r7", False),
        (f"{fe}/backend-id", "0", "n7 r0", True),
        # libxl_console.c, libxl__device_console_add with the build state: the
        # toolstack writes the ring; no state, no handshake
        (f"{fe}/limit", "1048576", "n0 r7", True),
        (f"{fe}/type", "xenconsoled", "n0 r7", True),
        (f"{fe}/output", "pty", "n0 r7", True),
        (f"{fe}/tty", "", "n0 r7", True),  # xenconsoled writes the pty's name
        (f"{fe}/port", "3", "n0 r7", True),
        (f"{fe}/ring-ref", "4242", "n0 r7", True),
        (be, "", "n0 r7", True),
        (f"{be}/frontend", fe, "n0 r7", False),
        *[(f"{be}/{name}", value, "n0 r7", False) for name, value in back],
        *[(f"{lx}/{name}", value, "n0", False) for name, value in back],
    ]


def test_a_secondary_console() -> None:
    layout = console_layout(7, ConsoleSpec(devid=1, name="org.qemu.guest_agent.0"))
    fe = "/local/domain/7/device/console/1"
    table = {e.path: (e.value, " ".join(e.perms)) for e in layout.entries}
    # A guest-driven frontend: state and protocol are the guest's; the ring it
    # writes itself; the name and type are the backend domain's. libxl maps
    # channels to ioemu consoles.
    assert table[fe] == ("", "n7 r0")
    assert table[f"{fe}/state"] == ("1", "n7 r0")
    assert table[f"{fe}/protocol"] == ("vt100", "n7 r0")
    assert table[f"{fe}/name"] == ("org.qemu.guest_agent.0", "n0 r7")
    assert table[f"{fe}/type"] == ("ioemu", "n0 r7")
    assert f"{fe}/ring-ref" not in table and f"{fe}/port" not in table
    assert table["/local/domain/0/backend/console/7/1/name"] == ("org.qemu.guest_agent.0",
                                                                  "n0 r7")
    with pytest.raises(ValueError):
        ConsoleSpec(devid=0, name="no")  # libxl: the primary console takes no name


def test_random_macs_are_xens() -> None:
    # libxl_nic.c: Xen's OUI 00:16:3e, the next bit clear (locally unique range).
    for _ in range(50):
        mac = random_mac()
        assert mac.startswith("00:16:3e:") and int(mac[9:11], 16) < 0x80
        assert NicSpec(mac=mac).mac == mac
    with pytest.raises(ValueError):
        NicSpec(mac="00:16:3e:00:00")


@pytest.mark.parametrize("bad", [{"domid": 0}, {"domid": 0x7FF0}, {"name": "a/b"},
                                 {"name": ""}, {"uuid": "nope"}, {"type": "hvm"},
                                 {"vcpus": 2, "max_vcpus": 1},
                                 {"memory_kib": 2048, "maxmem_kib": 1024}])
def test_domains_libxl_would_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DomainSpec(**{"domid": 5, "name": "guest", **bad})


def test_entries_read_as_xenstore_ls_would_show_them() -> None:
    entry = Entry(DeviceAddress("vbd", 7, 51712).frontend, "", ("n7", "r0"), True)
    assert str(entry) == '/local/domain/7/device/vbd/51712 = "" (n7 r0)'
