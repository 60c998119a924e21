"""A guest's pace: how fast its writes are acted on, and how many log lines it may cause.

Both are token buckets per domain (cxenstored paces writes the same way, its
"wrl"). The clock is passed in, so this module needs no trio. Neither may ever
cost more than itself: should a bucket fail (a bug), the failure is logged, that
domain's bucket is dropped and made afresh next time, and the write goes ahead or
the line is logged unpaced: pacing is a courtesy, serving is not.
"""

from __future__ import annotations

import logging

from xenstore.daemon.ratelimit import TokenBucket

log = logging.getLogger("xenstore.daemon")

#: Log lines a guest may cause a second, and how many at once: beyond that its
#: lines are counted, and the count is logged with its next line.
GUEST_LOG_RATE = 5.0
GUEST_LOG_BURST = 20


class GuestPacing:
    """Each guest domain's write rate and log-line budget."""

    def __init__(self, write_rate: float, write_burst: int) -> None:
        self.write_rate = write_rate
        self.write_burst = write_burst
        self._writes: dict[int, TokenBucket] = {}
        #: Domains whose writes are being held (logged once a spell).
        self._throttled: set[int] = set()
        #: Per guest: its log line budget, and the lines it lost to it.
        self._lines: dict[int, tuple[TokenBucket, list[int]]] = {}

    def forget(self, domid: int) -> None:
        """The domain is gone: its buckets go too."""
        self._writes.pop(domid, None)
        self._throttled.discard(domid)
        self._lines.pop(domid, None)

    def write_wait(self, domid: int, now: float) -> float:
        """How long to hold ``domid``'s next write (0: act on it at once)."""
        try:
            bucket = self._writes.get(domid)
            if bucket is None:
                bucket = self._writes[domid] = TokenBucket(
                    self.write_rate, self.write_burst, now)
            wait = bucket.take(now)
        except Exception:
            log.exception("internal error in the write rate of domain %d; its writes go "
                          "unpaced until its rate is made afresh", domid)
            self._writes.pop(domid, None)
            return 0.0
        if wait <= 0:
            self._throttled.discard(domid)
        elif domid not in self._throttled:
            self._throttled.add(domid)
            log.info("domain %d: over its write rate (%g/s); holding its writes",
                     domid, bucket.rate)
        return wait

    def log(self, level: int, message: str, domid: int | None, now: float) -> None:
        """Log ``message``; a guest's lines within its budget (see GUEST_LOG_RATE)."""
        if domid is None:
            log.log(level, "%s", message)
            return
        try:
            entry = self._lines.get(domid)
            if entry is None:
                bucket = TokenBucket(GUEST_LOG_RATE, GUEST_LOG_BURST, now)
                entry = self._lines[domid] = (bucket, [0])
            bucket, dropped = entry
            if not bucket.try_take(now):
                dropped[0] += 1
                return
        except Exception:
            log.exception("internal error in the log budget of domain %d", domid)
            self._lines.pop(domid, None)
            log.log(level, "%s", message)
            return
        if dropped[0]:
            log.log(level, "%s (and %d more lines of domain %d not logged)",
                    message, dropped[0], domid)
            dropped[0] = 0
        else:
            log.log(level, "%s", message)
