"""What the core asks the shell to do: it never does I/O itself."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from xenstore.protocol.codec import Packet


class Send(NamedTuple):
    """Write ``packet`` to connection ``conn_id`` (a reply or a watch event)."""

    conn_id: int
    packet: Packet


class Close(NamedTuple):
    """Close connection ``conn_id``; ``reason`` goes to the log."""

    conn_id: int
    reason: str


class Log(NamedTuple):
    """A line for the daemon's log, at a :mod:`logging` level (WARNING by default).

    ``domid``: the guest whose request caused the line. A guest can cause lines as
    fast as it can send requests, so the shell rate-limits each guest's lines.
    """

    message: str
    level: int = 30
    domid: int | None = None


class Listen(NamedTuple):
    """Open the socket of an introduced domain (``--domain-dir``/<domid>)."""

    domid: int


class Unlisten(NamedTuple):
    """Remove the socket of a released domain."""

    domid: int


class DiscardOutput(NamedTuple):
    """Drop what connection ``conn_id`` was given but has not been sent yet.

    A re-INTRODUCE resets a domain's connections as cxenstored resets its ring.
    The rest of a packet already partly written still goes, so the stream
    stays whole; what the kernel holds is the client's already.
    """

    conn_id: int


class TraceFile(NamedTuple):
    """CONTROL logfile/log: trace to ``path`` from now on (None: stop tracing)."""

    path: str | None


class DelayEvents(NamedTuple):
    """CONTROL fault event-delay: deliver watch events ``seconds`` late from now on
    (0: on time again). The shell holds them: the core has no clock."""

    seconds: float


class WriteReport(NamedTuple):
    """CONTROL memreport FILE: write ``text`` to ``path`` (the core does no I/O)."""

    path: str
    text: str


class WriteSnapshot(NamedTuple):
    """CONTROL snapshot FILE: write the migration stream ``data`` to ``path``."""

    path: str
    data: bytes


class ExecLiveUpdate(NamedTuple):
    """CONTROL live-update -s: once the reply (OK) to ``conn_id`` is queued, write the
    state dump and exec ``filename`` (``cmdline``: its arguments, None for ours);
    ``transactions``: forced (``-F``) with transactions open, which the dump carries."""

    conn_id: int
    filename: str
    cmdline: str | None
    transactions: bool = False


Effect = (Send | Close | Log | Listen | Unlisten | DiscardOutput | TraceFile | DelayEvents
          | WriteReport | WriteSnapshot | ExecLiveUpdate)


class Outbox:
    """Where a request's effects go, in order: the one way out of the core.

    Handlers and the concerns they call put effects here; :attr:`after_reply` holds
    those that must follow the reply (a new watch's first event, a release's
    clean-up), which :meth:`~xenstore.daemon.core.Server.handle` appends after it.
    """

    __slots__ = ("after_reply", "effects")

    def __init__(self) -> None:
        self.effects: list[Effect] = []
        self.after_reply: list[Effect] = []

    def add(self, effect: Effect) -> None:
        self.effects.append(effect)

    def extend(self, effects: Iterable[Effect]) -> None:
        self.effects.extend(effects)

    def log(self, message: str, level: int = 30, domid: int | None = None) -> None:
        self.effects.append(Log(message, level, domid))
