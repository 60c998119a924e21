"""The host's side of ``pyxl create`` and of the ``block-*`` and ``network-*`` commands.

A config is read as ``xl create`` reads it (:mod:`.xlconfig`: xl's grammar, keys,
defaults and messages, the files libxl checks checked); a disk or vif given on
the command line goes through the same reader, as one entry of a config, so it
gets the same defaults and the same messages. Device lists read back what
libxl's record and the frontends say, as ``xl block-list``/``network-list`` do.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xenstore import errors
from xenstore.aclient import AsyncClient
from xenstore.lab.host import Guest, GuestConfig, Host
from xenstore.lab.xen import LabError
from xenstore.lab.xlcfg import ConfigError, parse_text, with_overrides
from xenstore.lab.xlconf import read_global
from xenstore.lab.xlconfig import load_text
from xenstore.xenbus.paths import DeviceAddress
from xenstore.xenbus.specs import DiskSpec, NicSpec
from xenstore.xenbus.vdev import vdev_to_devid


def guest_config(text: str, path: str, overrides: list[str]) -> tuple[GuestConfig, list[str]]:
    """A config file's guest, and the warnings reading it gave (ConfigError → LabError)."""
    try:
        config = load_text(text, path, overrides, conf=read_global(), check_files=True)
        specs = config.to_specs(domid=1)  # the hypervisor picks the real one
        # xen_platform_pci = 0: an HVM guest without the device PV drivers need.
        platform = parse_text(with_overrides(text, overrides), path).get_long(
            "xen_platform_pci")
    except ConfigError as exc:
        raise LabError(exc.message) from None
    pv_drivers = not (config.type == "hvm" and platform == 0)
    return (GuestConfig(specs.domain, list(specs.disks), list(specs.nics), config.on_poweroff,
                        config.on_reboot, config.on_crash, pv_drivers),
            list(config.warnings))


def _one_entry(guest: Guest, key: str, spec: str, source: str) -> Any:
    """``spec`` read as the one entry of a ``disk`` or ``vif`` list of ``guest``'s type."""
    if "'" in spec or "\n" in spec:
        raise LabError(f"{source}: a quote or newline cannot be part of {spec!r}")
    kernel = f'kernel = "{guest.spec.kernel or "/boot/vmlinuz"}"\n' if guest.spec.type == "pv" \
        else ""
    text = (f'name = "{guest.domain.name}"\ntype = "{guest.spec.type}"\n{kernel}'
            f"{key} = [ '{spec}' ]\n")
    try:
        specs = load_text(text, source, conf=read_global(), check_files=True).to_specs(1)
    except ConfigError as exc:
        raise LabError(exc.message) from None
    return specs.disks[0] if key == "disk" else specs.nics[0]


async def _read(xs: AsyncClient, path: str) -> str | None:
    try:
        return (await xs.read(path)).decode("utf-8", "replace")
    except errors.ENOENT:
        return None


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else -1


class DeviceCommands:
    """create, block-attach/-detach/-list, network-attach/-detach/-list."""

    def __init__(self, host: Host) -> None:
        self.host = host

    async def create(self, args: dict[str, Any]) -> Any:
        config, warnings = guest_config(str(args["config"]), str(args["path"]),
                                        [str(o) for o in args.get("overrides", [])])
        guest = await self.host.create(config)
        return {"domid": guest.domain.domid, "name": guest.domain.name, "warnings": warnings}

    async def block_attach(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        disk: DiskSpec = _one_entry(guest, "disk", str(args["spec"]), "block-attach")
        address = await self.host.toolstack.add_disk(guest.domain.domid, disk)
        guest.config.disks.append(disk)
        return {"devid": address.devid}

    async def block_detach(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        device = str(args["device"])
        try:
            devid = vdev_to_devid(device)
        except ValueError:
            raise LabError(f"Error: Device {device} not connected.") from None
        address = await self._find(guest, "vbd", lambda a: a.devid == devid)
        if address is None:
            raise LabError(f"Error: Device {device} not connected.")
        await self.host.toolstack.remove_device(address, force=True)
        guest.config.disks = [d for d in guest.config.disks if d.devid != devid]
        return {}

    async def block_list(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        xs = self.host.xs
        rows = []
        for address in await self.host.toolstack.devices(guest.domain.domid):
            if address.type != "vbd":
                continue
            rows.append({
                "vdev": await _read(xs, address.backend / "dev"), "devid": address.devid,
                "backend_id": address.backend_id, "frontend_id": address.frontend_id,
                "state": _number(await _read(xs, address.frontend / "state")),
                "evtchn": _number(await _read(xs, address.frontend / "event-channel")),
                "ring_ref": _number(await _read(xs, address.frontend / "ring-ref")),
                "backend": address.backend})
        return sorted(rows, key=lambda r: r["devid"])

    async def network_attach(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        nic: NicSpec = _one_entry(guest, "vif", ",".join(args.get("spec") or []),
                                  "network-attach")
        nic = dataclasses.replace(nic, devid=None)  # the next free number, as libxl picks
        address = await self.host.toolstack.add_nic(guest.domain.domid, nic)
        guest.config.nics.append(nic)
        return {"devid": address.devid}

    async def network_detach(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        device = str(args["device"]).lower()
        xs = self.host.xs
        found = None
        for address in await self.host.toolstack.devices(guest.domain.domid):
            if address.type == "vif" and (str(address.devid) == device or
                                          await _read(xs, address.backend / "mac") == device):
                found = address
        if found is None:
            raise LabError(f"Unknown device {args['device']}.")
        await self.host.toolstack.remove_device(found, force=True)
        return {}

    async def network_list(self, args: dict[str, Any]) -> Any:
        guest = self.host.guest(str(args["domain"]))
        xs = self.host.xs
        rows = []
        for address in await self.host.toolstack.devices(guest.domain.domid):
            if address.type != "vif":
                continue
            fe = address.frontend
            rows.append({
                "idx": address.devid, "backend_id": address.backend_id,
                "mac": await _read(xs, fe / "mac"), "handle": address.devid,
                "state": _number(await _read(xs, fe / "state")),
                # Split channels (event-channel-tx/-rx): xl shows the tx one.
                "evtchn": _number(await _read(xs, fe / "event-channel")
                                  or await _read(xs, fe / "event-channel-tx")),
                "tx_ring_ref": _number(await _read(xs, fe / "tx-ring-ref")),
                "rx_ring_ref": _number(await _read(xs, fe / "rx-ring-ref")),
                "backend": address.backend})
        return sorted(rows, key=lambda r: r["idx"])

    async def _find(self, guest: Guest, kind: str, match: Any) -> DeviceAddress | None:
        for address in await self.host.toolstack.devices(guest.domain.domid):
            if address.type == kind and match(address):
                return address
        return None
