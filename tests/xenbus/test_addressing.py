"""States, device paths and virtual disk numbers, as Xen defines them."""

from __future__ import annotations

import pytest

from xenstore.xenbus import DeviceAddress, XenbusState, XsPath, devid_to_vdev, vdev_to_devid


def test_states_are_xens() -> None:
    assert [(s.name, s.value) for s in XenbusState] == [
        ("Unknown", 0), ("Initialising", 1), ("InitWait", 2), ("Initialised", 3),
        ("Connected", 4), ("Closing", 5), ("Closed", 6), ("Reconfiguring", 7),
        ("Reconfigured", 8)]
    assert XenbusState.parse(b"4") is XenbusState.Connected
    assert XenbusState.parse(None) is XenbusState.Unknown
    assert XenbusState.parse(b"junk") is XenbusState.Unknown
    assert XenbusState.Closing.encoded() == b"5"


def test_device_addresses_are_libxls() -> None:
    disk = DeviceAddress("vbd", 3, 51712, 0)
    assert disk.frontend == "/local/domain/3/device/vbd/51712"
    assert disk.backend == "/local/domain/0/backend/vbd/3/51712"
    assert disk.backend / "state" == "/local/domain/0/backend/vbd/3/51712/state"
    assert disk.backend_error == "/local/domain/0/error/backend/vbd/3/51712"
    assert disk.frontend_error == "/local/domain/3/error/device/vbd/51712"
    assert DeviceAddress.of_backend(disk.backend) == disk
    assert DeviceAddress.of_frontend(disk.frontend, 0) == disk
    console = DeviceAddress("console", 3, 0, 0)
    assert console.frontend == "/local/domain/3/console"  # the primary console, as libxl
    assert DeviceAddress.of_frontend(console.frontend, 0) == console
    assert DeviceAddress("console", 3, 1, 0).frontend == "/local/domain/3/device/console/1"
    nic = DeviceAddress("vif", 7, 0, 2)
    assert nic.backend == "/local/domain/2/backend/vif/7/0"
    with pytest.raises(ValueError):
        DeviceAddress.of_backend("/local/domain/0/backend/vbd/3")
    with pytest.raises(ValueError):
        XsPath("/a") / "b/c"
    assert XsPath("/") / "tool" == "/tool" and (XsPath("/a") / "b").parent == "/a"


@pytest.mark.parametrize(("vdev", "devid"), [
    ("xvda", 51712), ("xvdb", 51728), ("xvdb2", 51730), ("xvdp", 51952), ("xvdp15", 51967),
    ("hda", 768), ("hdb", 832), ("hdc", 5632), ("hdd", 5696), ("hda1", 769), ("hdc63", 5695),
    ("sda", 2048), ("sdb3", 2067), ("sdp15", 2303),
    # the extended scheme: disks from xvdq (16) on, or partitions beyond 15
    ("xvdq", (1 << 28) | (16 << 8)), ("xvda16", (1 << 28) | 16),
    ("xvdz", (1 << 28) | (25 << 8)), ("xvdaa", (1 << 28) | (26 << 8)),
    ("xvdtq37", (1 << 28) | (536 << 8) | 37), ("d536p37", (1 << 28) | (536 << 8) | 37),
    ("d0", 51712), ("d0p0", 51712), ("d1p2", 51730),
    # numbers as libxl reads them (strtoul, base 0)
    ("51712", 51712), ("0xca00", 51712), ("0", 0), ("010", 8),
])
def test_vdev_to_devid_table(vdev: str, devid: int) -> None:
    assert vdev_to_devid(vdev) == devid


@pytest.mark.parametrize("vdev", ["xvd", "xvda01", "hde", "hda64", "sdq", "sda16", "vda",
                                  "xvda256", "d1048576p0", "xvdA", "0x", "08"])
def test_vdev_out_of_the_schemes(vdev: str) -> None:
    with pytest.raises(ValueError):
        vdev_to_devid(vdev)


@pytest.mark.parametrize("vdev", ["xvda", "xvdb2", "hdc", "hdd5", "sdb3", "xvdq", "xvda16",
                                  "xvdtq37", "xvdaa"])
def test_devid_to_vdev_inverts(vdev: str) -> None:
    assert devid_to_vdev(vdev_to_devid(vdev)) == vdev


def test_the_pure_parts_load_without_trio() -> None:
    """Command-line tools (pyxl's config reader) use paths, states and vdev numbers:
    importing them must not pull in trio."""
    import subprocess
    import sys

    code = ("import sys, xenstore.xenbus.vdev, xenstore.xenbus.paths, xenstore.xenbus.state;"
            "from xenstore.xenbus import vdev_to_devid, XenbusState;"
            "print('trio' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"
