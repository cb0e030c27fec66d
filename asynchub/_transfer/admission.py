"""Files in flight: at most ``limits.max_files``, the largest waiting file first.

When a mirror hands the engine hundreds of files at once, the order they start in
decides how the run ends: a big file started last keeps one connection busy long
after the rest are done (on a capped link, 10 MiB at 8 MiB/s is a 1.2 s tail).
Starting the largest first (longest-processing-time scheduling) leaves only small
files for the end. A file asks for a slot and is admitted on the next loop
iteration, so every file submitted together competes; one ``fetch`` alone waits
one iteration.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ("Admission",)


class Admission:
    """A semaphore that wakes its largest waiter first (ties: first come)."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._dispatch_pending = False

    @asynccontextmanager
    async def slot(self, size: int | None) -> AsyncIterator[None]:
        """Hold one slot for the body of the ``async with``."""
        await self._acquire(size or 0)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, size: int) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._waiting, (-size, next(self._order), waiter))
        if not self._dispatch_pending:
            self._dispatch_pending = True
            loop.call_soon(self._dispatch)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # admitted just as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        self._free += 1
        self._dispatch()

    def _dispatch(self) -> None:
        self._dispatch_pending = False
        while self._free > 0 and self._waiting:
            waiter = heapq.heappop(self._waiting)[2]
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(None)
                self._free -= 1
