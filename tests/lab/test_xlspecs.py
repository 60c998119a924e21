"""xl's disk and vif spec strings (xl-disk-configuration(5), xl-network-configuration(5)).

The disk cases were checked against Xen's own parser (libxlu_disk_l.c built
from Xen's tree).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.lab.xldisk import DiskSpecError, ParsedDisk, parse_disk
from xenstore.lab.xlvif import ParsedVif, VifSpecError, parse_rate, parse_vif


def _disk(target: str | None, fmt: str, vdev: str, *, rw: bool = True, cdrom: bool = False,
          **more: object) -> ParsedDisk:
    fields: dict[str, object] = dict(
        target=target, format=fmt, vdev=vdev, readwrite=rw and not cdrom, cdrom=cdrom,
        removable=cdrom, backendtype=None, backend=None, script=None, specification=None,
        direct_io_safe=False, discard=None, trusted=None)
    fields.update(more)
    return ParsedDisk(**fields)  # type: ignore[arg-type]


DISKS = [
    ("phy:/dev/vg0/debian,xvda,w", _disk("/dev/vg0/debian", "raw", "xvda")),
    ("file:/srv/iso/debian.iso,xvdc:cdrom,r", _disk("/srv/iso/debian.iso", "raw", "xvdc",
                                                    cdrom=True)),
    ("format=qcow2, vdev=hda, access=rw, target=/srv/vm/win.qcow2",
     _disk("/srv/vm/win.qcow2", "qcow2", "hda")),
    ("/srv/iso/win.iso,raw,hdc,r,devtype=cdrom", _disk("/srv/iso/win.iso", "raw", "hdc",
                                                       cdrom=True)),
    ("/dev/vg0/a,raw,xvda,ro", _disk("/dev/vg0/a", "raw", "xvda", rw=False)),
    ("/x,,hda", _disk("/x", "raw", "hda")),
    ("qcow2:/srv/a.qcow2,xvdb,w", _disk("/srv/a.qcow2", "qcow2", "xvdb")),
    ("iscsi:iqn.2001-05.com.example:disk,xvda,w",
     _disk("iqn.2001-05.com.example:disk", "raw", "xvda", script="block-iscsi")),
    (",,hdc:cdrom,r", _disk("", "empty", "hdc", cdrom=True)),
    ("vdev=xvdd, devtype=cdrom", _disk(None, "empty", "xvdd", cdrom=True)),
    # target= takes the rest, commas and all
    ("vdev=xvda,target=/srv/a,b.img", _disk("/srv/a,b.img", "raw", "xvda")),
    ("cdrom.iso,raw,xvda", _disk("cdrom.iso", "raw", "xvda")),
    ("/x,raw,xvda,w,backendtype=qdisk,backend=store1,script=block-drbd,discard,trusted,"
     "direct-io-safe", _disk("/x", "raw", "xvda", backendtype="qdisk", backend="store1",
                             script="block-drbd", discard=True, trusted=True,
                             direct_io_safe=True)),
]


@pytest.mark.parametrize(("spec", "expected"), DISKS)
def test_disk_specs(spec: str, expected: ParsedDisk) -> None:
    assert parse_disk(spec) == expected


def _error(message: str, spec: str) -> str:
    return f"config parsing error in disk specification: {message} in `{spec}'"


DISK_ERRORS = [
    # a positional target without a prefix is followed by its format
    ("/dev/vg0/debian,xvda,w", _error("unknown value for format: near `xvda'",
                                      "/dev/vg0/debian,xvda,w")),
    ("/x,raw,xvda,q", _error("unknown value for access: near `q'", "/x,raw,xvda,q")),
    ("access=x,target=/a", _error("unknown value for access: near `x'", "access=x,target=/a")),
    ("/x,raw,xvda,w,extra", _error("too many positional parameters: near `extra'",
                                   "/x,raw,xvda,w,extra")),
    ("", _error("no vdev specified", "")),
    ("/x", _error("no vdev specified", "/x")),
    ("vdev=xvda", _error("no target specified (and device not removable)", "vdev=xvda")),
    ("foo:/x,xvda", _error("unknown deprecated disk prefix: near `foo:'", "foo:/x,xvda")),
    ("foo=bar,/x", _error("unknown parameter: near `foo=b'", "foo=bar,/x")),
    ("devtype=floppy,/x,raw,xvda", _error("unknown value for type: near `devtype=floppy,'",
                                          "devtype=floppy,/x,raw,xvda")),
    ("/x,raw,xvda,vdev=xvdb", _error("vdev respecified: near `xvdb'", "/x,raw,xvda,vdev=xvdb")),
    ("format=raw,format=qcow2,vdev=xvda,target=/x",
     _error("format respecified: near `qcow2'", "format=raw,format=qcow2,vdev=xvda,target=/x")),
    ("/x,raw,xvda,backendtype=nfs", _error("unknown value for backendtype: near `nfs'",
                                           "/x,raw,xvda,backendtype=nfs")),
    ("/x,raw,xvda:floppy", _error("unknown deprecated type: near `floppy'",
                                  "/x,raw,xvda:floppy")),
    ("=x,/x", _error("bad disk syntax: near `=x,/x'", "=x,/x")),
]


@pytest.mark.parametrize(("spec", "message"), DISK_ERRORS)
def test_disk_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(DiskSpecError) as caught:
        parse_disk(spec)
    assert caught.value.problems == (message,)


def test_disk_errors_keep_coming_until_xl_stops() -> None:
    spec = "access=x,format=y,/z"
    with pytest.raises(DiskSpecError) as caught:
        parse_disk(spec)
    assert caught.value.problems == (_error("unknown value for access: near `x'", spec),
                                     _error("unknown value for format: near `y'", spec))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ax1:,=/ \t\n.-rwcdomvphyfile")), max_size=40))
def test_any_disk_spec_parses_or_raises_its_error(spec: str) -> None:
    try:
        parse_disk(spec)
    except DiskSpecError as error:
        assert error.problems


VIFS = [
    ("bridge=Br0,mac=00:16:3e:12:34:56", ParsedVif(bridge="Br0", mac="00:16:3e:12:34:56")),
    ("bridge=Br0,model=e1000", ParsedVif(bridge="Br0", model="e1000")),
    ("", ParsedVif()),
    (" mac=00:16:3E:0A:0b:C,, type=ioemu, ip=10.0.0.2 ,vifname=web0",
     ParsedVif(mac="00:16:3e:0a:0b:0c", type="ioemu", ip="10.0.0.2 ", vifname="web0")),
    ("script=vif-nat,backend=1,gatewaydev=eth1,mtu=9000,devid=3,untrusted",
     ParsedVif(script="vif-nat", backend="1", gatewaydev="eth1", mtu=9000, devid=3,
               trusted=False)),
    ("rate=10Mb/s", ParsedVif(rate=(62500, 50000))),
    ("rate=1MB/s@20ms", ParsedVif(rate=(20000, 20000))),
    ("vlan=10,forwarddev=eth0,colo_compare_out=x", ParsedVif()),
]


@pytest.mark.parametrize(("spec", "expected"), VIFS)
def test_vif_specs(spec: str, expected: ParsedVif) -> None:
    assert parse_vif(spec) == expected


VIF_ERRORS = [
    ("brige=Br0", "unrecognized argument `brige=Br0'"),
    ("bridge=Br0,trusty", "unrecognized argument `trusty'"),
    ("mac=00:16:3e:zz:00:01", "Invalid parameter `mac'."),
    ("mac=00:16:3e:12:34", "Invalid parameter `mac'."),
    ("mac=00:16:3e:12:34:100", "Invalid parameter `mac'."),
    ("type=pv", "Invalid parameter `type'."),
    ("mtu=big", 'xl: failed to convert "big" to number'),
    ("rate=fast", "config parsing error in vif: invalid rate in `fast'"),
    ("rate=@10ms", "config parsing error in vif: no rate specified in `@10ms'"),
    ("rate=0Mb/s", "config parsing error in vif: rate overflow in `0Mb/s'"),
    ("rate=1Mb/s@soon", "config parsing error in vif: invalid replenishment interval in "
                        "`soon'"),
]


@pytest.mark.parametrize(("spec", "message"), VIF_ERRORS)
def test_vif_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(VifSpecError) as caught:
        parse_vif(spec)
    assert caught.value.problems == (message,)


def test_rate_units() -> None:
    assert parse_rate("100KB/s") == (5000, 50000)
    assert parse_rate("1GB/s@1s") == (10**9, 10**6)
    assert parse_rate("8b/s@100us") == (0, 100)


def test_deprecated_vif_parameters_warn() -> None:
    notes: list[str] = []
    assert parse_vif("netdev=eth0,accel=x", notes) == ParsedVif(gatewaydev="eth0")
    assert notes == ["the netdev parameter is deprecated, please use gatewaydev instead",
                     "the accel parameter for vifs is currently not supported"]
