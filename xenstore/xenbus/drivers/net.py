"""A virtual network interface (``vif``): Linux's netback (dom0) and netfront (the guest).

The names are those of Xen's ``io/netif.h``:

- the toolstack writes ``mac`` in both directories and ``bridge`` in the backend's;
- hotplug (the ``vif-bridge`` script's part) finds the bridge and says
  ``hotplug-status`` = ``connected``;
- with InitWait the backend offers ``feature-sg``, ``feature-gso-tcpv4``,
  ``feature-rx-copy`` (and not ``feature-rx-flip``: page flipping is long gone),
  ``feature-split-event-channels`` and ``multi-queue-max-queues``;
- the frontend publishes, per queue, ``tx-ring-ref``, ``rx-ring-ref`` and
  ``event-channel`` (or ``event-channel-tx`` and ``event-channel-rx`` when the
  channels are split): at the top for one queue, under ``queue-<i>/`` with
  ``multi-queue-num-queues`` for several; and ``request-rx-copy``,
  ``feature-rx-notify``, ``feature-sg``, ``feature-gso-tcpv4``. Netfront goes
  straight to Connected, without Initialised.

No packets flow: the drivers stop where the rings would be mapped. Grant
references and ports are plain numbers (:class:`~xenstore.xenbus.drivers.Numbers`).
"""

from __future__ import annotations

import errno
import re
from collections.abc import Collection, Mapping

from xenstore.xenbus.backend import BackendDriver, HotplugError
from xenstore.xenbus.device import End, Value, XenbusError
from xenstore.xenbus.drivers import Numbers
from xenstore.xenbus.frontend import FrontendDriver
from xenstore.xenbus.rings import Queue, Ring
from xenstore.xenbus.state import XenbusState

#: How many queues the backend offers unless told (Linux: one per dom0 CPU).
DEFAULT_MAX_QUEUES = 4
#: The offloads each end announces, for the other to use.
OFFLOADS = ("feature-sg", "feature-gso-tcpv4")

_MAC = re.compile(rb"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}\Z")


def _unsigned(values: Mapping[str, bytes], name: str, default: int) -> int:
    """A node read as xenbus_read_unsigned does: the default if missing or malformed."""
    raw = values.get(name, b"")
    return int(raw) if raw.isdigit() else default


class Netback(BackendDriver):
    """dom0's end of a nic: ``vif<D>.<devid>`` on the toolstack's ``bridge``.

    ``bridges``: the bridges dom0 has (None: any name is taken on trust);
    ``max_queues``: ``multi-queue-max-queues``; ``split_event_channels``: whether
    to offer a channel per direction.
    """

    def __init__(self, end: End, *, bridges: Collection[str] | None = None,
                 max_queues: int = DEFAULT_MAX_QUEUES, split_event_channels: bool = True) -> None:
        super().__init__(end)
        self.bridges = bridges
        self.max_queues = max_queues
        self.split_event_channels = split_event_channels
        #: Learnt at hotplug.
        self.interface = f"vif{end.address.frontend_id}.{end.address.devid}"
        self.bridge: str | None = None
        self.mac: str | None = None
        #: While connected: the frontend's rings and the offloads it asked for.
        self.ring: Ring | None = None
        self.frontend_features: dict[str, bool] = {}

    async def hotplug(self) -> Mapping[str, Value]:
        vifname = await self.end.read_own("vifname")
        if vifname:
            self.interface = vifname.decode()
        mac = await self.end.read_own("mac")
        self.mac = mac.decode() if mac else None
        bridge = (await self.end.read_own("bridge") or b"").decode()
        if not bridge:  # vif-bridge then takes the first bridge it finds
            if not self.bridges:
                raise HotplugError("no bridge named, and none known to take instead")
            bridge = sorted(self.bridges)[0]
        elif self.bridges is not None and bridge not in self.bridges:
            raise HotplugError(f"no such bridge: {bridge}")
        self.bridge = bridge
        return {}  # vif-bridge writes only hotplug-status, which the library adds

    def features(self) -> Mapping[str, Value]:
        return {**dict.fromkeys(OFFLOADS, 1), "feature-rx-copy": 1, "feature-rx-flip": 0,
                "feature-split-event-channels": int(self.split_event_channels),
                "multi-queue-max-queues": self.max_queues}

    async def connect(self, ring: Ring) -> Mapping[str, Value]:
        # rings.net_ring checked the numbers and request-rx-copy; the rest is netback's.
        if len(ring.queues) > self.max_queues:
            raise XenbusError(f"{len(ring.queues)} queues asked for, more than the "
                              f"{self.max_queues} offered", errno.EINVAL)
        if not self.split_event_channels and any(len(q.event_channels) > 1
                                                 for q in ring.queues):
            raise XenbusError("split event channels were not offered", errno.EINVAL)
        front = await self.end.read_peer_many(("feature-rx-notify", *OFFLOADS))
        if front.get("feature-rx-notify") != b"1":
            # Without it netback could queue packets that nobody is told about.
            raise XenbusError("the frontend does not set feature-rx-notify", errno.EINVAL)
        self.frontend_features = {name: front.get(name) == b"1" for name in OFFLOADS}
        self.ring = ring
        return {}

    async def disconnect(self) -> None:
        self.ring = None


