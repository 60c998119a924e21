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

_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")
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
    """

    domid: int
    name: str
    uuid: str = field(default_factory=lambda: str(uuid_module.uuid4()))
    #: ``pv`` or ``pvh``: the domain types that need no device model.
    type: Literal["pv", "pvh"] = "pv"
    #: The balloon target (``~/memory/target``), in KiB.
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

    def __post_init__(self) -> None:
        _check_domid(self.domid, "domid", guest=True)
        if not _NAME.match(self.name):
            raise ValueError(f"domain name {self.name!r}: empty, or holds '/' or NUL")
        object.__setattr__(self, "uuid", str(uuid_module.UUID(self.uuid)))
        if self.type not in ("pv", "pvh"):
            raise ValueError(f"domain type {self.type!r}: pv or pvh (no device model here)")
        if self.memory_kib <= 0 or self.maxmem < self.memory_kib:
            raise ValueError("memory: positive, and maxmem at least memory")
        if not 1 <= self.vcpus <= self.vcpu_slots:
            raise ValueError("vcpus: at least 1, and max_vcpus at least vcpus")

    @property
    def maxmem(self) -> int:
        """``~/memory/static-max`` in KiB."""
        return self.maxmem_kib if self.maxmem_kib is not None else self.memory_kib

    @property
    def vcpu_slots(self) -> int:
        """How many ``~/cpu/<n>`` nodes there are (libxl's max_vcpus)."""
        return self.max_vcpus if self.max_vcpus is not None else self.vcpus


@dataclass(frozen=True, slots=True)
class DiskSpec:
    """A virtual block device served by the ``phy`` backend (backend type ``vbd``).

    As xl's disk parser does, a cdrom is read-only and removable, and an
    empty one (no target) has the format ``empty``. libxl's phy backend takes
    only ``raw`` images (disk_try_backend in libxl_device.c); other formats
    would go to qemu's ``qdisk``, which has no place on a laptop.
    """

    vdev: str
    #: The image or block device: the backend's ``params``.
    target: str
    mode: Literal["r", "w"] = "w"
    format: Literal["raw", "empty"] = "raw"
    backend_domid: int = 0
    script: str = "block"
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
        if self.format not in ("raw", "empty") or (self.format == "empty") != (not self.target):
            raise ValueError(f"disk {self.vdev}: the phy backend takes a raw image (or an "
                             f"empty cdrom), not format {self.format!r}")

    @property
    def devid(self) -> int:
        """The device number (``virtual-device``) of :attr:`vdev`."""
        return vdev_to_devid(self.vdev)

    @property
    def discard_enable(self) -> bool:
        return self.discard if self.discard is not None else self.mode == "w"


@dataclass(frozen=True, slots=True)
class NicSpec:
    """A virtual network interface (``vif``), bridged by the ``vif-bridge`` script."""

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

    def __post_init__(self) -> None:
        if not _MAC.match(self.mac):
            raise ValueError(f"not a MAC address: {self.mac!r}")
        object.__setattr__(self, "mac", self.mac.lower())  # libxl prints it %02hhx
        _check_domid(self.backend_domid, "backend domid", guest=False)
        if self.devid is not None and self.devid < 0:
            raise ValueError(f"nic devid {self.devid}: not a device number")


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
