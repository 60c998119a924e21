"""Example split drivers, each a backend (dom0) and a frontend (the guest), short enough to read.

- :mod:`.block`: a virtual disk (``vbd``), as Linux's blkback and blkfront;
- :mod:`.net`: a virtual network interface (``vif``), as netback and netfront;
- :mod:`.console`: a PV console over a real ring (:mod:`~xenstore.xenbus.hypervisor`).

The block and network drivers play the store's side of their devices only: the
numbers a frontend publishes for its rings (grant references) and event channels
(ports) come from :class:`Numbers`, plain integers that nothing maps. Xen would
hand them out; here they only have to look like what Xen hands out.
"""

from __future__ import annotations

import itertools

#: Linux keeps grant references 0..7 for itself (GNTTAB_NR_RESERVED_ENTRIES in
#: Xen's grant_table.h: the console's and xenstore's pages among them).
FIRST_GRANT_REF = 8
#: Event-channel port 0 is never a valid port.
FIRST_PORT = 1


class Numbers:
    """Fresh integers from ``first`` up: a stand-in for a guest's grant references or
    event-channel ports. Share one between a guest's drivers for numbers unique in it,
    as its grant table and channels are."""

    def __init__(self, first: int) -> None:
        self._next = itertools.count(first)

    def take(self, count: int = 1) -> tuple[int, ...]:
        """``count`` numbers never handed out before by this allocator."""
        return tuple(next(self._next) for _ in range(count))

    @classmethod
    def grant_refs(cls) -> Numbers:
        """An allocator of grant references, starting where a guest's grant table does."""
        return cls(FIRST_GRANT_REF)

    @classmethod
    def ports(cls) -> Numbers:
        """An allocator of event-channel ports."""
        return cls(FIRST_PORT)