class Netfront(FrontendDriver):
    """The guest's end: :attr:`mac` from its own directory, and its rings.

    ``queues``: how many queues it wants, used up to the backend's
    ``multi-queue-max-queues``; ``grants`` and ``ports``: where the rings' grant
    references and event channels come from.
    """

    backend_features = ("feature-rx-copy", "feature-split-event-channels",
                        "multi-queue-max-queues", *OFFLOADS)
    published_state = XenbusState.Connected

    def __init__(self, end: End, *, queues: int = 1, grants: Numbers | None = None,
                 ports: Numbers | None = None) -> None:
        super().__init__(end)
        self.wanted_queues = queues
        self.grants = grants or Numbers.grant_refs()
        self.ports = ports or Numbers.ports()
        self.mac: str | None = None
        #: Per queue: (tx ring ref, rx ring ref) and its event channel(s).
        self.queues: tuple[Queue, ...] = ()
        #: The offloads the backend offered.
        self.offloads: dict[str, bool] = {}
        self.link_up = False

    async def ring_details(self, features: Mapping[str, bytes]) -> Mapping[str, Value]:
        if features.get("feature-rx-copy") != b"1":
            raise XenbusError("the backend cannot copy received packets (feature-rx-copy)",
                              errno.ENODEV)
        mac = await self.end.read_own("mac")
        if mac is None or not _MAC.match(mac):
            raise XenbusError(f"{self.end.own}/mac is not a MAC address: {mac!r}",
                              errno.EINVAL)
        self.mac = mac.decode()
        count = max(1, min(self.wanted_queues, _unsigned(features, "multi-queue-max-queues", 1)))
        split = features.get("feature-split-event-channels") == b"1"
        self.queues = tuple(Queue(self.grants.take(2), self.ports.take(2 if split else 1))
                            for _ in range(count))
        nodes: dict[str, Value] = {}
        for i, queue in enumerate(self.queues):
            # One queue keeps the old flat names, so that old backends understand it.
            prefix = "" if count == 1 else f"queue-{i}/"
            nodes[f"{prefix}tx-ring-ref"], nodes[f"{prefix}rx-ring-ref"] = queue.refs
            if split:
                (nodes[f"{prefix}event-channel-tx"],
                 nodes[f"{prefix}event-channel-rx"]) = queue.event_channels
            else:
                nodes[f"{prefix}event-channel"] = queue.event_channels[0]
        if count > 1:
            nodes["multi-queue-num-queues"] = count
        self.offloads = {name: features.get(name) == b"1" for name in OFFLOADS}
        return {**nodes, "request-rx-copy": 1, "feature-rx-notify": 1,
                **dict.fromkeys(OFFLOADS, 1)}

    async def connected(self, details: Mapping[str, bytes]) -> None:
        self.link_up = True

    async def disconnect(self) -> None:
        self.link_up = False
