"""Retrying a transaction on EAGAIN, with a bounded, jittered back-off.

A commit that fails with EAGAIN means another client changed something the
transaction read; the remedy is to run the whole transaction again. Retrying
at once invites the same collision, so attempts are spaced by a capped,
jittered exponential back-off ("full jitter": a uniform delay between zero and
the cap of that round), and bounded: after ``attempts`` failures the last
EAGAIN is raised.

The blocking and trio clients both take their back-off schedule from here.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # both cost the tools' start-up, which never retries
    import random
    from collections.abc import Iterator

ATTEMPTS = 50
BASE_DELAY = 0.001
MAX_DELAY = 0.25


def backoff(
    attempts: int = ATTEMPTS,
    base: float = BASE_DELAY,
    cap: float = MAX_DELAY,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """The delays to sleep between ``attempts`` tries (one fewer than the tries)."""
    if rng is None:
        import random

        rng = random.Random()
    for attempt in range(attempts - 1):
        yield rng.uniform(0, min(cap, base * (2**attempt)))
