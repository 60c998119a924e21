"""What the hot loop needs to know of trio's own run loop, and may only learn privately.

To answer a request without a trio wake-up (~6 µs of the ~13 a READ cost when
every request went through one), the hot loop (:mod:`~xenstore.daemon.hotloop`)
blocks in its own ``epoll_wait`` while trio has nothing else to do. That is
only correct if it learns at once when trio does have something to do again:

- trio's epoll descriptor goes into the hot loop's epoll, so that any I/O trio
  waits for (an accept, a writable socket, a signal, a thread's
  ``run_sync_soon``) ends the hot loop's wait;
- trio's run queue is checked after each round: the round may have woken a task
  (an event set, a writer task started, a scope cancelled);
- another task waiting for trio to be idle (``trio.testing.wait_all_tasks_blocked``
  in a test) would wait for ever while the hot loop blocks in trio's stead, so
  the hot loop leaves the waiting to trio while there is one.

Neither is public trio API. :func:`probe` finds both, or returns None when this
trio does not have them where 0.25 to 0.35 keep them (another version, another
I/O backend, or a test's mock clock, whose deadlines are not the wall clock's);
the hot loop then waits through trio every time, which is always correct, only
slower. (And, public, what CONTROL memreport tells of trio: :func:`count_tasks`.)
"""

from __future__ import annotations

import select
from collections.abc import Awaitable, Callable, Sized
from dataclasses import dataclass

import trio

__all__ = ["RunLoop", "count_tasks", "probe"]


@dataclass(frozen=True, slots=True)
class RunLoop:
    """The parts of trio's running loop the hot loop watches."""

    #: trio's epoll descriptor: readable when trio has I/O to act on.
    epoll_fd: int
    #: trio's queue of runnable tasks (a deque): not empty when a task is waiting to run.
    runq: Sized
    #: Tasks in ``wait_all_tasks_blocked`` (tests'): they need trio's loop to see it idle.
    idle_waiters: Sized
    #: ``wait_all_tasks_blocked`` itself, taken from where trio defines it: importing
    #: ``trio.testing``, which re-exports it, costs the daemon 10 MiB of memory.
    wait_idle: Callable[[float], Awaitable[None]]


def probe() -> RunLoop | None:
    """trio's epoll descriptor and run queue, when this trio is known to keep them."""
    try:
        from trio._core._run import GLOBAL_RUN_CONTEXT, SystemClock, wait_all_tasks_blocked

        runner = GLOBAL_RUN_CONTEXT.runner
        epoll = runner.io_manager._epoll
        runq = runner.runq
        idle_waiters = runner.waiting_for_idle
        clock = runner.clock
    except (ImportError, AttributeError, RuntimeError):
        return None
    epoll_type = getattr(select, "epoll", None)
    if epoll_type is None or not isinstance(epoll, epoll_type):
        return None
    if (type(clock) is not SystemClock or not isinstance(runq, Sized)
            or not isinstance(idle_waiters, Sized)):
        return None
    return RunLoop(epoll.fileno(), runq, idle_waiters, wait_all_tasks_blocked)


def count_tasks() -> int:
    """The trio tasks running in this process (0 outside trio)."""
    try:
        root = trio.lowlevel.current_root_task()
    except RuntimeError:
        return 0
    count, tasks = 0, [root] if root is not None else []
    while tasks:
        task = tasks.pop()
        count += 1
        for nursery in task.child_nurseries:
            tasks.extend(nursery.child_tasks)
    return count
