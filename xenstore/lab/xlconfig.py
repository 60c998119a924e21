"""A domain's ``xl.cfg`` read into a :class:`DomainConfig`, as ``xl create`` reads it.

Keys are read in the order of ``parse_config_data`` (Xen's ``xl_parse.c``),
with xl's defaults and messages; then come the checks libxl makes when it
builds the domain (two disks on one device, an image that is not there, an
emulated nic on a PV guest). Every message names the file, the line and the
key, and the first problem raises :class:`ConfigError` (exit code 1)::

    config = load("/etc/xen/debian.cfg", ["memory=2048"], conf=read_global())
    specs = config.to_specs(domid=7)

Where this differs from xl, on purpose:

* a value of the wrong type (a list for ``memory``, ``memory = "lots"``) is an
  error; xl warns and goes on as if the key were not there;
* a malformed vif parameter is an error; xl prints it and goes on;
* a list inside ``disk`` or ``vif`` is an error; xl silently stops reading there;
* an unknown key is a warning (in :attr:`DomainConfig.warnings`); xl says nothing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from xenstore.lab.xlcfg import (
    ConfigError,
    ParsedConfig,
    Setting,
    parse_file,
    parse_text,
    with_overrides,
)
from xenstore.lab.xlconf import GlobalConfig
from xenstore.lab.xldisk import DiskSpecError, ParsedDisk, parse_disk
from xenstore.lab.xldomain import (
    DEFAULT_MTU,
    DiskConfig,
    DomainConfig,
    DomainType,
    GuestSpecs,
    VifConfig,
)
from xenstore.lab.xlkeys import KNOWN_KEYS, MODELLED_KEYS
from xenstore.lab.xlvif import ParsedVif, VifSpecError, parse_vif
from xenstore.xenbus.vdev import vdev_to_devid

__all__ = ["ACTIONS", "ConfigError", "DiskConfig", "DomainConfig", "GuestSpecs", "VifConfig",
           "interpret", "load", "load_text"]

#: What xl may do when a guest powers off, reboots, crashes (``on_poweroff``...).
ACTIONS = ("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
           "coredump-restart", "soft-reset")
#: libxl's memory when the file gives neither ``memory`` nor ``maxmem``, in MiB.
DEFAULT_MEMORY = 32
#: Where ``firmware="pvgrub64"`` is found (``XENFIRMWAREDIR``).
FIRMWARE_DIR = "/usr/lib/xen/boot"
#: libxl's boot order and VNC address for an HVM guest, and its emulated nic.
DEFAULT_BOOT = "cda"
DEFAULT_VNCLISTEN = "127.0.0.1"
DEFAULT_MODEL = "rtl8139"
_T = TypeVar("_T")
_UUID = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\Z")
_BIOSES = ("rombios", "seabios", "ovmf")
_SHUTDOWN_DEFAULTS = (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                      ("on_watchdog", "destroy"), ("on_crash", "destroy"),
                      ("on_soft_reset", "soft-reset"))


class _Reader:
    def __init__(self, config: ParsedConfig, conf: GlobalConfig, check_files: bool) -> None:
        self.config = config
        self.conf = conf
        self.check_files = check_files
        self.source = config.source
        self.warnings: list[str] = []

    def fail(self, key: str, message: str, line: int | None = None) -> ConfigError:
        """An error at ``line`` (else the key's line, else the file's name only)."""
        setting = self.config.lookup(key)
        line = line if line is not None else setting.line if setting is not None else None
        where = f"{self.source}:{line}" if line is not None else self.source
        return ConfigError(f"{where}: {key}: {message}", source=self.source, line=line,
                           key=key)

    def warn(self, line: int, message: str) -> None:
        """A warning for :attr:`DomainConfig.warnings`."""
        self.warnings.append(f"{self.source}:{line}: {message}")

    def read(self) -> DomainConfig:
        """Every key in ``parse_config_data``'s order, then libxl's checks."""
        cfg = self.config
        self._keys()
        dtype = self._type()
        name = cfg.get_string("name")
        if name is None:
            raise self.fail("name", "Domain name must be specified.")
        uuid = self._uuid()
        memory, maxmem = self._memory()
        vcpus, maxvcpus = self._vcpus()
        actions: dict[str, Any] = {key: self._action(key, default)
                                   for key, default in _SHUTDOWN_DEFAULTS}
        videoram = cfg.get_long("videoram")
        kernel, ramdisk = cfg.get_string("kernel"), cfg.get_string("ramdisk")
        cmdline = self._cmdline()
        acpi = cfg.get_bool("acpi")
        bootloader = cfg.get_string("bootloader")
        platform: dict[str, Any] = {}
        if dtype == "hvm":
            platform = self._hvm_platform()
        else:
            kernel = self._pv_firmware(kernel)
            if bootloader is None and kernel is None:
                raise self.fail("kernel", "Neither kernel nor bootloader specified")
        disks = self._disks()
        vifs = self._vifs(dtype)
        dm_version = cfg.get_string("device_model_version")
        if dm_version is not None and dm_version != "qemu-xen":
            raise self.fail("device_model_version",
                            f'Unknown device_model_version "{dm_version}" specified')
        vnc, vnclisten, vncdisplay, sdl = self._display(dtype)
        vga = self._vga() if dtype == "hvm" else None
        boot = _given(cfg.get_string("boot"), DEFAULT_BOOT) if dtype == "hvm" else None
        self._libxl_checks(dtype, disks, vifs)
        return DomainConfig(
            source=self.source, name=name, type=dtype, uuid=uuid, memory=memory,
            maxmem=maxmem, vcpus=vcpus, maxvcpus=maxvcpus, kernel=kernel, ramdisk=ramdisk,
            cmdline=cmdline, bootloader=bootloader, disks=disks, vifs=vifs, boot=boot,
            vnc=vnc, vnclisten=vnclisten, vncdisplay=vncdisplay, sdl=sdl,
            device_model_version=dm_version, vga=vga, videoram=videoram, acpi=acpi,
            unmodelled=self._unmodelled(), warnings=tuple(self.warnings),
            **actions, **platform)

    def _keys(self) -> None:
        seen: set[str] = set()
        for setting in self.config.settings:
            if setting.key not in KNOWN_KEYS and setting.key not in seen:
                self.warn(setting.line, f"warning: unknown key `{setting.key}' "
                                        "(xl ignores it)")
            seen.add(setting.key)

    def _unmodelled(self) -> tuple[str, ...]:
        keys = dict.fromkeys(s.key for s in self.config.settings
                             if s.key in KNOWN_KEYS and s.key not in MODELLED_KEYS)
        return tuple(keys)

    def _type(self) -> DomainType:
        """``type`` then the deprecated ``builder``: any prefix of a name will do."""
        dtype: DomainType | None = None
        found = self.config.get_setting_string("type")
        if found is not None:
            names: tuple[DomainType, ...] = ("hvm", "pv", "pvh")
            dtype = next((n for n in names if n.startswith(found[0])), None)
            if dtype is None:
                raise self.fail("type", f"Invalid domain type {found[0]}.")
        found = self.config.get_setting_string("builder")
        if found is not None:
            builders: dict[str, DomainType] = {"hvm": "hvm", "generic": "pv"}
            builder = next((t for b, t in builders.items() if b.startswith(found[0])), None)
            if builder is None:
                raise self.fail("builder", f"Invalid domain type {found[0]}.")
            if dtype is not None and dtype != builder:
                raise self.fail("builder",
                                'Contradicting "builder" and "type" options specified.')
            dtype = builder
        return dtype or "pv"  # x86's default

    def _uuid(self) -> str | None:
        uuid = self.config.get_string("uuid")
        if uuid is not None and not _UUID.match(uuid):
            raise self.fail("uuid", f"Failed to parse UUID: {uuid}")
        return uuid.lower() if uuid is not None else None

    def _memory(self) -> tuple[int, int]:
        memory = self.config.get_long("memory")
        maxmem = self.config.get_long("maxmem")
        # libxl: without either, 32 MiB; with one, the other follows it
        target = memory if memory is not None else maxmem if maxmem is not None else 32
        ceiling = maxmem if maxmem is not None else target
        if target <= 0:
            raise self.fail("memory" if memory is not None else "maxmem",
                            f"{target} MiB: a guest needs some memory")
        if ceiling < target:
            raise self.fail("maxmem", f"maxmem ({ceiling} MiB) is less than memory "
                                      f"({target} MiB); xl.cfg(5) wants it equal or greater")
        return target, ceiling

    def _vcpus(self) -> tuple[int, int]:
        vcpus = max(self.config.get_long("vcpus") or 0, 1)  # xl: fewer than 1 is 1
        maxvcpus = self.config.get_long("maxvcpus") or vcpus
        if maxvcpus < vcpus:
            raise self.fail("maxvcpus", "xl: maxvcpus < vcpus")
        return vcpus, maxvcpus

    def _action(self, key: str, default: str) -> str:
        action = self.config.get_string(key)
        if action is None:
            return default
        if action not in ACTIONS:
            raise self.fail(key, f'Unknown {key} action "{action}" specified')
        return action

    def _cmdline(self) -> str | None:
        """``cmdline``, or ``root=`` and ``extra`` put together, as xl does."""
        cmdline = self.config.get_setting_string("cmdline")
        root = self.config.get_string("root")
        extra = self.config.get_string("extra")
        if cmdline is not None:
            if root is not None or extra is not None:
                self.warn(cmdline[1].line, "Warning: ignoring root= and extra= in favour "
                                           "of cmdline=")
            return cmdline[0]
        if root is not None:
            return f"root={root} {extra}" if extra is not None else f"root={root}"
        return extra

    def _pv_firmware(self, kernel: str | None) -> str | None:
        """``firmware="pvgrub64"`` (or a prefix of it) as the kernel of a PV guest."""
        firmware = self.config.get_string("firmware")
        if firmware is None:
            return kernel
        if kernel is not None:
            raise self.fail("firmware", "ERROR: both kernel and firmware specified")
        if not ("pvgrub32".startswith(firmware) or "pvgrub64".startswith(firmware)):
            raise self.fail("firmware",
                            "ERROR: only pvgrub{32|64} supported as firmware options")
        return f"{FIRMWARE_DIR}/{firmware}.bin"

    def _hvm_platform(self) -> dict[str, Any]:
        """The firmware and ACPI of an HVM guest (``bios``, ``acpi_s3``..., ``firmware``)."""
        cfg = self.config
        bios = cfg.get_string("bios")
        if bios is not None and bios.lower() not in _BIOSES:
            raise self.fail("bios", f'ERROR: invalid value "{bios}" for "bios"')
        found = {key: cfg.get_bool(key) for key in ("acpi_s3", "acpi_s4", "acpi_laptop_slate")}
        firmware = cfg.get_string("firmware")
        if firmware is not None and firmware.lower() in _BIOSES:
            bios = firmware
        elif firmware is not None and "uefi".startswith(firmware):
            bios = "ovmf"  # "bios" (or a prefix) leaves libxl's default; others are paths
        return {"bios": bios.lower() if bios is not None else None, **found}

    def _vga(self) -> str | None:
        vga = self.config.get_string("vga")
        if vga is not None:
            if vga not in ("stdvga", "cirrus", "none", "qxl"):
                raise self.fail("vga", f'Unknown vga "{vga}" specified')
            return vga
        stdvga = self.config.get_long("stdvga")
        return None if stdvga is None else "stdvga" if stdvga else "cirrus"

    def _items(self, key: str) -> list[tuple[str, int]]:
        """A list of spec strings with each one's line."""
        found = self.config.get_list(key)
        if found is None:
            return []
        items, setting = found
        result = []
        for index, item in enumerate(items):
            line = _item_line(setting, index)
            if not isinstance(item, str):
                raise self.fail(key, f"item {index + 1} is a list, not a {key} spec", line)
            result.append((item, line))
        return result

    def _disks(self) -> tuple[DiskConfig, ...]:
        disks = []
        for spec, line in self._items("disk"):
            try:
                parsed = parse_disk(spec)
            except DiskSpecError as error:
                raise ConfigError("\n".join(f"{self.source}:{line}: disk: {problem}"
                                            for problem in error.problems),
                                  source=self.source, line=line, key="disk") from None
            disks.append(self._disk(spec, line, parsed))
        return tuple(disks)

    def _disk(self, spec: str, line: int, parsed: ParsedDisk) -> DiskConfig:
        try:
            devid = vdev_to_devid(parsed.vdev)
        except ValueError:
            raise self.fail("disk", "Invalid or unsupported virtual disk identifier "
                                    f"{parsed.vdev}", line) from None
        return DiskConfig(
            spec=spec, line=line, target=parsed.target, format=parsed.format,
            vdev=parsed.vdev, devid=devid, access="w" if parsed.readwrite else "r",
            devtype="cdrom" if parsed.cdrom else "disk", backendtype=parsed.backendtype,
            backend=parsed.backend, script=parsed.script, removable=parsed.removable,
            discard=parsed.discard, direct_io_safe=parsed.direct_io_safe,
            trusted=parsed.trusted)

    def _vifs(self, dtype: DomainType) -> tuple[VifConfig, ...]:
        vifs = []
        for index, (spec, line) in enumerate(self._items("vif")):
            notes: list[str] = []
            try:
                parsed = parse_vif(spec, notes)
            except VifSpecError as error:
                raise ConfigError("\n".join(f"{self.source}:{line}: vif: {problem}"
                                            for problem in error.problems),
                                  source=self.source, line=line, key="vif") from None
            for note in notes:
                self.warn(line, note)
            vifs.append(self._vif(spec, line, index, parsed, dtype))
        return tuple(vifs)

    def _vif(self, spec: str, line: int, index: int, vif: ParsedVif,
             dtype: DomainType) -> VifConfig:
        conf = self.conf
        kind: Literal["vif", "ioemu"] = vif.type or ("ioemu" if dtype == "hvm" else "vif")
        # xl.conf's defaults first, the vif's own values over them, libxl's for the rest;
        # a value given empty stays empty, as xl's replace_string keeps it
        return VifConfig(
            spec=spec, line=line, devid=_given(vif.devid, index),
            bridge=_given(vif.bridge, conf.bridge), mac=vif.mac,
            model=_given(vif.model, DEFAULT_MODEL),
            script=_given(vif.script, conf.vif_script_default), type=kind, ip=vif.ip,
            vifname=vif.vifname, rate=vif.rate, backend=_given(vif.backend, conf.vif_backend),
            gatewaydev=_given(vif.gatewaydev, conf.vif_gatewaydev),
            mtu=vif.mtu or DEFAULT_MTU, trusted=vif.trusted)

    def _display(self, dtype: DomainType) -> tuple[bool, str | None, int | None, bool]:
        """VNC and SDL: an HVM guest's display, or a PV guest's framebuffer if ``vnc``."""
        cfg = self.config
        if dtype == "pv" and not cfg.get_long("vnc"):
            return False, None, None, False  # xl reads no further for a PV guest
        vnc = cfg.get_bool("vnc")
        vnclisten = cfg.get_string("vnclisten")
        vncdisplay = cfg.get_long("vncdisplay")
        sdl = bool(cfg.get_bool("sdl"))
        enabled = vnc is not False if dtype == "hvm" else bool(vnc)  # libxl: on for HVM
        if enabled:
            vnclisten = _given(vnclisten, DEFAULT_VNCLISTEN)
        return enabled, vnclisten, vncdisplay, sdl

    def _libxl_checks(self, dtype: DomainType, disks: tuple[DiskConfig, ...],
                      vifs: tuple[VifConfig, ...]) -> None:
        """What libxl refuses while it builds the domain, in its order."""
        for disk in disks:
            self._disk_backend(dtype, disk)
        for vif in vifs:
            if dtype != "hvm" and vif.type == "ioemu":
                raise self.fail("vif", "trying to create PV or PVH guest with an emulated "
                                       "interface", vif.line)
        for key, devices in (("disk", disks), ("vif", vifs)):
            taken: dict[int, DiskConfig | VifConfig] = {}
            for device in devices:
                other = taken.setdefault(device.devid, device)
                if other is not device:
                    raise self.fail(key, f"device already exists in xenstore: device "
                                         f"{device.devid} of `{device.spec}' is taken by "
                                         f"`{other.spec}' (line {other.line})", device.line)

    def _disk_backend(self, dtype: DomainType, disk: DiskConfig) -> None:
        """``libxl__device_disk_setdefault`` and ``_set_backend``."""
        if disk.format == "empty":
            if not disk.cdrom:
                raise self.fail("disk", f"Disk vdev={disk.vdev} is empty but not cdrom",
                                disk.line)
            return
        backendtype = disk.backendtype
        if dtype == "hvm" and disk.cdrom:
            backendtype = backendtype or "qdisk"  # qemu serves an HVM guest's cdroms
            if backendtype not in ("qdisk", "phy"):
                raise self.fail("disk", "Backend for CD devices on HVM guests must be Qdisk "
                                        "or Phy", disk.line)
        # libxl looks at the target only where it may be dom0's own device or image
        local = disk.backend in (None, "0", "Domain-0") and disk.script is None
        if (self.check_files and local and backendtype in (None, "phy", "standalone")
                and disk.target is not None):
            try:
                os.stat(disk.target)
            except OSError as error:
                raise self.fail("disk", f"Disk vdev={disk.vdev} failed to stat: "
                                        f"{disk.target}: {error.strerror}",
                                disk.line) from None


