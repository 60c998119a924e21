"""Supervision: a part of the daemon that fails is logged and started afresh.

Only a connection's own reader may end with its connection. Every other task the
daemon runs (dom0's and each guest's accept loop, signal handling) runs under
:func:`supervised`: an unexpected error is logged at ERROR with its traceback
and costs that part alone, which is started again (after a pause that grows
while it keeps failing) for as long as it should still exist. Cancellation is
not an error: it passes through untouched, so shutdown and RELEASE stay quick.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

log = logging.getLogger("xenstore.daemon")

#: The first pause before a failed part is started again, and the longest.
RESTART_DELAY = 0.05
RESTART_DELAY_MAX = 5.0


async def supervised(
    what: str,
    part: Callable[[], Awaitable[None]],
    *,
    again: Callable[[], bool] = lambda: True,
) -> None:
    """Run ``part`` until it returns; restart it after each unexpected error while
    ``again()`` says it should still exist. ``what`` names it in the log."""
    delay = RESTART_DELAY
    while True:
        try:
            await part()
            return
        except Exception:
            # trio.Cancelled is a BaseException: it is never caught here.
            log.exception("internal error in %s", what)
        if not again():
            log.error("%s is not started again: it is no longer needed", what)
            return
        log.error("%s starts again in %.2f s", what, delay)
        await trio.sleep(delay)
        delay = min(delay * 2, RESTART_DELAY_MAX)
        if not again():
            return
