"""A domain as ``xl create`` understands its config: typed, frozen, with xl's and libxl's defaults.

:mod:`.xlconfig` makes these from a file; :meth:`DomainConfig.to_specs` turns
one into the toolstack's specs (:mod:`xenstore.xenbus.specs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from xenstore.lab.xlcfg import ConfigError
from xenstore.xenbus.specs import DiskSpec, DomainSpec, NicSpec

DomainType = Literal["pv", "pvh", "hvm"]
DEFAULT_MTU = 1500


@dataclass(frozen=True, slots=True)
class DiskConfig:
    """One ``disk`` entry (xl-disk-configuration(5)), with its device number."""

    spec: str
    line: int
    #: The image or device; "" or None for an empty cdrom.
    target: str | None
    #: raw, qcow, qcow2, vhd, qed, or empty (a cdrom without a target).
    format: str
    vdev: str
    #: ``vdev``'s number (xen-vbd-interface(7)), the device's id in the store.
    devid: int
    access: Literal["r", "w"]
    devtype: Literal["disk", "cdrom"]
    #: ``backendtype=`` (phy, tap, qdisk, standalone); None leaves libxl to choose.
    backendtype: str | None = None
    #: ``backend=``: the driver domain serving it; None for the toolstack's domain.
    backend: str | None = None
    script: str | None = None
    removable: bool = False
    discard: bool | None = None
    direct_io_safe: bool = False
    trusted: bool | None = None

    @property
    def cdrom(self) -> bool:
        """``devtype=cdrom`` (or ``<vdev>:cdrom``): read-only and removable."""
        return self.devtype == "cdrom"


@dataclass(frozen=True, slots=True)
class VifConfig:
    """One ``vif`` entry (xl-network-configuration(5)), defaults from xl.conf and libxl."""

    spec: str
    line: int
    #: Its place in the list, as xl numbers vifs, unless ``devid=`` says otherwise.
    devid: int
    bridge: str
    #: None: libxl makes one up (00:16:3e and random bits) when the vif is added.
    mac: str | None
    #: The emulated card of an HVM guest (``ioemu``), rtl8139 unless named.
    model: str
    script: str
    type: Literal["vif", "ioemu"]
    ip: str | None = None
    vifname: str | None = None
    #: (bytes per interval, interval in microseconds).
    rate: tuple[int, int] | None = None
    backend: str | None = None
    gatewaydev: str | None = None
    mtu: int = DEFAULT_MTU
    trusted: bool | None = None


@dataclass(frozen=True, slots=True)
class GuestSpecs:
    """A domain's specs, for :class:`~xenstore.xenbus.toolstack.Toolstack`."""

    domain: DomainSpec
    disks: tuple[DiskSpec, ...]
    nics: tuple[NicSpec, ...]


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """What ``xl create`` makes of a config file."""

    source: str
    name: str
    type: DomainType
    #: None: a fresh one is made when the domain is created.
    uuid: str | None
    #: In MiB, as the file gives them (see :attr:`memory_kib`, :attr:`maxmem_kib`).
    memory: int
    maxmem: int
    vcpus: int
    maxvcpus: int
    kernel: str | None = None
    ramdisk: str | None = None
    #: ``cmdline``, else ``root=<root> <extra>``, else ``extra``.
    cmdline: str | None = None
    bootloader: str | None = None
    disks: tuple[DiskConfig, ...] = ()
    vifs: tuple[VifConfig, ...] = ()
    #: HVM only: the devices to try, in order (c disk, d cdrom, n network).
    boot: str | None = None
    vnc: bool = False
    vnclisten: str | None = None
    vncdisplay: int | None = None
    sdl: bool = False
    #: HVM's emulated PC; None where the file leaves libxl its default.
    device_model_version: str | None = None
    vga: str | None = None
    #: In MiB.
    videoram: int | None = None
    bios: str | None = None
    acpi: bool | None = None
    acpi_s3: bool | None = None
    acpi_s4: bool | None = None
    acpi_laptop_slate: bool | None = None
    on_poweroff: str = "destroy"
    on_reboot: str = "restart"
    on_watchdog: str = "destroy"
    on_crash: str = "destroy"
    on_soft_reset: str = "soft-reset"
    #: Keys given that xl reads and this lab does not act on (cpus, pae, ...).
    unmodelled: tuple[str, ...] = ()
    #: xl's own warnings, and ours about keys xl does not know.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def memory_kib(self) -> int:
        """``memory`` in KiB, as libxl keeps it (``target_memkb``)."""
        return self.memory * 1024

    @property
    def maxmem_kib(self) -> int:
        """``maxmem`` in KiB (``max_memkb``)."""
        return self.maxmem * 1024

    def to_specs(self, domid: int) -> GuestSpecs:
        """The toolstack's specs for this domain as domain ``domid``.

        :class:`ConfigError` for what the specs refuse (a ``tap`` or
        ``standalone`` disk backend, a driver domain named rather than
        numbered, a boot order qemu would not take).
        """
        try:
            domain = DomainSpec(
                domid=domid, name=self.name, type=self.type, memory_kib=self.memory_kib,
                maxmem_kib=self.maxmem_kib, vcpus=self.vcpus, max_vcpus=self.maxvcpus,
                kernel=self.kernel or "", ramdisk=self.ramdisk, cmdline=self.cmdline)
            if self.uuid is not None:
                domain = replace(domain, uuid=self.uuid)
            if self.type == "hvm":
                domain = self._hvm_spec(domain)
        except ValueError as error:
            raise ConfigError(f"{self.source}: {error}", source=self.source) from None
        disks = tuple(self._disk_spec(disk) for disk in self.disks)
        nics = tuple(self._nic_spec(vif) for vif in self.vifs)
        return GuestSpecs(domain, disks, nics)

    def _hvm_spec(self, domain: DomainSpec) -> DomainSpec:
        """The device model's part, where the file says something."""
        given: dict[str, Any] = {
            "boot": self.boot, "vnc": self.vnc, "vnc_listen": self.vnclisten,
            "vnc_display": self.vncdisplay, "sdl": self.sdl,
            "device_model_version": self.device_model_version, "vga": self.vga,
            "videoram_kib": None if self.videoram is None else self.videoram * 1024,
            "bios": self.bios, "acpi": self.acpi, "acpi_s3": self.acpi_s3,
            "acpi_s4": self.acpi_s4, "acpi_laptop_slate": self.acpi_laptop_slate}
        return replace(domain, **{k: v for k, v in given.items() if v is not None})

    def _fail(self, line: int, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}:{line}: {key}: {message}", source=self.source,
                           line=line, key=key)

    def _backend_domid(self, backend: str | None, line: int, key: str) -> int:
        if backend is None or backend == "Domain-0":
            return 0
        if not backend.isdigit():
            raise self._fail(line, key, f"backend={backend}: pyxl knows no driver domain "
                                        "by that name; give its domid")
        return int(backend)

    def _disk_spec(self, disk: DiskConfig) -> DiskSpec:
        backend = disk.backendtype
        if backend not in (None, "phy", "qdisk"):
            raise self._fail(disk.line, "disk", f"{disk.vdev}: backendtype={backend}: pyxl "
                                                "has the phy and qdisk backends only")
        try:
            return DiskSpec(
                vdev=disk.vdev, target=disk.target or "", mode=disk.access,
                format=disk.format,  # type: ignore[arg-type]  # DiskSpec checks it
                backend=backend,  # type: ignore[arg-type]  # checked above
                backend_domid=self._backend_domid(disk.backend, disk.line, "disk"),
                script=disk.script, cdrom=disk.cdrom, removable=disk.removable,
                discard=disk.discard, trusted=disk.trusted is not False,
                direct_io_safe=disk.direct_io_safe)
        except ValueError as error:
            raise self._fail(disk.line, "disk", str(error)) from None

    def _nic_spec(self, vif: VifConfig) -> NicSpec:
        try:
            nic = NicSpec(
                devid=vif.devid, bridge=vif.bridge,
                backend_domid=self._backend_domid(vif.backend, vif.line, "vif"),
                script=vif.script, mtu=vif.mtu, ip=vif.ip, vifname=vif.vifname,
                rate=vif.rate, trusted=vif.trusted is not False, model=vif.model,
                type=vif.type)
            return nic if vif.mac is None else replace(nic, mac=vif.mac)
        except ValueError as error:
            raise self._fail(vif.line, "vif", str(error)) from None
