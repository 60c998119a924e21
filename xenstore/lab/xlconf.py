"""``/etc/xen/xl.conf``: xl's own defaults (``xl.conf(5)``), read as ``parse_global_config`` does.

The file has the grammar of a domain's config (:mod:`.xlcfg`). Its keys that
matter to a domain here are the defaults of its vifs (``vif.default.bridge``,
``vif.default.script``, ``vif.default.backend``, ``vif.default.gatewaydev``;
the deprecated ``defaultbridge`` and ``vifscript`` still count, the new names
winning). A missing file is no error: xl says so and carries on with its
defaults. A bad value of a known choice (``autoballoon``, ``output_format``,
``domid_policy``) is only a warning in xl, and is one here; a value of the
wrong type is an error here (xl warns and ignores it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

from xenstore.lab.xlcfg import ConfigError, ParsedConfig, parse_text, read_text

#: Where xl reads it (``XEN_CONFIG_DIR "/xl.conf"``).
XL_CONF = "/etc/xen/xl.conf"
#: libxl's bridge and script when neither the vif nor xl.conf names one.
DEFAULT_BRIDGE = "xenbr0"
DEFAULT_VIF_SCRIPT = "vif-bridge"
INT_MAX = (1 << 31) - 1
_T = TypeVar("_T")

#: Every key xl.c reads from xl.conf.
KNOWN_KEYS = frozenset({
    "autoballoon", "run_hotplug_scripts", "lockfile", "vifscript", "vif.default.script",
    "defaultbridge", "vif.default.bridge", "vif.default.gatewaydev", "vif.default.backend",
    "output_format", "blkdev_start", "claim_mode", "remus.default.netbufscript",
    "colo.default.proxyscript", "max_grant_frames", "max_maptrack_frames",
    "max_grant_version", "vm.cpumask", "vm.hvm.cpumask", "vm.pv.cpumask", "domid_policy",
    "bootloader_restrict",
})


@dataclass(frozen=True, slots=True)
class GlobalConfig:
    """xl.conf's settings; None where the file says nothing and xl has no value of its own."""

    source: str = XL_CONF
    autoballoon: Literal["on", "off", "auto"] = "auto"
    run_hotplug_scripts: bool = True
    lockfile: str = "/var/lock/xl"
    #: ``vif.default.script`` (or the deprecated ``vifscript``).
    vif_script: str | None = None
    #: ``vif.default.bridge`` (or the deprecated ``defaultbridge``).
    vif_bridge: str | None = None
    vif_gatewaydev: str | None = None
    vif_backend: str | None = None
    output_format: Literal["json", "sxp"] = "json"
    blkdev_start: str | None = None
    claim_mode: bool = True
    max_grant_frames: int | None = None
    max_maptrack_frames: int | None = None
    max_grant_version: int | None = None
    domid_policy: Literal["xen", "random"] = "xen"
    bootloader_restrict: bool | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def bridge(self) -> str:
        """The bridge of a vif that names none."""
        return self.vif_bridge if self.vif_bridge is not None else DEFAULT_BRIDGE

    @property
    def vif_script_default(self) -> str:
        """The hotplug script of a vif that names none."""
        return self.vif_script if self.vif_script is not None else DEFAULT_VIF_SCRIPT


def _choice(config: ParsedConfig, key: str, choices: dict[str, _T],
            warning: str, warnings: list[str]) -> _T | None:
    found = config.get_setting_string(key)
    if found is None:
        return None
    value, setting = found
    if value not in choices:
        warnings.append(f"{config.source}:{setting.line}: warning: "
                        + warning.format(value=value))
        return None
    return choices[value]


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _preferred(config: ParsedConfig, key: str, old: str, warnings: list[str]) -> str | None:
    """The new key's value, else the deprecated one's (with xl's complaint)."""
    deprecated = config.get_string(old)
    if deprecated is not None:
        warnings.append(f"the global config option {old} is deprecated, please switch to "
                        f"{key}")
    value = config.get_string(key)
    return value if value is not None else deprecated


def _unknown(config: ParsedConfig, warnings: list[str]) -> None:
    seen: set[str] = set()
    for setting in config.settings:
        if setting.key not in KNOWN_KEYS and setting.key not in seen:
            seen.add(setting.key)
            warnings.append(f"{config.source}:{setting.line}: warning: unknown key "
                            f"`{setting.key}' (xl ignores it)")


def interpret_global(config: ParsedConfig) -> GlobalConfig:
    """xl.conf's settings from its parsed text, in the order xl reads them."""
    notes: list[str] = []
    _unknown(config, notes)
    d = GlobalConfig()
    on_off: dict[str, Literal["on", "off", "auto"]] = {
        "on": "on", "1": "on", "off": "off", "0": "off", "auto": "auto"}
    formats: dict[str, Literal["json", "sxp"]] = {"json": "json", "sxp": "sxp"}
    policies: dict[str, Literal["xen", "random"]] = {"xen": "xen", "random": "random"}
    return GlobalConfig(
        source=config.source,
        autoballoon=_pick(_choice(config, "autoballoon", on_off,
                                  "invalid autoballoon option", notes), d.autoballoon),
        run_hotplug_scripts=_pick(config.get_bool("run_hotplug_scripts"),
                                  d.run_hotplug_scripts),
        lockfile=_pick(config.get_string("lockfile"), d.lockfile),
        vif_script=_preferred(config, "vif.default.script", "vifscript", notes),
        vif_bridge=_preferred(config, "vif.default.bridge", "defaultbridge", notes),
        vif_gatewaydev=config.get_string("vif.default.gatewaydev"),
        vif_backend=config.get_string("vif.default.backend"),
        output_format=_pick(_choice(config, "output_format", formats,
                                    'invalid default output format "{value}"', notes),
                            d.output_format),
        blkdev_start=config.get_string("blkdev_start"),
        claim_mode=_pick(config.get_bool("claim_mode"), d.claim_mode),
        max_grant_frames=config.get_long("max_grant_frames", 0, INT_MAX),
        max_maptrack_frames=config.get_long("max_maptrack_frames", 0, INT_MAX),
        max_grant_version=config.get_long("max_grant_version", 0, INT_MAX),
        domid_policy=_pick(_choice(config, "domid_policy", policies,
                                   "invalid domid_policy option", notes), d.domid_policy),
        bootloader_restrict=config.get_bool("bootloader_restrict"),
        warnings=tuple(notes),
    )


def parse_global(text: str, source: str = XL_CONF) -> GlobalConfig:
    """xl.conf from its text (a syntax error: ``Failed to parse config file: ...``)."""
    return interpret_global(parse_text(text, source, failure="Failed to parse config file"))


def read_global(path: str = XL_CONF) -> GlobalConfig:
    """xl.conf from ``path``; a file that cannot be read gives the defaults and xl's
    complaint as a warning."""
    try:
        text = read_text(path)
    except ConfigError as error:
        if not error.message.startswith("Failed to read"):
            raise
        return GlobalConfig(source=path, warnings=(error.message,))
    config = parse_text(text, path, failure="Failed to parse config file")
    return interpret_global(config)
