"""The ring details a frontend publishes, as each device type names them.

A backend reads them once the frontend is Initialised (or Connected), in one
transaction so that they belong together, and refuses (a fatal error) details
that are missing or malformed. The names are those of Xen's ``io/blkif.h``,
``io/netif.h`` and ``io/console.h``:

- ``vbd`` (block): ``ring-ref``, or ``ring-page-order`` N with ``ring-ref0`` ..
  ``ring-ref<2^N-1>``; ``event-channel``; ``protocol`` (optional, the guest's ABI);
- ``vif`` (network): ``tx-ring-ref``, ``rx-ring-ref``, ``event-channel`` (or
  ``event-channel-tx`` and ``event-channel-rx``), ``request-rx-copy``; with
  ``multi-queue-num-queues`` N, the same per queue under ``queue-<i>/``;
- ``console``: ``ring-ref``, ``port``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from xenstore import errors
from xenstore.aclient import AsyncTransaction
from xenstore.xenbus.device import End, XenbusError
from xenstore.xenbus.paths import XsPath

#: The most pages a block ring may have (Linux blkback's max-ring-page-order is 4).
MAX_RING_PAGE_ORDER = 4
#: The most queues a network frontend may ask for.
MAX_QUEUES = 64


@dataclass(frozen=True, slots=True)
class Queue:
    """One ring (or tx/rx pair) and its event channel(s)."""

    refs: tuple[int, ...]
    event_channels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Ring:
    """What a frontend published for its rings: per queue, and every node read."""

    queues: tuple[Queue, ...]
    protocol: str | None = None
    details: dict[str, bytes] = field(default_factory=dict)

    @property
    def refs(self) -> tuple[int, ...]:
        return tuple(ref for queue in self.queues for ref in queue.refs)

    @property
    def event_channels(self) -> tuple[int, ...]:
        return tuple(port for queue in self.queues for port in queue.event_channels)


Reader = Callable[[AsyncTransaction, XsPath], Awaitable[Ring]]


async def _node(t: AsyncTransaction, path: XsPath, name: str) -> bytes | None:
    try:
        return await t.read(_below(path, name))
    except errors.ENOENT:
        return None


def _below(path: XsPath, name: str) -> XsPath:
    for part in name.split("/"):
        path = path / part
    return path


async def _number(t: AsyncTransaction, path: XsPath, name: str, details: dict[str, bytes],
                  *, limit: int = 0xFFFFFFFF) -> int:
    raw = await _node(t, path, name)
    if raw is None:
        raise XenbusError(f"reading {path}/{name}: missing", errno_value=2)  # ENOENT
    details[name] = raw
    if not raw.isdigit() or int(raw) > limit:
        raise XenbusError(f"reading {path}/{name}: not a number: {raw!r}", errno_value=22)
    return int(raw)


async def block_ring(t: AsyncTransaction, path: XsPath) -> Ring:
    details: dict[str, bytes] = {}
    order_raw = await _node(t, path, "ring-page-order")
    refs: tuple[int, ...]
    if order_raw is None:
        refs = (await _number(t, path, "ring-ref", details),)
    else:
        order = await _number(t, path, "ring-page-order", details, limit=MAX_RING_PAGE_ORDER)
        refs = tuple([await _number(t, path, f"ring-ref{i}", details)
                      for i in range(1 << order)])
    port = await _number(t, path, "event-channel", details)
    protocol = await _node(t, path, "protocol")
    if protocol is not None:
        details["protocol"] = protocol
    return Ring((Queue(refs, (port,)),), protocol.decode() if protocol else None, details)


async def _net_queue(t: AsyncTransaction, path: XsPath, prefix: str,
                     details: dict[str, bytes]) -> Queue:
    refs = (await _number(t, path, f"{prefix}tx-ring-ref", details),
            await _number(t, path, f"{prefix}rx-ring-ref", details))
    if await _node(t, path, f"{prefix}event-channel-tx") is not None:
        ports: tuple[int, ...] = (await _number(t, path, f"{prefix}event-channel-tx", details),
                                  await _number(t, path, f"{prefix}event-channel-rx", details))
    else:
        ports = (await _number(t, path, f"{prefix}event-channel", details),)
    return Queue(refs, ports)


async def net_ring(t: AsyncTransaction, path: XsPath) -> Ring:
    details: dict[str, bytes] = {}
    if await _node(t, path, "multi-queue-num-queues") is None:
        queues: tuple[Queue, ...] = (await _net_queue(t, path, "", details),)
    else:
        count = await _number(t, path, "multi-queue-num-queues", details, limit=MAX_QUEUES)
        if count == 0:
            raise XenbusError(f"{path}/multi-queue-num-queues is 0", errno_value=22)
        queues = tuple([await _net_queue(t, path, f"queue-{i}/", details)
                        for i in range(count)])
    copy = await _node(t, path, "request-rx-copy")
    if copy is not None:
        details["request-rx-copy"] = copy
    if copy != b"1":
        # Linux netback refuses a frontend that cannot receive by copy.
        raise XenbusError(f"{path}: request-rx-copy is not 1", errno_value=95)  # EOPNOTSUPP
    return Ring(queues, None, details)


async def console_ring(t: AsyncTransaction, path: XsPath) -> Ring:
    details: dict[str, bytes] = {}
    ref = await _number(t, path, "ring-ref", details)
    port = await _number(t, path, "port", details)
    return Ring((Queue((ref,), (port,)),), None, details)


#: The frontend nodes each type's ring details consist of (shell patterns): what a
#: frontend's new details replace, so a reset never leaves an old ring behind.
RING_NODES: dict[str, tuple[str, ...]] = {
    "vbd": ("ring-ref*", "ring-page-order", "event-channel"),
    "vif": ("tx-ring-ref", "rx-ring-ref", "event-channel*", "multi-queue-num-queues",
            "queue-*"),
    "console": ("ring-ref", "port"),
}

#: The ring reader of each device type.
READERS: dict[str, Reader] = {"vbd": block_ring, "vif": net_ring, "console": console_ring}


async def read_ring(end: End, reader: Reader | None = None) -> Ring:
    """The ring details the peer (a frontend) published, read in one transaction."""
    read = reader or READERS.get(end.address.type)
    if read is None:
        raise XenbusError(f"no ring reader for device type {end.address.type!r}",
                          errno_value=22)
    peer = end.peer

    async def work(t: AsyncTransaction) -> Ring:
        return await read(t, peer)

    try:
        return await end.xs.retry(work)
    except errors.EACCES as exc:
        raise XenbusError(f"reading the ring details under {peer}: permission denied",
                          errno_value=13) from exc
