"""A domain's xl.cfg read as ``xl create`` reads it, and xl.conf's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.lab.xlconf import GlobalConfig, parse_global, read_global
from xenstore.lab.xlconfig import (
    ConfigError,
    DiskConfig,
    DomainConfig,
    VifConfig,
    load,
    load_text,
)

DEBIAN_PV = """\
name = "debian-pv"
type = "pv"          # or builder = "generic"
kernel = "/boot/vmlinuz-guest"
ramdisk = "/boot/initrd-guest"
extra = "root=/dev/xvda1 console=hvc0"
memory = 1024
vcpus = 2
disk = [ 'phy:/dev/vg0/debian,xvda,w', 'file:/srv/iso/debian.iso,xvdc:cdrom,r' ]
vif = [ 'bridge=Br0,mac=00:16:3e:12:34:56' ]
on_reboot = "restart"
"""

WIN_HVM = """\
name = "win-hvm"
type = "hvm"         # or builder = "hvm"
memory = 4096
vcpus = 2
disk = [ 'format=qcow2, vdev=hda, access=rw, target=/srv/vm/win.qcow2',
         '/srv/iso/win.iso,raw,hdc,r,devtype=cdrom' ]
boot = "d"
vnc = 1
vif = [ 'bridge=Br0,model=e1000' ]
"""


def test_course_pv_guest() -> None:
    config = load_text(DEBIAN_PV, "debian-pv.cfg")
    assert config == DomainConfig(
        source="debian-pv.cfg", name="debian-pv", type="pv", uuid=None, memory=1024,
        maxmem=1024, vcpus=2, maxvcpus=2, kernel="/boot/vmlinuz-guest",
        ramdisk="/boot/initrd-guest", cmdline="root=/dev/xvda1 console=hvc0",
        disks=(
            DiskConfig(spec="phy:/dev/vg0/debian,xvda,w", line=8, target="/dev/vg0/debian",
                       format="raw", vdev="xvda", devid=51712, access="w", devtype="disk"),
            DiskConfig(spec="file:/srv/iso/debian.iso,xvdc:cdrom,r", line=8,
                       target="/srv/iso/debian.iso", format="raw", vdev="xvdc", devid=51744,
                       access="r", devtype="cdrom", removable=True)),
        vifs=(VifConfig(spec="bridge=Br0,mac=00:16:3e:12:34:56", line=9, devid=0,
                        bridge="Br0", mac="00:16:3e:12:34:56", model="rtl8139",
                        script="vif-bridge", type="vif"),),
        on_reboot="restart")
    assert (config.memory_kib, config.maxmem_kib) == (1 << 20, 1 << 20)
    assert config.warnings == () and config.unmodelled == ()


def test_course_hvm_guest() -> None:
    config = load_text(WIN_HVM, "win-hvm.cfg")
    assert config == DomainConfig(
        source="win-hvm.cfg", name="win-hvm", type="hvm", uuid=None, memory=4096,
        maxmem=4096, vcpus=2, maxvcpus=2,
        disks=(
            DiskConfig(spec="format=qcow2, vdev=hda, access=rw, target=/srv/vm/win.qcow2",
                       line=5, target="/srv/vm/win.qcow2", format="qcow2", vdev="hda",
                       devid=768, access="w", devtype="disk"),
            DiskConfig(spec="/srv/iso/win.iso,raw,hdc,r,devtype=cdrom", line=6,
                       target="/srv/iso/win.iso", format="raw", vdev="hdc", devid=5632,
                       access="r", devtype="cdrom", removable=True)),
        vifs=(VifConfig(spec="bridge=Br0,model=e1000", line=9, devid=0, bridge="Br0",
                        mac=None, model="e1000", script="vif-bridge", type="ioemu"),),
        boot="d", vnc=True, vnclisten="127.0.0.1")


def test_course_guests_as_specs() -> None:
    pv = load_text(DEBIAN_PV, "debian-pv.cfg").to_specs(5)
    assert (pv.domain.domid, pv.domain.name, pv.domain.type) == (5, "debian-pv", "pv")
    assert pv.domain.memory_kib == 1 << 20 and pv.domain.vcpu_slots == 2
    assert pv.domain.cmdline == "root=/dev/xvda1 console=hvc0"
    assert [(d.vdev, d.target, d.mode, d.cdrom) for d in pv.disks] == [
        ("xvda", "/dev/vg0/debian", "w", False), ("xvdc", "/srv/iso/debian.iso", "r", True)]
    assert [(n.devid, n.mac, n.bridge, n.script) for n in pv.nics] == [
        (0, "00:16:3e:12:34:56", "Br0", "vif-bridge")]
    hvm = load_text(WIN_HVM, "win-hvm.cfg").to_specs(6)
    assert (hvm.domain.type, hvm.domain.boot, hvm.domain.vnc) == ("hvm", "d", True)
    assert [(d.vdev, d.format, d.backend_for("hvm")) for d in hvm.disks] == [
        ("hda", "qcow2", "qdisk"), ("hdc", "raw", "qdisk")]
    assert [(n.model, n.nictype("hvm")) for n in hvm.nics] == [("e1000", "vif_ioemu")]


def test_builder_is_the_old_type() -> None:
    text = WIN_HVM.replace('type = "hvm"', 'builder = "hvm"')
    assert load_text(text).type == "hvm"
    text = DEBIAN_PV.replace('type = "pv"', 'builder = "generic"')
    assert load_text(text).type == "pv"
    assert load_text(DEBIAN_PV.replace('type = "pv"', 'type = "pvh"')).type == "pvh"
    assert load_text(DEBIAN_PV.replace('type = "pv"', "")).type == "pv"  # x86's default


def test_defaults_and_cmdline() -> None:
    config = load_text('name = "a"\nkernel = "/k"\nroot = "/dev/xvda1"\nextra = "ro"\n'
                       'maxmem = 512\nvcpus = 0\nuuid = "6F9619FF-8B86-D011-B42D-00C04FC964FF"\n')
    assert (config.memory, config.maxmem, config.vcpus, config.maxvcpus) == (512, 512, 1, 1)
    assert config.cmdline == "root=/dev/xvda1 ro"
    assert config.uuid == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    config = load_text('name = "a"\nkernel = "/k"\ncmdline = "quiet"\nextra = "ro"\n')
    assert (config.memory, config.maxmem, config.cmdline) == (32, 32, "quiet")
    assert config.warnings == ("<string>:3: Warning: ignoring root= and extra= in favour "
                               "of cmdline=",)
    assert load_text('name = "a"\nbootloader = "pygrub"\n').kernel is None
    assert load_text('name = "a"\nfirmware = "pvgrub64"\n').kernel == (
        "/usr/lib/xen/boot/pvgrub64.bin")


def test_overrides_as_xl_create_takes_them(tmp_path: Path) -> None:
    path = tmp_path / "debian-pv.cfg"
    path.write_text(DEBIAN_PV)
    config = load(str(path), ["memory=2048", 'name="web2"', "vcpus=4"])
    assert (config.name, config.memory, config.vcpus) == ("web2", 2048, 4)
    with pytest.raises(ConfigError) as caught:
        load(str(path), ["memory=lots"])
    assert caught.value.message == (
        f"{path}:12: config parsing error near `lots': syntax error, unexpected IDENT, "
        "expecting STRING or NUMBER or '['\nFailed to parse config: Invalid argument")


def test_unknown_keys_warn_and_known_ones_are_listed() -> None:
    config = load_text(DEBIAN_PV + "memmory = 2048\npae = 1\ncpus = \"0-1\"\n", "d.cfg")
    assert config.memory == 1024
    assert config.warnings == ("d.cfg:11: warning: unknown key `memmory' (xl ignores it)",)
    assert config.unmodelled == ("pae", "cpus")


def test_xl_conf_defaults_for_vifs() -> None:
    conf = parse_global('vif.default.bridge = "Br0"\nvif.default.script = "vif-openvswitch"\n'
                        'vif.default.backend = "0"\n')
    config = load_text(DEBIAN_PV.replace("bridge=Br0,", "") + "vif += [ '' ]\n", conf=conf)
    assert [(v.devid, v.bridge, v.script, v.backend) for v in config.vifs] == [
        (0, "Br0", "vif-openvswitch", "0"), (1, "Br0", "vif-openvswitch", "0")]
    plain = load_text(DEBIAN_PV.replace("bridge=Br0,", ""))
    assert (plain.vifs[0].bridge, plain.vifs[0].script) == ("xenbr0", "vif-bridge")


def test_xl_conf() -> None:
    conf = parse_global('autoballoon = "off"\nrun_hotplug_scripts = 0\n'
                        'defaultbridge = "br9"\nlockfile = "/run/xl.lock"\n'
                        'output_format = "sxp"\nclaim_mode = 0\nfrobnicate = 1\n', "xl.conf")
    assert conf == GlobalConfig(source="xl.conf", autoballoon="off", run_hotplug_scripts=False,
                                vif_bridge="br9", lockfile="/run/xl.lock", output_format="sxp",
                                claim_mode=False)
    assert conf.bridge == "br9" and conf.vif_script_default == "vif-bridge"
    assert conf.warnings == (
        "xl.conf:7: warning: unknown key `frobnicate' (xl ignores it)",
        "the global config option defaultbridge is deprecated, please switch to "
        "vif.default.bridge")
    odd = parse_global('autoballoon = "maybe"\n', "xl.conf")
    assert odd.autoballoon == "auto"
    assert odd.warnings == ("xl.conf:1: warning: invalid autoballoon option",)


def test_xl_conf_missing_or_broken(tmp_path: Path) -> None:
    missing = read_global(str(tmp_path / "xl.conf"))
    assert missing == GlobalConfig(source=str(tmp_path / "xl.conf"))
    assert missing.warnings == (f"Failed to read config file: {tmp_path}/xl.conf: "
                                "No such file or directory",)
    (tmp_path / "xl.conf").write_text("autoballoon = off\n")
    with pytest.raises(ConfigError) as caught:
        read_global(str(tmp_path / "xl.conf"))
    assert caught.value.message == (
        f"{tmp_path}/xl.conf:1: config parsing error near `off': syntax error, unexpected "
        "IDENT, expecting STRING or NUMBER or '['\nFailed to parse config file: "
        "Invalid argument")


BASE = 'name = "g"\nkernel = "/k"\n'  # lines 1-2; the case's text starts on line 3

ERRORS = [
    ('memory = "lots"\n', "f.cfg:3: parameter `memory' is not a valid number"),
    ("memory = [1024]\n", "f.cfg:3: parameter `memory' is a list but should be a single "
                          "value"),
    ("memory = 1024\nmemory += 1\n", "f.cfg:4: can't use += with numbers for parameter "
                                     "`memory'"),
    ('disk = "phy:/x,xvda,w"\n', "f.cfg:3: parameter `disk' is a single value but should "
                                 "be a list"),
    ('type = "xen"\n', "f.cfg:3: type: Invalid domain type xen."),
    ('type = "pv"\nbuilder = "hvm"\n', 'f.cfg:4: builder: Contradicting "builder" and "type" '
                                       "options specified."),
    ('builder = "linux"\n', "f.cfg:3: builder: Invalid domain type linux."),
    ('uuid = "not-a-uuid"\n', "f.cfg:3: uuid: Failed to parse UUID: not-a-uuid"),
    ("memory = 1024\nmaxmem = 512\n", "f.cfg:4: maxmem: maxmem (512 MiB) is less than memory "
                                      "(1024 MiB); xl.cfg(5) wants it equal or greater"),
    ("vcpus = 4\nmaxvcpus = 2\n", "f.cfg:4: maxvcpus: xl: maxvcpus < vcpus"),
    ('on_crash = "explode"\n', 'f.cfg:3: on_crash: Unknown on_crash action "explode" '
                               "specified"),
    ('firmware = "pvgrub64"\n', "f.cfg:3: firmware: ERROR: both kernel and firmware "
                                 "specified"),
    ("disk = [ '/dev/vg0/debian,xvda,w' ]\n",
     "f.cfg:3: disk: config parsing error in disk specification: unknown value for format: "
     "near `xvda' in `/dev/vg0/debian,xvda,w'"),
    ("disk = [ 'phy:/dev/vg0/a,xvda,w',\n         'phy:/dev/vg0/b' ]\n",
     "f.cfg:4: disk: config parsing error in disk specification: no vdev specified in "
     "`phy:/dev/vg0/b'"),
    ("disk = [ 'phy:/dev/vg0/a,xvda,w', ['x'] ]\n", "f.cfg:3: disk: item 2 is a list, not a "
                                                    "disk spec"),
    ("disk = [ 'phy:/x,xvd1,w' ]\n", "f.cfg:3: disk: Invalid or unsupported virtual disk "
                                     "identifier xvd1"),
    ("disk = [ 'phy:/dev/vg0/a,xvda,w',\n  'phy:/dev/vg0/b,51712,w' ]\n",
     "f.cfg:4: disk: device already exists in xenstore: device 51712 of "
     "`phy:/dev/vg0/b,51712,w' is taken by `phy:/dev/vg0/a,xvda,w' (line 3)"),
    ("disk = [ 'format=empty,vdev=xvda,target=' ]\n", "f.cfg:3: disk: Disk vdev=xvda is "
                                                      "empty but not cdrom"),
    ("vif = [ 'bridge=Br0,mac=00:16:3e:zz:00:01' ]\n", "f.cfg:3: vif: Invalid parameter "
                                                        "`mac'."),
    ("vif = [ 'brige=Br0' ]\n", "f.cfg:3: vif: unrecognized argument `brige=Br0'"),
    ("vif = [ 'rate=fast' ]\n", "f.cfg:3: vif: config parsing error in vif: invalid rate in "
                                "`fast'"),
    ("vif = [ 'type=ioemu' ]\n", "f.cfg:3: vif: trying to create PV or PVH guest with an "
                                 "emulated interface"),
    ("vif = [ 'devid=1', 'devid=1' ]\n", "f.cfg:3: vif: device already exists in xenstore: "
                                         "device 1 of `devid=1' is taken by `devid=1' (line "
                                         "3)"),
    ('device_model_version = "qemu-xen-traditional"\n',
     'f.cfg:3: device_model_version: Unknown device_model_version "qemu-xen-traditional" '
     "specified"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(BASE + text, "f.cfg")
    assert caught.value.message == message
    assert caught.value.exit_code == 1
    assert caught.value.line == int(message.split(":")[1])


@pytest.mark.parametrize(("text", "message"), [
    ('kernel = "/k"\n', "f.cfg: name: Domain name must be specified."),
    ('name = "g"\n', "f.cfg: kernel: Neither kernel nor bootloader specified"),
    ('name = "g"\nfirmware = "grub"\n', "f.cfg:2: firmware: ERROR: only pvgrub{32|64} "
                                        "supported as firmware options"),
    ('name = "g"\ntype = "hvm"\nvga = "vga"\n', 'f.cfg:3: vga: Unknown vga "vga" specified'),
    ('name = "g"\ntype = "hvm"\nbios = "uefi"\n',
     'f.cfg:3: bios: ERROR: invalid value "uefi" for "bios"'),
    ('name = "g"\ntype = "hvm"\ndisk = [ "/x,raw,hdc,r,devtype=cdrom,backendtype=tap" ]\n',
     "f.cfg:3: disk: Backend for CD devices on HVM guests must be Qdisk or Phy"),
])
def test_more_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_text(text, "f.cfg")
    assert caught.value.message == message


def test_missing_target_files_when_asked(tmp_path: Path) -> None:
    image = tmp_path / "debian.img"
    image.write_bytes(b"")
    text = BASE + (f"disk = [ 'phy:{image},xvda,w',\n"
                   f"         'phy:{tmp_path}/gone.img,xvdb,w' ]\n")
    assert len(load_text(text, "f.cfg").disks) == 2  # files are not looked at by default
    with pytest.raises(ConfigError) as caught:
        load_text(text, "f.cfg", check_files=True)
    assert caught.value.message == (f"f.cfg:4: disk: Disk vdev=xvdb failed to stat: "
                                    f"{tmp_path}/gone.img: No such file or directory")
    assert (caught.value.line, caught.value.key) == (4, "disk")
    # as libxl, not where a script, a driver domain or qemu (an HVM cdrom) serves it
    for spec in ("/gone,raw,xvdb,w,script=block-iscsi", "/gone,raw,xvdb,w,backend=1",
                 "/gone,raw,xvdb,w,backendtype=qdisk", ",,xvdb:cdrom,r"):
        load_text(BASE + f"disk = [ '{spec}' ]\n", check_files=True)
    hvm = 'name = "h"\ntype = "hvm"\ndisk = [ "/gone.iso,raw,hdc,r,devtype=cdrom" ]\n'
    load_text(hvm, check_files=True)


def test_to_specs_refusals() -> None:
    config = load_text(BASE + "disk = [ '/x,raw,xvda,w,backendtype=tap' ]\n", "f.cfg")
    with pytest.raises(ConfigError, match=r"f\.cfg:3: disk: xvda: backendtype=tap"):
        config.to_specs(1)
    config = load_text(BASE + "vif = [ 'backend=netdom' ]\n", "f.cfg")
    with pytest.raises(ConfigError, match=r"f\.cfg:3: vif: backend=netdom"):
        config.to_specs(1)
    with pytest.raises(ConfigError, match="domid 0: not a guest domain id"):
        load_text(BASE).to_specs(0)


SPEC_TEXT = st.text(alphabet=st.sampled_from(list("ax1:,=/ .-rwcdomvphyfilebg0")), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["disk", "vif", "memory", "type", "on_crash", "boot", "vnc", "uuid"]),
       st.one_of(SPEC_TEXT, st.lists(SPEC_TEXT, max_size=3)))
def test_any_value_is_read_or_refused_with_config_error(key: str,
                                                        value: str | list[str]) -> None:
    def quoted(text: str) -> str:
        return "'" + text + "'"
    written = quoted(value) if isinstance(value, str) else (
        "[" + ", ".join(quoted(v) for v in value) + "]")
    try:
        config = load_text(f'{BASE}type = "hvm"\n{key} = {written}\n', check_files=True)
        config.to_specs(1)
    except ConfigError as error:
        assert error.message
