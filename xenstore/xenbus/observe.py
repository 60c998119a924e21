"""Watching several nodes at once, and reading them together whenever any one changes.

A driver's decisions depend on a few nodes (its own ``state`` and ``online``,
the peer's ``state``); an :class:`Observer` keeps one watch on each and hands
out :class:`Snapshot` values read in one transaction after every change, so a
decision never mixes a node read before a change with one read after it. Bursts
of events coalesce: a driver busy with one step sees the latest values next,
not a replay of every intermediate one. Watches, never polls.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import trio

from xenstore import errors
from xenstore.aclient import AsyncClient, AsyncTransaction


class Snapshot(dict[str, "bytes | None"]):
    """The observed nodes' values (None: the node does not exist, or cannot be seen), by
    path."""


class Observer:
    """Snapshots of ``paths``; use :func:`observe` to get one."""

    def __init__(self, xs: AsyncClient, paths: Sequence[str]) -> None:
        self.xs = xs
        self.paths = list(paths)
        self._send, self._receive = trio.open_memory_channel[None](1)

    def _changed(self) -> None:
        with contextlib.suppress(trio.WouldBlock):  # one pending wake-up is enough
            self._send.send_nowait(None)

    async def _watch(self, path: str, task_status: trio.TaskStatus[None]) -> None:
        async with self.xs.watch(path) as events:
            task_status.started()
            async for _ in events:
                self._changed()

    async def snapshot(self) -> Snapshot:
        """The nodes as they are now, read in one transaction."""

        async def read_all(t: AsyncTransaction) -> Snapshot:
            values = Snapshot()
            for path in self.paths:
                try:
                    values[path] = await t.read(path)
                except (errors.ENOENT, errors.EACCES):
                    # EACCES: a node removed with its readable parent looks so to a guest.
                    values[path] = None
            return values

        return await self.xs.retry(read_all)

    async def next(self) -> Snapshot:
        """Wait for a change to any of the nodes (or the first look), then read them."""
        await self._receive.receive()
        return await self.snapshot()


@contextlib.asynccontextmanager
async def observe(xs: AsyncClient, paths: Sequence[str]) -> AsyncIterator[Observer]:
    """Watch ``paths`` while inside; the first :meth:`Observer.next` returns at once."""
    observer = Observer(xs, paths)
    async with trio.open_nursery() as nursery:
        for path in paths:
            await nursery.start(observer._watch, path)
        yield observer
        nursery.cancel_scope.cancel()

