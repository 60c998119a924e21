"""``XenbusState``: where each end of a split device is in its handshake.

Each end writes its own state to the ``state`` node under its own directory
(the frontend under ``/local/domain/<D>/device/<type>/<devid>``, the backend
under ``/local/domain/<B>/backend/<type>/<D>/<devid>``) and watches the other
end's. The numbers and names are Xen's (``xen/include/public/io/xenbus.h``).
"""

from __future__ import annotations

import enum


class XenbusState(enum.IntEnum):
    """The state of one end of a device, as written (in decimal) to its ``state`` node."""

    #: Nothing written yet, or the node is gone: the end does not exist (yet).
    Unknown = 0
    #: Written by the toolstack for both ends when it creates the device; an end
    #: stays here while its driver sets itself up.
    Initialising = 1
    #: Set by the backend once its early set-up is done (hotplug ran, features
    #: published): it waits for the frontend's ring details.
    InitWait = 2
    #: Set by the frontend once its ring details are published: it waits for the
    #: backend to connect to them.
    Initialised = 3
    #: Set by the backend once it has mapped the frontend's ring and published its
    #: connect details; then by the frontend once it has read them. Devices work.
    Connected = 4
    #: Set by either end to tear the device down (an unplug, an error, ``online``
    #: going to 0): the other end should close too.
    Closing = 5
    #: Set by each end once it has let go of the ring: the device may be removed
    #: (the toolstack removes the directories), or set up again from Initialising.
    Closed = 6
    #: Set by the frontend (network devices) to ask for a reconfiguration.
    Reconfiguring = 7
    #: Set by the backend once a reconfiguration is done.
    Reconfigured = 8

    @classmethod
    def parse(cls, raw: bytes | str | None) -> XenbusState:
        """The state in a ``state`` node's value; Unknown for a missing or odd value,
        as Linux's xenbus_read_driver_state treats them."""
        if raw is None:
            return cls.Unknown
        text = raw.decode("ascii", "replace") if isinstance(raw, bytes) else raw
        try:
            return cls(int(text.strip()))
        except ValueError:
            return cls.Unknown

    def encoded(self) -> bytes:
        """The value written to a ``state`` node."""
        return b"%d" % self.value
