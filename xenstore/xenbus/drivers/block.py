"""A virtual disk (``vbd``): Linux's blkback (dom0) and blkfront (the guest), in the store.

The names and numbers are those of Xen's ``io/blkif.h``:

- the toolstack writes ``params`` (the image), ``mode`` (``r`` or ``w``),
  ``device-type`` (``disk``, ``cdrom``) and ``removable`` in the backend's directory;
- hotplug (the ``block`` script's part) checks the image and writes
  ``physical-device`` (``major:minor`` in hex) and ``physical-device-path``;
- with InitWait the backend offers ``feature-flush-cache``, ``feature-persistent``
  and ``max-ring-page-order`` (a ring of up to 2^order pages);
- the frontend publishes ``ring-ref`` (or ``ring-page-order`` and ``ring-ref0``..),
  ``event-channel``, ``protocol`` and its own ``feature-persistent``;
- with Connected the backend publishes ``sectors`` (always in units of 512 bytes),
  ``sector-size`` and ``info`` (the ``VDISK_*`` bits).

There is no hypervisor to carry requests over a ring, so the backend has an
in-process data path instead (:meth:`Blkback.read`, :meth:`Blkback.write`,
:meth:`Blkback.flush`) that refuses what blkback refuses: writes to a read-only
disk, requests past its end, anything while it is not connected.

Stand-ins, since nothing here is a kernel: a file-backed disk gets the numbers
of a loop device (major 7, as the script's ``losetup`` would give) but its
``physical-device-path`` is the file itself (blkif.h allows a regular file
there on FreeBSD); a disk in memory gets a RAM disk's (major 1, ``/dev/ram<n>``).
"""

from __future__ import annotations

import errno
import itertools
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import trio

from xenstore.xenbus.backend import BackendDriver, HotplugError
from xenstore.xenbus.device import End, Value, XenbusError
from xenstore.xenbus.drivers import Numbers
from xenstore.xenbus.frontend import FrontendDriver
from xenstore.xenbus.rings import MAX_RING_PAGE_ORDER, Queue, Ring

#: ``sectors`` and the data path count in these, whatever ``sector-size`` says.
SECTOR_SIZE = 512
#: The ``info`` bits (blkif.h).
VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4
#: The ring ABIs a frontend may name in ``protocol`` (io/protocols.h).
PROTOCOLS = ("x86_32-abi", "x86_64-abi", "arm-abi")
NATIVE_PROTOCOL = "x86_64-abi"
#: Linux's majors for loop devices and RAM disks: our stand-ins' numbers.
LOOP_MAJOR = 7
RAMDISK_MAJOR = 1

# Minor numbers, one per disk for the life of its backend (a loop device is set up once).
_loop_minors = itertools.count()
_ram_minors = itertools.count()


class DiskError(Exception):
    """A request the backend refuses (blkif's ``BLKIF_RSP_ERROR``)."""


class ReadOnlyDisk(DiskError):
    """A write to a disk whose ``mode`` is ``r``."""


def _flag(raw: bytes | None) -> bool:
    return raw == b"1"


def _unsigned(values: Mapping[str, bytes], name: str, default: int) -> int:
    """A node read as xenbus_read_unsigned does: the default if missing or malformed."""
    raw = values.get(name, b"")
    return int(raw) if raw.isdigit() else default


