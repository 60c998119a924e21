"""xenconsoled's part: every guest's primary console, read from its ring into a log.

The domain builder (the host) grants the console page and opens its event channel
when it creates a domain, as Xen's builder does; this daemon maps the page,
binds the channel, keeps what the guest printed (the last :data:`KEEP` bytes, as
a terminal's scrollback) and hands new output to whoever is attached
(``pyxl console``), whose keystrokes go back into the ring.
"""

from __future__ import annotations

import contextlib
import math

import trio

from xenstore.xenbus.drivers.console import ConsoleRing
from xenstore.xenbus.hypervisor import EventChannel, Hypervisor

#: How much of a console's output is kept for a late ``pyxl console``.
KEEP = 64 * 1024


class ConsoleLog:
    """One guest's console as dom0 sees it."""

    def __init__(self, ring: ConsoleRing, channel: EventChannel) -> None:
        self.ring = ring
        self.channel = channel
        self.scrollback = bytearray()
        self._watchers: list[trio.MemorySendChannel[bytes]] = []

    async def serve(self) -> None:
        """Read the guest's output until cancelled."""
        try:
            while True:
                data = self.ring.take(outward=True)
                if data:
                    self.channel.notify()  # room again for the guest
                    self.scrollback += data
                    del self.scrollback[:-KEEP]
                    for watcher in list(self._watchers):
                        try:
                            watcher.send_nowait(data)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            self._watchers.remove(watcher)
                await self.channel.wait()
        finally:
            self.close()

    def attach(self) -> trio.MemoryReceiveChannel[bytes]:
        """New output from now on (the scrollback is in :attr:`scrollback`)."""
        send, receive = trio.open_memory_channel[bytes](math.inf)
        self._watchers.append(send)
        return receive

    def type_in(self, data: bytes) -> None:
        """Keystrokes for the guest; what does not fit in its ring is dropped, as a
        real console drops input the guest does not read."""
        self.ring.put(data, outward=False)
        self.channel.notify()

    def close(self) -> None:
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()
        with contextlib.suppress(Exception):
            self.channel.close()
        with contextlib.suppress(Exception):
            self.ring.page.close()


def open_console(hypervisor: Hypervisor, domid: int, ref: int, port: int) -> ConsoleLog:
    """Map ``domid``'s console page ``ref`` and bind its channel ``port`` (dom0's side)."""
    return ConsoleLog(ConsoleRing(hypervisor.map_grant(domid, ref)),
                      hypervisor.bind_interdomain(domid, port))
