"""A PV console: the guest writes its output into a ring, dom0 reads it as a stream.

The ring is Xen's ``struct xencons_interface`` (``io/console.h``) in one granted
page: ``in[1024]`` (dom0 to guest), ``out[2048]`` (guest to dom0), then the
32-bit indexes ``in_cons``, ``in_prod``, ``out_cons``, ``out_prod``. A producer
copies bytes in and advances its ``prod`` index, a consumer reads up to it and
advances ``cons``; each notifies the other over the event channel. The indexes
run freely and are taken modulo the ring size, as on Xen.

The frontend publishes ``ring-ref`` and ``port``; the backend (xenconsoled's
part) checks ``protocol`` = ``vt100`` in its own directory (the toolstack writes
it), maps the page, binds the channel and hands the guest's output to
:attr:`ConsoleBackend.output`, a byte stream. Pages and channels come from a
:class:`~xenstore.xenbus.hypervisor.Hypervisor` both ends share.
"""

from __future__ import annotations

import math
import mmap
import struct
from collections.abc import Mapping

import trio

from xenstore.xenbus.backend import BackendDriver
from xenstore.xenbus.device import End, Value, XenbusError
from xenstore.xenbus.frontend import FrontendDriver
from xenstore.xenbus.hypervisor import EventChannel, Hypervisor
from xenstore.xenbus.rings import Ring

IN_SIZE, OUT_SIZE = 1024, 2048
IN_OFFSET, OUT_OFFSET, INDEX_OFFSET = 0, IN_SIZE, IN_SIZE + OUT_SIZE
_INDEXES = struct.Struct("<IIII")  # in_cons, in_prod, out_cons, out_prod
PROTOCOL = b"vt100"


class ConsoleRing:
    """A ``xencons_interface`` in ``page``: either end's view."""

    def __init__(self, page: mmap.mmap) -> None:
        self.page = page

    def _indexes(self) -> tuple[int, int, int, int]:
        in_cons, in_prod, out_cons, out_prod = _INDEXES.unpack_from(self.page, INDEX_OFFSET)
        return in_cons, in_prod, out_cons, out_prod

    def _set(self, slot: int, value: int) -> None:
        struct.pack_into("<I", self.page, INDEX_OFFSET + 4 * slot, value & 0xFFFFFFFF)

    def put(self, data: bytes, *, outward: bool) -> int:
        """Copy what fits of ``data`` into the out ring (guest) or the in ring (dom0);
        returns how many bytes went in."""
        in_cons, in_prod, out_cons, out_prod = self._indexes()
        cons, prod, size, base, slot = (
            (out_cons, out_prod, OUT_SIZE, OUT_OFFSET, 3) if outward
            else (in_cons, in_prod, IN_SIZE, IN_OFFSET, 1))
        room = size - ((prod - cons) & 0xFFFFFFFF)
        chunk = data[:room]
        for i, byte in enumerate(chunk):
            self.page[base + (prod + i) % size] = byte
        self._set(slot, prod + len(chunk))
        return len(chunk)

    def take(self, *, outward: bool) -> bytes:
        """Everything waiting in the out ring (dom0) or the in ring (guest)."""
        in_cons, in_prod, out_cons, out_prod = self._indexes()
        cons, prod, size, base, slot = (
            (out_cons, out_prod, OUT_SIZE, OUT_OFFSET, 2) if outward
            else (in_cons, in_prod, IN_SIZE, IN_OFFSET, 0))
        count = (prod - cons) & 0xFFFFFFFF
        if count > size:
            raise XenbusError(f"console ring indexes are corrupt ({cons}..{prod})", 5)
        data = bytes(self.page[base + (cons + i) % size] for i in range(count))
        self._set(slot, cons + count)
        return data


class ConsoleBackend(BackendDriver):
    """dom0's end: the guest's output arrives on :attr:`output` (a stream of bytes)."""

    def __init__(self, end: End, hypervisor: Hypervisor) -> None:
        super().__init__(end)
        self.hypervisor = hypervisor
        self._send, self.output = trio.open_memory_channel[bytes](math.inf)
        self._ring: ConsoleRing | None = None
        self._channel: EventChannel | None = None

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        protocol = await self.end.read_own("protocol")
        if protocol not in (None, PROTOCOL):
            raise XenbusError(f"console protocol {protocol!r} is not vt100", 93)  # EPROTONOSUPPORT
        (queue,) = ring.queues
        frontend_id = self.end.address.frontend_id
        try:
            self._ring = ConsoleRing(self.hypervisor.map_grant(frontend_id, queue.refs[0]))
            self._channel = self.hypervisor.bind_interdomain(
                frontend_id, queue.event_channels[0])
        except LookupError as exc:
            raise XenbusError(str(exc), 2) from exc
        return {}

    async def serve(self) -> None:
        assert self._ring is not None and self._channel is not None
        while True:
            data = self._ring.take(outward=True)
            if data:
                self._channel.notify()  # room again for the guest
                await self._send.send(data)
            await self._channel.wait()

    def type_in(self, data: bytes) -> int:
        """Keyboard input for the guest (what fits of it); returns the bytes taken."""
        if self._ring is None or self._channel is None:
            return 0
        taken = self._ring.put(data, outward=False)
        self._channel.notify()
        return taken

    async def disconnect(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._ring is not None:
            self._ring.page.close()
            self._ring = None


class ConsoleFrontend(FrontendDriver):
    """The guest's end: :meth:`write` its output, :meth:`read` what dom0 typed."""

    def __init__(self, end: End, hypervisor: Hypervisor) -> None:
        super().__init__(end)
        self.hypervisor = hypervisor
        self._ring: ConsoleRing | None = None
        self._channel: EventChannel | None = None
        self._ref = 0

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        domid = self.end.address.frontend_id
        self._ref, page = self.hypervisor.grant(domid)
        self._ring = ConsoleRing(page)
        self._channel = self.hypervisor.alloc_unbound(domid)
        return {"ring-ref": self._ref, "port": self._channel.port}

    async def write(self, data: bytes) -> None:
        """Put ``data`` on the console, waiting for room as a real guest does."""
        if self._ring is None or self._channel is None:
            raise XenbusError("the console is not connected", 107)  # ENOTCONN
        while data:
            taken = self._ring.put(data, outward=True)
            data = data[taken:]
            self._channel.notify()
            if data:
                await self._channel.wait()

    async def read(self) -> bytes:
        """What dom0 typed, waiting for some."""
        if self._ring is None or self._channel is None:
            raise XenbusError("the console is not connected", 107)
        while True:
            data = self._ring.take(outward=False)
            if data:
                return data
            await self._channel.wait()

    async def disconnect(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._ring is not None:
            self._ring.page.close()
            self._ring = None
            self.hypervisor.end_grant(self.end.address.frontend_id, self._ref)
