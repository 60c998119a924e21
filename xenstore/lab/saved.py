"""What ``pyxl save`` writes and ``restore`` and ``migrate`` read: a guest's config and state.

A save file starts with xl's magic line, so that ``file`` and a curious student
see what it is, then holds JSON: the guest's config (its specs and actions) and
what its "memory" held that the lab keeps (its balloon size, vCPUs online, its
console's scrollback). Migration sends the same record to the other host.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from xenstore.lab.host import GuestConfig
from xenstore.lab.xen import LabError
from xenstore.xenbus.specs import DiskSpec, DomainSpec, NicSpec

#: The first bytes of an xl save file (xl_saverestore.c's magic).
MAGIC = b"Xen saved domain, xl format\n \0 \r"
FORMAT = "pyxl-1"


def config_record(config: GuestConfig) -> dict[str, Any]:
    return {
        "domain": dataclasses.asdict(config.domain),
        "disks": [dataclasses.asdict(d) for d in config.disks],
        "nics": [dataclasses.asdict(n) for n in config.nics],
        "on_poweroff": config.on_poweroff, "on_reboot": config.on_reboot,
        "on_crash": config.on_crash, "pv_drivers": config.pv_drivers,
    }


def config_from(record: dict[str, Any]) -> GuestConfig:
    nics = []
    for nic in record["nics"]:
        if nic.get("rate") is not None:
            nic = {**nic, "rate": tuple(nic["rate"])}
        nics.append(NicSpec(**nic))
    return GuestConfig(DomainSpec(**record["domain"]),
                       [DiskSpec(**d) for d in record["disks"]], nics,
                       record["on_poweroff"], record["on_reboot"], record["on_crash"],
                       record["pv_drivers"])


def state_record(config: GuestConfig, memory_kib: int, vcpus: int,
                 scrollback: bytes) -> dict[str, Any]:
    return {"format": FORMAT, "config": config_record(config), "memory_kib": memory_kib,
            "vcpus": vcpus, "console": base64.b64encode(scrollback).decode()}


def write_save_file(path: str, record: dict[str, Any]) -> None:
    with open(path, "wb") as out:
        out.write(MAGIC)
        out.write(json.dumps(record, indent=1).encode())


def read_save_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as saved:
            data = saved.read()
    except OSError as exc:
        raise LabError(f"Can't open restore file: {exc.strerror}") from None
    if not data.startswith(MAGIC):
        raise LabError("File has wrong magic number - corrupt or for a different tool?")
    try:
        record: dict[str, Any] = json.loads(data[len(MAGIC):])
    except ValueError:
        raise LabError("Savefile truncated.") from None
    if record.get("format") != FORMAT:
        raise LabError(f"Savefile has an unknown format {record.get('format')!r}")
    return record
