"""Faults injected on purpose, so that tests can exercise clients' retry and error paths.

A daemon started with ``--faults`` accepts the CONTROL command ``fault``
(``xenstore-control fault ...``); any other daemon refuses it with EACCES, so
a production daemon never fails a request on purpose. Three faults can be
armed, and each bites at one place:

- ``eagain N [DOMID]``: the next N commits (TRANSACTION_END T), of any
  connection or only of domain DOMID's, fail with EAGAIN where the conflict
  check would refuse them: the transaction is aborted, as a real conflict
  aborts it, and the refusal shows in CONTROL ``conflicts``. Read-only
  transactions count too (cxenstored may refuse those); aborts (F) do not.
  A domain's own count is used before the count for anyone's.
- ``write-errno PATH ERRNO``: WRITE, MKDIR, RM and SET_PERMS of PATH or of a
  node below it (whole components: ``/a/b`` covers ``/a/b/c``, not
  ``/a/bc``) answer ERRNO (any xs_wire.h name) once the path is read, before
  the tree is looked at, and change nothing. Inside a transaction the op itself fails, as a
  permission refusal would, not the commit; the transaction stays open. The
  op's own path decides: removing an ancestor of PATH is not refused. The
  longest armed PATH wins; ``write-errno PATH off`` disarms one.
- ``event-delay SECONDS``: every watch event is delivered that much later than
  it would be, in order among the events; replies are not held, so a reply
  can overtake an event, as with a slow daemon. The core has no clock: it
  hands the delay to the shell (:class:`~xenstore.daemon.effects.DelayEvents`),
  which holds the events (:mod:`xenstore.daemon.delayed`). The delay applies to
  events made from then on; those held already keep their time.

``fault clear`` disarms everything, and ``fault`` alone lists what is armed,
one command per line (each could be sent again to arm the same).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from xenstore import errors, paths
from xenstore.daemon.domains import parse_domid, parse_number
from xenstore.daemon.effects import DelayEvents, Effect
from xenstore.daemon.replies import OK, newest_that_fit
from xenstore.errors import EACCES, EINVAL, XenStoreError

USAGE = (
    "fault [eagain <n> [<domid>] | write-errno <path> <errno>|off | "
    "event-delay <seconds> | clear]"
)


@dataclass(slots=True)
class Faults:
    """The faults armed in one :class:`~xenstore.daemon.core.Server` (none by default)."""

    #: Whether CONTROL ``fault`` may arm any (the daemon's ``--faults``).
    enabled: bool = False
    #: Commits still to refuse, by the domain whose commits they are (None: anyone's).
    eagain: dict[int | None, int] = field(default_factory=dict)
    #: The error for write-like ops at or below a path, by that path.
    write_errnos: dict[str, type[XenStoreError]] = field(default_factory=dict)
    #: How late watch events are delivered, in seconds (the shell applies it).
    event_delay: float = 0.0

    def refuse_commit(self, domid: int) -> bool:
        """Whether a commit of ``domid``'s must fail now; counts it if so."""
        for key in (domid, None):
            left = self.eagain.get(key, 0)
            if left:
                if left == 1:
                    del self.eagain[key]
                else:
                    self.eagain[key] = left - 1
                return True
        return False

    def write_error(self, path: str) -> XenStoreError | None:
        """The error armed for a write-like op on the canonical ``path``, if any."""
        armed = self.write_errnos
        # Walking up from the path finds whole components only, the longest first.
        while True:
            error = armed.get(path)
            if error is not None:
                return error(f"{path}: injected by CONTROL fault write-errno")
            if path == paths.ROOT:
                return None
            path = paths.parent(path)

    def lines(self) -> list[str]:
        """What is armed, as the commands that would arm it."""
        lines = [
            f"eagain {count}" + ("" if domid is None else f" {domid}")
            for domid, count in self.eagain.items()
        ]
        lines += [f"write-errno {path} {error.name}" for path, error in self.write_errnos.items()]
        if self.event_delay:
            lines.append(f"event-delay {self.event_delay:g}")
        return lines

    def clear(self) -> None:
        """Disarm every fault."""
        self.eagain.clear()
        self.write_errnos.clear()
        self.event_delay = 0.0

    def command(self, args: list[bytes], effects: list[Effect]) -> bytes:
        """CONTROL ``fault ARGS``: the reply; EACCES without ``--faults``, EINVAL if malformed."""
        if not self.enabled:
            raise EACCES("faults are injected only by a daemon started with --faults")
        if not args:
            return newest_that_fit(self.lines(), lambda count: f"({count} earlier faults left out)")
        kind, rest = args[0], args[1:]
        if kind == b"eagain" and len(rest) in (1, 2):
            count = parse_number(rest[0])
            domid = parse_domid(rest[1], allow_zero=True) if len(rest) == 2 else None
            if count:
                self.eagain[domid] = count
            else:
                self.eagain.pop(domid, None)
        elif kind == b"write-errno" and len(rest) == 2:
            path = rest[0].decode("latin-1")
            if not path.startswith("/"):
                raise EINVAL(f"write-errno needs an absolute path, not {path!r}")
            path = paths.canonical(path, 0, 0)
            name = rest[1].decode("latin-1")
            if name == "off":
                self.write_errnos.pop(path, None)
            elif name.upper() in errors.BY_NAME:
                self.write_errnos[path] = errors.BY_NAME[name.upper()]
            else:
                raise EINVAL(f"no errno named {name!r} in xs_wire.h")
        elif kind == b"event-delay" and len(rest) == 1:
            self.event_delay = _seconds(rest[0])
            effects.append(DelayEvents(self.event_delay))
        elif kind == b"clear" and not rest:
            self.clear()
            effects.append(DelayEvents(0.0))
        else:
            raise EINVAL(USAGE)
        return OK


def _seconds(text: bytes) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise EINVAL(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise EINVAL(f"not a delay: {text!r}")
    return seconds
