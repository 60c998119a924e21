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
    domain_steps,
    frontend_path,
    nic_layout,
)
from xenstore.xenbus.layout_hvm import device_model_layout, vkbd_layout, vnc_layout
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
        (f"{home}/name", "vm7", "n0 r7", False),   # libxl_domain.c, libxl__domain_rename,
        (f"{vm}/name", "vm7", "n0 r7", False),     # which names the /vm record too
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
        # libxl_create.c, store_libxl_entry, on its own: libxl's default device
        # model is recorded for every type
        ("/libxl/7/dm-version", "qemu_xen", "n0", False),
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
        f"/vm/{UUID}/name", f"/vm/{UUID}/uuid", f"/vm/{UUID}/start_time"]
    assert table["/libxl/2/type"] == ("pvh", ("n0",))
    # PVH has neither video RAM nor hvmloader, platform or S3/S4 (libxl_create.c).
    assert table["/local/domain/2/memory/videoram"] == ("0", ("n0", "r2"))
    assert not [p for p in table if "hvmloader" in p or "/platform/" in p or "-s3" in p]


def test_a_domain_in_libxls_steps() -> None:
    spec = DomainSpec(3, "vm3", uuid=UUID)
    make, version, build = domain_steps(spec, 5.0)
    # libxl__domain_make's transaction clears stale nodes; dm-version is a lone
    # write; libxl__build_post's transaction comes last (then INTRODUCE).
    assert make.atomic and make.replaces and not version.atomic and build.atomic
    assert [e.path for e in version.entries] == ["/libxl/3/dm-version"]
    assert build.entries[0].path == "/local/domain/3/memory/static-max"
    assert rows(domain_layout(spec, 5.0)) == [
        row for step in (make, version, build) for row in rows(step)]


def test_an_hvm_domain() -> None:
    spec = DomainSpec(4, "win", uuid=UUID, type="hvm", memory_kib=4 << 20, vcpus=2)
    layout = domain_layout(spec, 1700000000.5)
    home, vm = "/local/domain/4", f"/vm/{UUID}"
    table = {e.path: (e.value, " ".join(e.perms), e.explicit) for e in layout.entries}
    # libxl_create.c, libxl__domain_make: ~/hvmloader for the firmware, and the
    # guest answers S3/S4 requests too.
    assert table[f"{home}/hvmloader"] == ("", "n0 r4", True)
    assert table[f"{home}/control/feature-s3"] == ("", "n4", True)
    assert table[f"{home}/control/feature-s4"] == ("", "n4", True)
    controls = [p.rsplit("/", 1)[1] for p in table if p.startswith(f"{home}/control/")]
    assert controls[:7] == ["shutdown", "feature-poweroff", "feature-reboot",
                            "feature-suspend", "feature-s3", "feature-s4", "sysrq"]
    # libxl_create.c, libxl__domain_build_info_setdefault: qemu-xen's cirrus card
    # has 8 MiB, which libxl_dom.c's libxl__build_post takes off the target.
    assert table[f"{home}/memory/static-max"][0] == "4194304"
    assert table[f"{home}/memory/target"][0] == str(4194304 - 8192)
    assert table[f"{home}/memory/videoram"][0] == "8192"
    # libxl_create.c, libxl__domain_build: platform flags and /vm entries.
    assert [(p, v) for p, (v, _, _) in table.items() if "/platform/" in p] == [
        (f"{home}/platform/acpi", "1"), (f"{home}/platform/acpi_s3", "1"),
        (f"{home}/platform/acpi_s4", "1"), (f"{home}/platform/acpi_laptop_slate", "0"),
        (f"{home}/platform/device-model", "qemu_xen")]
    assert [(p, v) for p, (v, _, _) in table.items() if p.startswith(f"{vm}/")] == [
        (f"{vm}/name", "win"), (f"{vm}/uuid", UUID), (f"{vm}/rtc/timeoffset", ""),
        (f"{vm}/image/ostype", "hvm"), (f"{vm}/start_time", "1700000000.50")]
    # Above memory, maxmem costs the target 1 MiB more (libxl__get_targetmem_fudge).
    bigger = DomainSpec(4, "w", type="hvm", memory_kib=1 << 20, maxmem_kib=2 << 20,
                        vga="stdvga")
    assert (bigger.videoram, bigger.target_kib) == (16384, (1 << 20) - 16384 - 1024)
    traditional = DomainSpec(4, "w", type="hvm", device_model_version="qemu-xen-traditional")
    assert (traditional.videoram, traditional.firmware) == (4096, "rombios")


