"""The keys of ``xl.cfg``: every one ``xl_parse.c`` reads, and those this lab acts on.

xl ignores any other key without a word; a misspelt ``memmory = 2048`` then
silently gives the default. The lab warns about those (see :mod:`.xlconfig`).
"""

from __future__ import annotations

#: The keys this lab reads into a :class:`~xenstore.lab.xldomain.DomainConfig`.
MODELLED_KEYS = frozenset({
    "name", "type", "builder", "uuid", "memory", "maxmem", "vcpus", "maxvcpus",
    "kernel", "ramdisk", "cmdline", "root", "extra", "bootloader", "firmware", "disk", "vif",
    "boot", "vnc", "vnclisten", "vncdisplay", "sdl", "on_poweroff", "on_reboot",
    "on_watchdog", "on_crash", "on_soft_reset", "device_model_version", "vga", "stdvga",
    "videoram", "bios", "acpi", "acpi_s3", "acpi_s4", "acpi_laptop_slate",
})

#: Every key xl reads from a domain's config (Xen's tools/xl/xl_parse.c).
KNOWN_KEYS = MODELLED_KEYS | frozenset({
    "acpi", "acpi_firmware", "acpi_laptop_slate", "acpi_s3", "acpi_s4", "altp2m",
    "altp2m_count", "altp2mhvm", "apic", "arm_sci", "bios", "bios_path_override",
    "bootloader_args", "bootloader_restrict", "bootloader_user", "cap", "channel",
    "cpu_weight", "cpuid", "cpus", "cpus_soft", "device_model", "device_model_args",
    "device_model_args_hvm", "device_model_args_pv", "device_model_override",
    "device_model_stubdomain_override", "device_model_stubdomain_seclabel",
    "device_model_user", "device_model_version", "device_tree", "display", "dm_restrict",
    "driver_domain", "dtdev", "e820_host", "extratime", "firmware_override", "gfx_passthru",
    "gic_version", "hap", "hdtype", "hpet", "hvm_pirq", "init_seclabel", "iomem", "ioports",
    "irqs", "keymap", "latency", "llc_colors", "localtime", "max_event_channels",
    "max_grant_frames", "max_grant_version", "max_maptrack_frames", "mca_caps",
    "mmio_hole", "ms_vm_genid", "msr_relaxed", "nestedhvm", "nographic", "nomigrate",
    "nr_spis", "nx", "oos", "opengl", "p9", "pae", "passthrough", "pci", "pci_msitranslate",
    "pci_permissive", "pci_power_mgmt", "pci_seize", "period", "pool", "pvcalls", "pvshim",
    "pvshim_cmdline", "pvshim_extra", "pvshim_path", "rdm", "rdm_mem_boundary",
    "rtc_timeoffset", "seclabel", "serial", "shadow_memory", "slice", "smbios",
    "smbios_firmware", "soundhw", "spice", "spice_clipboard_sharing",
    "spice_image_compression", "spice_streaming_video", "spiceagent_mouse",
    "spicedisable_ticketing", "spicehost", "spicepasswd", "spiceport", "spicetls_port",
    "spiceusbredirection", "spicevdagent", "stdvga", "stubdomain_cmdline",
    "stubdomain_kernel", "stubdomain_memory", "stubdomain_ramdisk", "sve", "tee",
    "timer_mode", "trap_unmapped_accesses", "tsc_mode", "usb", "usbctrl", "usbdev",
    "usbdevice", "usbversion", "vdispl", "vendor_device", "vfb", "vga", "videoram", "vif2",
    "viridian", "virtio", "vkb", "vkb_device", "vmtrace_buf_kb", "vncpasswd", "vncunused",
    "vncviewer", "vnuma", "vpmu", "vpt_align", "vsnd", "vtpm", "vuart", "xauthority",
    "xen_platform_pci", "xen_platform_pci_bar_uc", "xend_suspend_evtchn_compat",
    "xenstore_feature_mask", "xenstore_quota",
})
