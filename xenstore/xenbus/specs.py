"""What a toolstack is asked to create: a domain and its disks, nics and consoles.

These are the parts of ``xl.cfg`` (and of libxl's ``libxl_domain_config``)
that show in the store, with libxl's defaults filled in when a spec is made,
so that a spec is complete and :mod:`.layout` turns it into nodes without
guessing. Values are validated here, once; the layout trusts them.
"""

from __future__ import annotations

import re
import secrets
import uuid as uuid_module
from dataclasses import dataclass, field
from typing import Literal

from xenstore.xenbus.vdev import vdev_to_devid

#: Domain ids 1 .. 0x7FEF are guests (libxl_domid_valid_guest); 0x7FF0 up are
#: Xen's reserved ids (DOMID_FIRST_RESERVED), and 0 is the toolstack's own.
DOMID_FIRST_RESERVED = 0x7FF0
#: Where libxl finds relative hotplug script names (``XEN_SCRIPT_DIR``).
SCRIPT_DIR = "/etc/xen/scripts"
#: Ethernet's MTU, which libxl leaves unwritten in the backend (libxl_nic.c).
DEFAULT_MTU = 1500
#: What an HVM guest's memory/target leaves for the device model when maxmem is
#: above memory (LIBXL_MAXMEM_CONSTANT, in KiB; libxl__get_targetmem_fudge).
MAXMEM_FUDGE_KIB = 1024
#: libxl's default video RAM in KiB, by device model and card
#: (libxl__domain_build_info_setdefault): (qemu-xen, qemu-xen-traditional).
VIDEORAM_KIB = {"cirrus": (8 << 10, 4 << 10), "stdvga": (16 << 10, 8 << 10),
                "none": (0, 0), "qxl": (128 << 10, 0)}
#: The disk formats libxl knows (libxl_disk_format), and how its qdisk backend
#: names them in ``params`` (libxl__device_disk_string_of_format).
QDISK_FORMATS = {"raw": "aio", "empty": "aio", "qcow": "qcow", "qcow2": "qcow2",
                 "vhd": "vhd", "qed": "qed"}

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
_BOOT = re.compile(r"[acdn]+\Z")
_NAME = re.compile(r"[^\x00/]+\Z")


def _check_domid(domid: int, what: str, *, guest: bool) -> None:
    low = 1 if guest else 0
    if not low <= domid < DOMID_FIRST_RESERVED:
        raise ValueError(f"{what} {domid}: not a {'guest ' if guest else ''}domain id")


def random_mac() -> str:
    """A MAC address as libxl makes one: Xen's OUI 00:16:3e, then 23 random bits."""
    r = secrets.token_bytes(3)
    return f"00:16:3e:{r[0] & 0x7F:02x}:{r[1]:02x}:{r[2]:02x}"