class Blkback(BackendDriver):
    """dom0's end of a disk whose image is the file named by ``params``, or ``memory``.

    ``memory``: the disk's bytes, when the disk lives in memory (``params`` is
    then ignored); ``max_ring_page_order``: the largest ring offered (Linux's
    default is 4: 16 pages).
    """

    def __init__(self, end: End, *, memory: bytearray | None = None,
                 max_ring_page_order: int = MAX_RING_PAGE_ORDER) -> None:
        super().__init__(end)
        self.memory = memory
        self.max_ring_page_order = max_ring_page_order
        #: Learnt at hotplug, from the toolstack's nodes.
        self.read_only = False
        self.info = 0
        self.path: str | None = None
        self._minor: int | None = None
        #: While connected: the frontend's ring, whether grants stay mapped, the image.
        self.ring: Ring | None = None
        self.persistent = False
        self._fd: int | None = None
        self._size = 0
        # One request at a time, so that disconnect never closes the file under one.
        self._io = trio.Lock()

    # -- the handshake ---------------------------------------------------------------

    async def hotplug(self) -> Mapping[str, Value]:
        # blkback treats any mode without a "w" as read-only.
        self.read_only = b"w" not in (await self.end.read_own("mode") or b"w")
        self.info = VDISK_READONLY if self.read_only else 0
        if await self.end.read_own("device-type") == b"cdrom":
            self.info |= VDISK_CDROM
        if _flag(await self.end.read_own("removable")):
            self.info |= VDISK_REMOVABLE
        if self.memory is not None:
            minor = self._minor_from(_ram_minors)
            return {"physical-device": f"{RAMDISK_MAJOR:x}:{minor:x}",
                    "physical-device-path": f"/dev/ram{minor}"}
        params = (await self.end.read_own("params") or b"").decode("utf-8", "replace")
        if self.end.address.backend_kind == "qdisk":
            # qemu's backend reads "<format>:<path>" (libxl writes raw as "aio").
            params = params.partition(":")[2]
        image = await trio.Path(params).resolve() if params else None
        if image is None or not await image.is_file():
            raise HotplugError(f"no such file: {params}")
        if not self.read_only and not await trio.to_thread.run_sync(os.access, image, os.W_OK):
            raise HotplugError(f"{image} is read-only: it cannot be attached read-write")
        self.path = str(image)
        minor = self._minor_from(_loop_minors)
        return {"physical-device": f"{LOOP_MAJOR:x}:{minor:x}",
                "physical-device-path": self.path}

    def _minor_from(self, minors: Iterator[int]) -> int:
        # Hotplug runs again when the device restarts: it keeps its number.
        if self._minor is None:
            self._minor = next(minors)
        return self._minor

    def features(self) -> Mapping[str, Value]:
        return {"feature-flush-cache": 1, "feature-persistent": 1,
                "max-ring-page-order": self.max_ring_page_order}

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        if ring.protocol is not None and ring.protocol not in PROTOCOLS:
            raise XenbusError(f"unknown frontend protocol {ring.protocol!r}", errno.ENOSYS)
        if len(ring.refs) > 1 << self.max_ring_page_order:
            raise XenbusError(f"{len(ring.refs)} ring pages exceed the maximum of "
                              f"{1 << self.max_ring_page_order}", errno.EINVAL)
        # Grants stay mapped only if both ends say so.
        self.persistent = _flag(await self.end.read_peer("feature-persistent"))
        await self._open()
        self.ring = ring
        return {"sectors": self._size // SECTOR_SIZE, "sector-size": SECTOR_SIZE,
                "info": self.info}

    async def _open(self) -> None:
        if self.memory is not None:
            self._size = len(self.memory)
            return
        assert self.path is not None  # hotplug ran
        flags = os.O_RDONLY if self.read_only else os.O_RDWR
        try:
            self._fd = await trio.to_thread.run_sync(os.open, self.path, flags)
        except OSError as exc:  # removed (or made read-only) since hotplug
            raise XenbusError(f"opening {self.path}: {exc.strerror}",
                              exc.errno or errno.EIO) from exc
        self._size = os.fstat(self._fd).st_size

    async def disconnect(self) -> None:
        async with self._io:
            self.ring = None
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # -- the data path -----------------------------------------------------------------

    def _check_connected(self) -> None:
        if self.ring is None:
            raise DiskError(f"{self.end.address} is not connected")

    def _extent(self, sector: int, length: int) -> int:
        """The byte offset of ``length`` bytes at ``sector``, once they are checked."""
        self._check_connected()
        if length % SECTOR_SIZE:
            raise DiskError(f"{length} bytes is not a whole number of sectors")
        offset = sector * SECTOR_SIZE
        if sector < 0 or length < 0 or offset + length > self._size:
            raise DiskError(f"sectors {sector}..+{length // SECTOR_SIZE} are past the end "
                            f"({self._size // SECTOR_SIZE} sectors)")
        return offset

    async def read(self, sector: int, count: int) -> bytes:
        """``count`` sectors from ``sector`` on (a ``BLKIF_OP_READ``)."""
        async with self._io:
            offset = self._extent(sector, count * SECTOR_SIZE)
            if self.memory is not None:
                return bytes(self.memory[offset:offset + count * SECTOR_SIZE])
            assert self._fd is not None
            return await trio.to_thread.run_sync(os.pread, self._fd, count * SECTOR_SIZE,
                                                 offset)

    async def write(self, sector: int, data: bytes) -> None:
        """Write whole sectors from ``sector`` on (a ``BLKIF_OP_WRITE``)."""
        async with self._io:
            offset = self._extent(sector, len(data))
            if self.read_only:
                raise ReadOnlyDisk(f"{self.end.address} is read-only")
            if self.memory is not None:
                self.memory[offset:offset + len(data)] = data
            else:
                assert self._fd is not None
                await trio.to_thread.run_sync(_pwrite_all, self._fd, data, offset)

    async def flush(self) -> None:
        """Make what was written durable (a ``BLKIF_OP_FLUSH_DISKCACHE``)."""
        async with self._io:
            self._check_connected()
            if self._fd is not None:
                await trio.to_thread.run_sync(os.fsync, self._fd)


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