@pytest.mark.parametrize("bad", [
    {"bios": "rombios"}, {"device_model_version": "qemu-xen-traditional", "bios": "seabios"},
    {"videoram_kib": 4096}, {"vga": "stdvga", "videoram_kib": 8192}, {"boot": "x"},
    {"device_model_version": "qemu-xen-traditional", "vga": "qxl"},
    {"memory_kib": 8192}, {"vnc_display": -1},
])
def test_hvm_domains_libxl_would_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DomainSpec(**{"domid": 5, "name": "guest", "type": "hvm", **bad})


def test_the_device_model() -> None:
    spec = DomainSpec(4, "win", uuid=UUID, type="hvm")
    assert rows(device_model_layout(spec, 4321)) == [
        # libxl_dm.c, libxl__spawn_local_dm, before qemu starts: lone writes
        ("/local/domain/4/hvmloader/bios", "seabios", "n0 r4", False),
        ("/local/domain/4/hvmloader/allow-memory-relocate", "0", "n0 r4", False),
        ("/local/domain/0/device-model/4", "", "n0", False),
        # libxl_exec.c, libxl__spawn_record_pid: how libxl__dm_active knows it runs
        ("/local/domain/4/image/device-model-pid", "4321", "n0 r4", False)]
    assert not device_model_layout(spec, 1).atomic
    # libxl_dm.c, device_model_postconfig_vnc: qemu's answer to query-vnc
    assert rows(vnc_layout(spec)) == [
        ("/local/domain/4/console/vnc-listen", "127.0.0.1", "n0 r4", False),
        ("/local/domain/4/console/vnc-port", "5900", "n0 r4", False)]
    assert vnc_layout(DomainSpec(4, "w", type="hvm", vnc=False)).entries == ()
    traditional = DomainSpec(4, "w", type="hvm", device_model_version="qemu-xen-traditional")
    assert [(e.path.name, e.value) for e in device_model_layout(traditional, 1).entries] == [
        ("bios", "rombios"), ("allow-memory-relocate", "1"), ("4", ""),
        ("disable_pf", "0"), ("device-model-pid", "1")]


def test_the_pv_keyboard() -> None:
    # libxl_create.c, domcreate_launch_dm: an HVM guest's vkbd, served by qemu,
    # with only the nodes libxl__device_add gives every device.
    layout = vkbd_layout(4)
    fe, be = "/local/domain/4/device/vkbd/0", "/local/domain/0/backend/vkbd/4/0"
    assert layout.address == DeviceAddress("vkbd", 4, 0, 0)
    assert rows(layout) == [
        ("/libxl/4/device/vkbd/0/frontend", fe, "n0", False),
        ("/libxl/4/device/vkbd/0/backend", be, "n0", False),
        (fe, "", "n4 r0", True), (f"{fe}/backend", be, "n4 r0", False),
        (f"{fe}/backend-id", "0", "n4 r0", True), (f"{fe}/state", "1", "n4 r0", True),
        (be, "", "n0 r4", True), (f"{be}/frontend", fe, "n0 r4", False),
        (f"{be}/frontend-id", "4", "n0 r4", False), (f"{be}/online", "1", "n0 r4", False),
        (f"{be}/state", "1", "n0 r4", False),
        ("/libxl/4/device/vkbd/0/frontend-id", "4", "n0", False),
        ("/libxl/4/device/vkbd/0/online", "1", "n0", False),
        ("/libxl/4/device/vkbd/0/state", "1", "n0", False)]


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
    cdrom = DiskSpec("xvdc", "/srv/debian.iso", cdrom=True)
    assert (cdrom.mode, cdrom.removable, cdrom.format, cdrom.devid) == ("r", True, "raw", 51744)
    table = {e.path: e.value for e in disk_layout(7, "pv", cdrom).entries}
    be = "/local/domain/0/backend/vbd/7/51744"  # a raw image: phy, for PV
    assert table[f"{be}/device-type"] == "cdrom" and table[f"{be}/removable"] == "1"
    assert table["/local/domain/7/device/vbd/51744/device-type"] == "cdrom"
    # libxl_device.c, disk_try_backend: phy takes no empty format, so an empty
    # cdrom goes to qdisk, whose params name the format ("aio" for raw and empty).
    empty = DiskSpec("hdc", "", cdrom=True)
    assert (empty.format, empty.devid, empty.backend_for("pv")) == ("empty", 5632, "qdisk")
    assert disk_layout(7, "pv", empty).entries[2].path.endswith("/device/vbd/5632")
    table = {e.path: e.value for e in disk_layout(7, "pv", empty).entries}
    assert table["/local/domain/0/backend/qdisk/7/5632/params"] == "aio:"


