"""Watch events held back on purpose (CONTROL ``fault event-delay``), then delivered.

A test daemon can deliver every watch event some seconds later than it would,
so that a client's handling of a slow daemon is exercised: a reply may then
overtake an event. The core only says how late (the
:class:`~xenstore.daemon.effects.DelayEvents` effect); holding and delivering
is I/O and time, so it lives in the shell.

Events keep their order: each is due at ``max(now + delay, the last one's due
time)``, so one queue, delivered from its head, never lets a later event
overtake an earlier one, even when the delay is shortened or switched off
while some are held (events made meanwhile wait behind those). An event whose
connection has closed by its time is dropped, as any Send to a closed
connection is.

Held events are not bounded by the output limits until they are delivered: a
fault for tests, never armed on a production daemon.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import trio

from xenstore.daemon.effects import Send
from xenstore.daemon.supervision import supervised


class DelayedEvents:
    """The shell's held watch events and the task that delivers them when due."""

    def __init__(self, deliver: Callable[[list[Send]], None]) -> None:
        #: Carries out events whose time has come (the shell's normal Send path).
        self._deliver = deliver
        #: Where the delivering task runs; None outside a serving shell.
        self.nursery: trio.Nursery | None = None
        #: How late events made from now on are delivered, in seconds.
        self.delay = 0.0
        #: Whether Sends of events must come here: a delay is set, or some are held
        #: (events must not overtake those). A plain attribute: read for every Send.
        self.active = False
        self._held: deque[tuple[float, Send]] = deque()
        self._delivering = False

    def __len__(self) -> int:
        return len(self._held)

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds
        self.active = bool(seconds or self._held)

    def hold(self, event: Send) -> None:
        """Deliver ``event`` (a WATCH_EVENT Send) after the delay, behind those held."""
        if self.nursery is None:  # nowhere to wait: no delay is possible
            self._deliver([event])
            return
        due = trio.current_time() + self.delay
        if self._held:
            due = max(due, self._held[-1][0])
        self._held.append((due, event))
        self.active = True
        if not self._delivering:
            self._delivering = True
            self.nursery.start_soon(self._run)

    def discard(self, conn_id: int) -> None:
        """Forget the events held for ``conn_id`` (its output was reset)."""
        held = self._held
        if any(event.conn_id == conn_id for _, event in held):
            kept = [item for item in held if item[1].conn_id != conn_id]
            held.clear()  # in place: the delivering task holds this very deque
            held.extend(kept)
            self.active = bool(self.delay or held)

    async def _run(self) -> None:
        try:
            # A bug in delivering costs the events it was delivering, never the daemon.
            await supervised("the delivery of delayed watch events", self._deliver_due,
                             again=lambda: bool(self._held))
        finally:
            self._delivering = False

    async def _deliver_due(self) -> None:
        held = self._held
        while held:
            await trio.sleep_until(held[0][0])
            now = trio.current_time()
            due: list[Send] = []
            # Taken off the queue before delivery, so that one that fails is not retried.
            while held and held[0][0] <= now:
                due.append(held.popleft()[1])
            self.active = bool(self.delay or held)
            if due:  # none when those it waited for were discarded
                self._deliver(due)