@dataclass(frozen=True, slots=True)
class VirtualDisk:
    """The disk as the frontend sees it once the backend is Connected."""

    sectors: int
    sector_size: int
    info: int
    flush: bool
    persistent: bool

    @property
    def size(self) -> int:
        """In bytes (``sectors`` counts 512 bytes whatever the sector size)."""
        return self.sectors * SECTOR_SIZE

    @property
    def read_only(self) -> bool:
        return bool(self.info & VDISK_READONLY)

    @property
    def cdrom(self) -> bool:
        return bool(self.info & VDISK_CDROM)

    @property
    def removable(self) -> bool:
        return bool(self.info & VDISK_REMOVABLE)


class Blkfront(FrontendDriver):
    """The guest's end: its ring, and :attr:`disk` once connected.

    ``ring_page_order``: the ring wanted (2^order pages), used up to the backend's
    ``max-ring-page-order``; ``grants`` and ``ports``: where the ring's grant
    references and its event channel come from (share them between a guest's
    drivers).
    """

    backend_features = ("max-ring-page-order",)
    connect_details = ("sectors", "sector-size", "info", "feature-flush-cache",
                       "feature-persistent")

    def __init__(self, end: End, *, ring_page_order: int = 0, grants: Numbers | None = None,
                 ports: Numbers | None = None) -> None:
        super().__init__(end)
        self.ring_page_order = ring_page_order
        self.grants = grants or Numbers.grant_refs()
        self.ports = ports or Numbers.ports()
        #: The ring published: its pages' grant references, its event channel.
        self.ring: Queue | None = None
        self.disk: VirtualDisk | None = None

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        order = min(self.ring_page_order, _unsigned(features, "max-ring-page-order", 0))
        refs = self.grants.take(1 << order)
        self.ring = Queue(refs, self.ports.take())
        nodes: dict[str, Value] = {"event-channel": self.ring.event_channels[0],
                                   "protocol": NATIVE_PROTOCOL, "feature-persistent": 1}
        if order == 0:
            nodes["ring-ref"] = refs[0]
        else:  # a multi-page ring names each page, and no ring-ref (blkif.h note 6)
            nodes["ring-page-order"] = order
            nodes.update({f"ring-ref{i}": ref for i, ref in enumerate(refs)})
        return nodes

    async def connected(self, details: Mapping[str, bytes]) -> None:
        numbers = {}
        for name in ("sectors", "sector-size", "info"):
            raw = details.get(name, b"")
            if not raw.isdigit():
                raise XenbusError(f"{self.end.peer}/{name} is not a number: {raw!r}",
                                  errno.EINVAL)
            numbers[name] = int(raw)
        self.disk = VirtualDisk(numbers["sectors"], numbers["sector-size"], numbers["info"],
                                _flag(details.get("feature-flush-cache")),
                                _flag(details.get("feature-persistent")))

    async def disconnect(self) -> None:
        self.disk = None