def test_a_qcow2_disk_and_a_cdrom_of_an_hvm_guest_go_to_qdisk() -> None:
    disk = DiskSpec("hda", "/srv/win.qcow2", format="qcow2")
    layout = disk_layout(4, "hvm", disk)
    fe, be = "/local/domain/4/device/vbd/768", "/local/domain/0/backend/qdisk/4/768"
    lx = "/libxl/4/device/vbd/768"  # libxl's record and the frontend keep vbd
    assert layout.address == DeviceAddress("vbd", 4, 768, 0, "qdisk")
    assert layout.address.backend == be and layout.replaces == (lx, fe, be)
    back = [  # libxl_disk.c, device_disk_add, for qdisk: no script
        ("params", "qcow2:/srv/win.qcow2"), ("frontend-id", "4"), ("online", "1"),
        ("removable", "0"), ("bootable", "1"), ("state", "1"), ("dev", "hda"),
        ("type", "qdisk"), ("mode", "w"), ("device-type", "disk"),
        ("discard-enable", "1"), ("specification", "xen")]
    assert rows(layout) == [
        (f"{lx}/frontend", fe, "n0", False), (f"{lx}/backend", be, "n0", False),
        (fe, "", "n4 r0", True), (f"{fe}/backend", be, "n4 r0", False),
        (f"{fe}/backend-id", "0", "n4 r0", True), (f"{fe}/state", "1", "n4 r0", True),
        (f"{fe}/virtual-device", "768", "n4 r0", True),
        (f"{fe}/device-type", "disk", "n4 r0", True), (f"{fe}/trusted", "1", "n4 r0", True),
        (be, "", "n0 r4", True), (f"{be}/frontend", fe, "n0 r4", False),
        *[(f"{be}/{name}", value, "n0 r4", False) for name, value in back],
        *[(f"{lx}/{name}", value, "n0", False) for name, value in back]]
    # libxl_disk.c, libxl__device_disk_setdefault: an HVM guest's cdrom is qdisk's
    # even for a raw image.
    cdrom = DiskSpec("hdc", "/srv/debian.iso", cdrom=True)
    assert cdrom.backend_for("hvm") == "qdisk" and cdrom.backend_for("pv") == "phy"
    table = {e.path: e.value for e in disk_layout(4, "hvm", cdrom).entries}
    assert table["/local/domain/0/backend/qdisk/4/5632/params"] == "aio:/srv/debian.iso"
    with pytest.raises(ValueError, match="cdrom needs qdisk"):
        disk_layout(4, "hvm", DiskSpec("hdc", "/i.iso", cdrom=True, backend="phy"))


@pytest.mark.parametrize("bad", [
    {"vdev": "vda"}, {"format": "qcow2", "backend": "phy"}, {"target": ""}, {"mode": "rw"},
    {"backend_domid": 0x7FF0}, {"format": "qcow2", "script": "block"},
    {"backend": "qdisk", "script": "block"}, {"format": "iso"}, {"backend": "tap"},
])
def test_disks_libxl_would_refuse(bad: dict[str, object]) -> None:
    # libxl_device.c, disk_try_backend: the phy backend takes raw images only,
    # qdisk takes no script.
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


def test_an_hvm_guests_nic_is_emulated_too() -> None:
    # libxl_nic.c, libxl__device_nic_setdefault: an HVM guest's nic made with it
    # is vif_ioemu (qemu's model card plus the PV vif), a hotplugged one vif;
    # PV and PVH refuse ioemu. The model is qemu's: not in the store.
    nic = NicSpec(mac="00:16:3e:00:00:04", bridge="Br0", model="e1000")
    table = {e.path: e.value for e in nic_layout(4, nic, 0, "hvm").entries}
    assert table["/local/domain/0/backend/vif/4/0/type"] == "vif_ioemu"
    assert "e1000" not in table.values()
    assert nic.nictype("hvm", hotplug=True) == "vif"
    assert NicSpec(type="ioemu").nictype("hvm", hotplug=True) == "vif_ioemu"
    assert NicSpec(type="vif").nictype("hvm") == "vif"
    assert nic.nictype("pvh") == "vif"
    with pytest.raises(ValueError, match="HVM"):
        nic_layout(4, NicSpec(type="ioemu"), 0, "pv")


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
                                 {"name": ""}, {"uuid": "nope"}, {"type": "hvm2"},
                                 {"videoram_kib": 8192},
                                 {"vcpus": 2, "max_vcpus": 1},
                                 {"memory_kib": 2048, "maxmem_kib": 1024}])
def test_domains_libxl_would_refuse(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DomainSpec(**{"domid": 5, "name": "guest", **bad})


def test_entries_read_as_xenstore_ls_would_show_them() -> None:
    entry = Entry(DeviceAddress("vbd", 7, 51712).frontend, "", ("n7", "r0"), True)
    assert str(entry) == '/local/domain/7/device/vbd/51712 = "" (n7 r0)'