def script_path(script: str) -> str:
    """A hotplug script's path as libxl writes it: relative names under :data:`SCRIPT_DIR`."""
    return script if script.startswith("/") else f"{SCRIPT_DIR}/{script}"


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A guest domain, as ``xl create`` would be given it.

    ``store_port`` and ``store_gfn`` stand for the xenstore ring's event
    channel and page, which Xen's domain builder would have set up: they go
    to INTRODUCE and to ``~/store``. Without a hypervisor nothing maps them;
    any numbers do.

    An ``hvm`` guest has a device model (qemu) that emulates a PC: the fields
    after ``store_gfn`` are its, with libxl's defaults. Those that show in the
    store are the video RAM, the firmware, the ACPI flags, the device model's
    version and VNC's address; ``boot`` and ``sdl`` only go to qemu's command
    line, and are kept so that a spec says all of an xl.cfg's HVM part.
    """

    domid: int
    name: str
    uuid: str = field(default_factory=lambda: str(uuid_module.uuid4()))
    #: ``pv``, ``pvh`` (no device model) or ``hvm`` (a PC emulated by qemu).
    type: Literal["pv", "pvh", "hvm"] = "pv"
    #: The balloon target (``~/memory/target`` but for HVM's video RAM), in KiB.
    memory_kib: int = 512 * 1024
    #: ``~/memory/static-max``, in KiB: ``memory_kib`` unless given (xl's maxmem).
    maxmem_kib: int | None = None
    #: vCPUs online at boot; ``max_vcpus`` (default: as many) get ``~/cpu/<n>``.
    vcpus: int = 1
    max_vcpus: int | None = None
    #: PV only, recorded under ``/vm/<uuid>/image``.
    kernel: str = ""
    ramdisk: str | None = None
    cmdline: str | None = None
    #: A driver domain gets writable ``~/libxl`` and ``~/device-model`` (libxl_create.c).
    driver_domain: bool = False
    store_port: int = 1
    store_gfn: int = 0xFEFFC
    #: xl's spelling; libxl records it for every type (``/libxl/<D>/dm-version``).
    device_model_version: Literal["qemu-xen", "qemu-xen-traditional"] = "qemu-xen"
    #: HVM: the emulated graphics card (xl's ``vga``).
    vga: Literal["cirrus", "stdvga", "none", "qxl"] = "cirrus"
    #: HVM: ``~/memory/videoram`` in KiB; None: libxl's default for the card (0 for PV/PVH).
    videoram_kib: int | None = None
    #: HVM: ``~/hvmloader/bios``; None: seabios for qemu-xen, rombios for traditional.
    bios: Literal["seabios", "ovmf", "rombios"] | None = None
    #: HVM: ``~/platform/acpi``, ``acpi_s3``, ``acpi_s4``, ``acpi_laptop_slate``.
    acpi: bool = True
    acpi_s3: bool = True
    acpi_s4: bool = True
    acpi_laptop_slate: bool = False
    #: HVM: ``/vm/<uuid>/rtc/timeoffset`` (libxl's u.hvm.timeoffset; xl leaves it empty).
    timeoffset: str = ""
    #: HVM: qemu's boot order (xl's ``boot``: a = floppy, c = disk, d = cdrom, n = net).
    boot: str = "cda"
    #: HVM: a VNC server; qemu reports where it listens, libxl writes it to ``~/console``.
    vnc: bool = True
    vnc_listen: str = "127.0.0.1"
    #: The display qemu takes (port 5900 + display; with vncunused, the first free one).
    vnc_display: int = 0
    sdl: bool = False
    #: HVM: a PV keyboard served by qemu (``device/vkbd/0``), libxl's default.
    vkb_device: bool = True

    def __post_init__(self) -> None:
        _check_domid(self.domid, "domid", guest=True)
        if not _NAME.match(self.name):
            raise ValueError(f"domain name {self.name!r}: empty, or holds '/' or NUL")
        object.__setattr__(self, "uuid", str(uuid_module.UUID(self.uuid)))
        if self.type not in ("pv", "pvh", "hvm"):
            raise ValueError(f"domain type {self.type!r}: pv, pvh or hvm")
        if self.memory_kib <= 0 or self.maxmem < self.memory_kib:
            raise ValueError("memory: positive, and maxmem at least memory")
        if not 1 <= self.vcpus <= self.vcpu_slots:
            raise ValueError("vcpus: at least 1, and max_vcpus at least vcpus")
        if self.type == "hvm":
            self._check_hvm()
        elif self.videoram_kib:
            raise ValueError("videoram: an HVM guest's (PV and PVH have none)")

    def _check_hvm(self) -> None:
        """libxl__domain_build_info_setdefault's refusals (and xl's, for boot)."""
        traditional = self.device_model_version == "qemu-xen-traditional"
        if self.device_model_version not in ("qemu-xen", "qemu-xen-traditional"):
            raise ValueError(f"device model {self.device_model_version!r}")
        if self.vga not in VIDEORAM_KIB or (traditional and self.vga == "qxl"):
            raise ValueError(f"vga {self.vga!r}: cirrus, stdvga, none or qxl (qemu-xen)")
        default = VIDEORAM_KIB[self.vga][traditional]
        if self.videoram_kib is not None and self.videoram_kib < default and not (
                traditional and self.vga == "cirrus"):  # libxl only warns there
            raise ValueError(f"videoram: at least {default >> 10} MiB for {self.vga}")
        if (self.firmware == "rombios") != traditional:
            raise ValueError("bios: rombios goes with qemu-xen-traditional only")
        if self.target_kib <= 0:
            raise ValueError("memory: more than the video RAM")
        if not _BOOT.match(self.boot) or self.vnc_display < 0:
            raise ValueError("boot: letters of 'acdn'; vnc_display: 0 or more")

    @property
    def maxmem(self) -> int:
        """``~/memory/static-max`` in KiB."""
        return self.maxmem_kib if self.maxmem_kib is not None else self.memory_kib

    @property
    def vcpu_slots(self) -> int:
        """How many ``~/cpu/<n>`` nodes there are (libxl's max_vcpus)."""
        return self.max_vcpus if self.max_vcpus is not None else self.vcpus

    @property
    def videoram(self) -> int:
        """``~/memory/videoram`` in KiB: 0 but for HVM."""
        if self.type != "hvm":
            return 0
        if self.videoram_kib is not None:
            return self.videoram_kib
        return VIDEORAM_KIB[self.vga][self.device_model_version == "qemu-xen-traditional"]

    @property
    def target_kib(self) -> int:
        """``~/memory/target``: memory less what the device model keeps (video RAM, and
        1 MiB when maxmem is above memory), as libxl__get_targetmem_fudge."""
        fudge = MAXMEM_FUDGE_KIB if self.type == "hvm" and self.maxmem > self.memory_kib else 0
        return self.memory_kib - self.videoram - fudge

    @property
    def firmware(self) -> str:
        """HVM's ``~/hvmloader/bios``."""
        if self.bios is not None:
            return self.bios
        return "rombios" if self.device_model_version == "qemu-xen-traditional" else "seabios"

    @property
    def dm_version(self) -> str:
        """The device model's version as libxl writes it (``qemu_xen``...)."""
        return self.device_model_version.replace("-", "_")

    @property
    def vnc_port(self) -> int:
        """The TCP port of VNC display :attr:`vnc_display` (what qemu reports)."""
        return 5900 + self.vnc_display


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """A virtual block device: frontend type ``vbd``, served by a backend libxl picks.

    As xl's disk parser does, a cdrom is read-only and removable, and an
    empty one (no target) has the format ``empty``. libxl tries its backends
    in order (libxl__device_disk_set_backend, disk_try_backend in
    libxl_device.c): ``phy`` (the kernel's blkback, backend type ``vbd``, with
    a hotplug script) takes raw images only; anything else goes to qemu's
    ``qdisk`` (backend type ``qdisk``, no script), and so does every cdrom of
    an HVM guest (libxl__device_disk_setdefault). :meth:`backend_for` says
    which, once the domain's type is known.
    """

    vdev: str
    #: The image or block device: the backend's ``params`` (for qdisk, after ``<format>:``).
    target: str
    mode: Literal["r", "w"] = "w"
    format: Literal["raw", "qcow", "qcow2", "vhd", "qed", "empty"] = "raw"
    #: None: libxl's choice; ``phy`` or ``qdisk`` insist (xl's backendtype=).
    backend: Literal["phy", "qdisk"] | None = None
    backend_domid: int = 0
    #: The phy backend's hotplug script; None: ``block``. qdisk takes none.
    script: str | None = None
    cdrom: bool = False
    removable: bool = False
    #: ``discard-enable``: libxl's default is on for writable disks.
    discard: bool | None = None
    trusted: bool = True
    direct_io_safe: bool = False

    def __post_init__(self) -> None:
        vdev_to_devid(self.vdev)  # ValueError for a name outside Xen's schemes
        _check_domid(self.backend_domid, "backend domid", guest=False)
        if self.mode not in ("r", "w"):
            raise ValueError(f"disk mode {self.mode!r}: r or w")
        if self.cdrom:
            object.__setattr__(self, "mode", "r")
            object.__setattr__(self, "removable", True)
            if not self.target:
                object.__setattr__(self, "format", "empty")
        if self.format not in QDISK_FORMATS or (self.format == "empty") != (not self.target):
            raise ValueError(f"disk {self.vdev}: format {self.format!r} with target "
                             f"{self.target!r} (empty is an empty cdrom's)")
        if self.backend not in (None, "phy", "qdisk"):
            raise ValueError(f"disk {self.vdev}: backend {self.backend!r}: phy or qdisk")
        if self.backend == "phy" and self.format != "raw":
            raise ValueError(f"disk {self.vdev}: the phy backend takes a raw image, "
                             f"not format {self.format!r}")
        if self.script is not None and (self.format != "raw" or self.backend == "qdisk"):
            raise ValueError(f"disk {self.vdev}: a script needs the phy backend (a raw image)")

    @property
    def devid(self) -> int:
        """The device number (``virtual-device``) of :attr:`vdev`."""
        return vdev_to_devid(self.vdev)

    @property
    def discard_enable(self) -> bool:
        return self.discard if self.discard is not None else self.mode == "w"

    def backend_for(self, domain_type: str) -> Literal["phy", "qdisk"]:
        """The backend libxl gives this disk in a domain of ``domain_type``."""
        if self.cdrom and domain_type == "hvm":
            if self.backend == "phy":
                raise ValueError(f"disk {self.vdev}: an HVM guest's cdrom needs qdisk")
            return "qdisk"
        if self.backend is not None:
            return self.backend
        return "phy" if self.format == "raw" else "qdisk"

    def params(self, backend: str) -> str:
        """The backend's ``params``: the target, after its format for qdisk."""
        if backend == "qdisk":
            return f"{QDISK_FORMATS[self.format]}:{self.target}"
        return self.target


@dataclass(frozen=True, slots=True)
class NicSpec:
    """A virtual network interface (``vif``), bridged by the ``vif-bridge`` script.

    An HVM guest's nic made with the domain is also emulated by qemu as a
    ``model`` card (libxl's nictype ``vif_ioemu``): the guest's firmware and
    driverless kernels see that one, PV drivers the ``vif``. The model goes
    to qemu's command line only; the backend's ``type`` says which kind.
    """

    #: None: the next free number, as libxl picks it when the nic is added.
    devid: int | None = None
    mac: str = field(default_factory=random_mac)
    bridge: str = "xenbr0"
    backend_domid: int = 0
    script: str = "vif-bridge"
    mtu: int = DEFAULT_MTU
    ip: str | None = None
    vifname: str | None = None
    #: (bytes per interval, interval in microseconds), written as ``rate``.
    rate: tuple[int, int] | None = None
    trusted: bool = True
    #: HVM: the card qemu emulates (xl's ``model``; libxl's default rtl8139).
    model: str = "rtl8139"
    #: xl's ``type``: None is libxl's choice, ``ioemu`` for an HVM guest's nics
    #: made with it and ``vif`` otherwise; ``ioemu`` is refused for PV and PVH.
    type: Literal["vif", "ioemu"] | None = None

    def __post_init__(self) -> None:
        if self.type not in (None, "vif", "ioemu"):
            raise ValueError(f"nic type {self.type!r}: vif or ioemu")
        if not _MAC.match(self.mac):
            raise ValueError(f"not a MAC address: {self.mac!r}")
        object.__setattr__(self, "mac", self.mac.lower())  # libxl prints it %02hhx
        _check_domid(self.backend_domid, "backend domid", guest=False)
        if self.devid is not None and self.devid < 0:
            raise ValueError(f"nic devid {self.devid}: not a device number")

    def nictype(self, domain_type: str, *, hotplug: bool = False) -> str:
        """The backend's ``type`` as libxl__device_nic_setdefault picks it: ``vif_ioemu``
        for an HVM guest's nic made with the domain, else ``vif``."""
        if domain_type != "hvm":
            if self.type == "ioemu":
                raise ValueError("an emulated nic (type ioemu) needs an HVM guest")
            return "vif"
        if self.type is None:
            return "vif" if hotplug else "vif_ioemu"
        return "vif_ioemu" if self.type == "ioemu" else "vif"


@dataclass(frozen=True, slots=True)
class ConsoleSpec:
    """A PV console: number 0 is the domain's primary console, at ``~/console``.

    The primary console's ring is set up by the domain builder, so the
    toolstack writes its ``ring-ref`` and ``port`` (here: :attr:`ring_ref`,
    :attr:`port`, any numbers) and it has no XenBus handshake; a secondary
    console's frontend publishes its own ring and goes through the handshake
    like any device.
    """

    devid: int = 0
    backend_domid: int = 0
    #: Where the backend sends the output (``pty``, ``file:PATH``...).
    output: str = "pty"
    #: A secondary console's name (libxl refuses one on the primary console).
    name: str | None = None
    #: The backend expected: ``xenconsoled`` serves only its own type; libxl
    #: gives the primary console to xenconsoled and channels to ``ioemu``.
    type: str | None = None
    #: The primary console's page and event channel (ignored for the others).
    ring_ref: int = 0xFEFFD
    port: int = 2

    def __post_init__(self) -> None:
        _check_domid(self.backend_domid, "backend domid", guest=False)
        if self.devid < 0 or (self.devid == 0 and self.name is not None):
            raise ValueError("console: a devid of 0 or more; the primary one takes no name")

    @property
    def backend_type(self) -> str:
        if self.type is not None:
            return self.type
        return "xenconsoled" if self.devid == 0 else "ioemu"