def _item_line(setting: Setting, index: int) -> int:
    return setting.item_lines[index] if index < len(setting.item_lines) else setting.line


def _given(value: _T | None, default: _T) -> _T:
    """xl's ``replace_string``: a value given (even an empty one) wins over the default."""
    return value if value is not None else default


def interpret(config: ParsedConfig, conf: GlobalConfig | None = None, *,
              check_files: bool = False) -> DomainConfig:
    """The domain a parsed config describes, xl.conf's defaults applied.

    ``check_files`` makes libxl's check that a disk's target exists, where
    libxl makes it: a disk that may be dom0's own device or image (no driver
    domain, no script, backend phy or left to choose), not an empty cdrom.
    """
    return _Reader(config, conf or GlobalConfig(), check_files).read()


def load(path: str, overrides: Sequence[str] = (), *, conf: GlobalConfig | None = None,
         check_files: bool = False) -> DomainConfig:
    """Read ``path`` as ``xl create path KEY=VALUE...`` would."""
    return interpret(parse_file(path, overrides), conf, check_files=check_files)


def load_text(text: str, source: str = "<string>", overrides: Sequence[str] = (), *,
              conf: GlobalConfig | None = None, check_files: bool = False) -> DomainConfig:
    """As :func:`load`, for a config's text (``source`` names it in messages)."""
    parsed = parse_text(with_overrides(text, overrides), source)
    return interpret(parsed, conf, check_files=check_files)
