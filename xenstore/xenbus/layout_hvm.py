"""An HVM guest's device model in the store, as libxl lays it out (Xen 4.17).

An HVM guest's PC (firmware, disks, nics, graphics) is emulated by a device
model, qemu, that dom0 runs for it. libxl's part, after the domain's disks
and primary console (libxl_create.c, domcreate_launch_dm):

1. a PV keyboard, ``device/vkbd/0``, that qemu serves (libxl_vkb.c; only the
   nodes every device has): :func:`vkbd_layout`;
2. before qemu starts (libxl_dm.c, libxl__spawn_local_dm): ``~/hvmloader/bios``
   (the firmware hvmloader loads) and ``~/hvmloader/allow-memory-relocate``
   (1 only for qemu-xen-traditional, whose MMIO hole may move), then the
   device model's own directory ``/local/domain/0/device-model/<D>``
   (qemu-xen-traditional also gets ``disable_pf``);
3. the child that executes qemu records its pid in ``~/image/device-model-pid``
   (libxl_exec.c): that node is how libxl later knows a device model runs
   (libxl__dm_active); then libxl waits for qemu's ``state`` = ``running`` in
   the device model's directory: :func:`device_model_layout`;
4. once it runs, libxl asks qemu (QMP ``query-vnc``) where its VNC server
   listens and writes the answer to ``~/console/vnc-listen`` and
   ``~/console/vnc-port``: :func:`vnc_layout`.

Steps 2 to 4 are lone writes (libxl's XBT_NULL), each node inheriting its
parent's perms. The nics come after (domcreate_devmodel_started). When the
domain goes, libxl__destroy_device_model removes the device model's directory
before the devices, then kills qemu.
"""

from __future__ import annotations

from xenstore.xenbus.layout import TOOLSTACK_DOMID, Entry, Layout, device_layout, owned
from xenstore.xenbus.paths import DeviceAddress, XsPath, domain_home
from xenstore.xenbus.specs import DomainSpec
from xenstore.xenbus.state import XenbusState

__all__ = ["device_model_dir", "device_model_layout", "vkbd_layout", "vnc_layout"]


def device_model_dir(domid: int, dm_domid: int = TOOLSTACK_DOMID) -> XsPath:
    """``/local/domain/<dm>/device-model/<D>``: where qemu reports (DEVICE_MODEL_XS_PATH)."""
    return domain_home(dm_domid) / "device-model" / domid


def vkbd_layout(domid: int, devid: int = 0, backend_domid: int = TOOLSTACK_DOMID) -> Layout:
    """The PV keyboard libxl gives an HVM guest (``vkb_device``), served by qemu."""
    address = DeviceAddress("vkbd", domid, devid, backend_domid)
    state = str(XenbusState.Initialising.value)
    back = [("frontend-id", str(domid)), ("online", "1"), ("state", state)]
    return device_layout(address, back, [("backend-id", str(backend_domid)), ("state", state)])


def device_model_layout(spec: DomainSpec, pid: int) -> Layout:
    """What libxl writes to start ``spec``'s device model, whose process is ``pid``.

    For a PV or PVH guest (whose qdisk disks need a qemu too) there is no
    hvmloader: only the device model's directory and pid.
    """
    home, ro = domain_home(spec.domid), owned(TOOLSTACK_DOMID, spec.domid)
    traditional = spec.device_model_version == "qemu-xen-traditional"
    out = []
    if spec.type == "hvm":
        out += [Entry(home / "hvmloader" / "bios", spec.firmware, ro, False),
                # No vNUMA here: only traditional's hole may relocate memory.
                Entry(home / "hvmloader" / "allow-memory-relocate",
                      "1" if traditional else "0", ro, False)]
    dm = device_model_dir(spec.domid)
    out.append(Entry(dm, "", owned(TOOLSTACK_DOMID), False))  # xs_mkdir
    if spec.type == "hvm" and traditional:  # the Xen platform PCI device is on
        out.append(Entry(dm / "disable_pf", "0", owned(TOOLSTACK_DOMID), False))
    out.append(Entry(home / "image" / "device-model-pid", str(pid), ro, False))
    return Layout((), tuple(out), atomic=False)


def vnc_layout(spec: DomainSpec, console_backend: int = TOOLSTACK_DOMID) -> Layout:
    """Where qemu's VNC server listens, as libxl records qemu's answer (none without VNC).

    The nodes go into the primary console's directory and take its perms
    (``n<console backend> r<D>``).
    """
    if spec.type != "hvm" or not spec.vnc:
        return Layout((), (), atomic=False)
    console, perms = domain_home(spec.domid) / "console", owned(console_backend, spec.domid)
    return Layout((), (Entry(console / "vnc-listen", spec.vnc_listen, perms, False),
                       Entry(console / "vnc-port", str(spec.vnc_port), perms, False)),
                  atomic=False)
