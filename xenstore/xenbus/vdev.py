"""Virtual disk names to the device numbers Xen writes to the store (``xen-vbd-interface(7)``).

::

    1 << 28 | disk << 8 | partition      xvd, disks or partitions 16 onwards
    202 << 8 | disk << 4 | partition     xvd, disks and partitions up to 15
      8 << 8 | disk << 4 | partition     sd, disks and partitions up to 15
      3 << 8 | disk << 6 | partition     hd, disks 0..1, partitions 0..63
     22 << 8 | (disk-2) << 6 | partition hd, disks 2..3, partitions 0..63

Disk letters count in bijective base 26 (``a`` is 0, ``z`` 25, ``aa`` 26, ``tq``
536); ``d<disk>p<partition>`` (or ``d<disk>``) names a Xen virtual disk by
number; a plain number (decimal, ``0x`` hex or ``0`` octal, as libxl reads it) is
taken as the device number itself.
"""

from __future__ import annotations

import re

_NAMED = re.compile(r"(xvd|hd|sd)([a-z]+)(\d*)\Z")
_NUMBERED = re.compile(r"d(\d+)(?:p(\d+))?\Z")
_NUMBER = re.compile(r"(?:[1-9][0-9]*|0[0-7]*|0[xX]([0-9a-fA-F]+))\Z")
XVD_EXTENDED = 1 << 28
DISK_MAX = (1 << 20) - 1


def _disk_number(letters: str) -> int:
    number = 0
    for letter in letters:
        number = number * 26 + (ord(letter) - ord("a") + 1)
    return number - 1


def _xvd(disk: int, partition: int, name: str) -> int:
    if disk <= 15 and partition <= 15:
        return (202 << 8) | (disk << 4) | partition
    if disk > DISK_MAX or partition > 255:
        raise ValueError(f"{name}: beyond the xvd numbering (disk {disk}, partition {partition})")
    return XVD_EXTENDED | (disk << 8) | partition


def vdev_to_devid(vdev: str) -> int:
    """The device number of a virtual disk name (``xvda`` 51712, ``hdc`` 5632...)."""
    number = _NUMBER.match(vdev)
    if number:  # as C's strtoul(..., 0): decimal, 0x hex, 0 octal
        return int(vdev, 16 if number[1] else 8 if vdev[0] == "0" else 10)
    numbered = _NUMBERED.match(vdev)
    if numbered:
        return _xvd(int(numbered[1]), int(numbered[2] or 0), vdev)
    named = _NAMED.match(vdev)
    if named is None:
        raise ValueError(f"not a virtual disk name: {vdev!r}")
    kind, letters, digits = named.groups()
    if digits.startswith("0") and digits != "0":
        raise ValueError(f"{vdev}: a partition number has no leading zero")
    disk, partition = _disk_number(letters), int(digits or 0)
    if kind == "xvd":
        return _xvd(disk, partition, vdev)
    if kind == "sd":
        if disk > 15 or partition > 15:
            raise ValueError(f"{vdev}: sd disks go to 15, partitions to 15")
        return (8 << 8) | (disk << 4) | partition
    if disk > 3 or partition > 63:
        raise ValueError(f"{vdev}: hd disks go to hdd, partitions to 63")
    major = 3 if disk < 2 else 22
    return (major << 8) | ((disk & 1) << 6) | partition


def devid_to_vdev(devid: int) -> str:
    """The conventional name of a device number (the inverse of :func:`vdev_to_devid`)."""
    if devid & XVD_EXTENDED:
        disk, partition, kind = (devid >> 8) & DISK_MAX, devid & 0xFF, "xvd"
    else:
        major = devid >> 8
        if major == 202:
            kind, disk, partition = "xvd", (devid >> 4) & 0xF, devid & 0xF
        elif major == 8:
            kind, disk, partition = "sd", (devid >> 4) & 0xF, devid & 0xF
        elif major in (3, 22):
            kind = "hd"
            disk = (0 if major == 3 else 2) + ((devid >> 6) & 1)
            partition = devid & 0x3F
        else:
            return str(devid)
    letters = ""
    disk += 1
    while disk:
        disk, rest = divmod(disk - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return f"{kind}{letters}{partition or ''}"
