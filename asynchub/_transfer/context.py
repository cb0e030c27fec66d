"""What every job of one engine shares: config, HTTP, the worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .._fs.mounts import write_cost
from ..config import HubConfig
from .assembler import BufferPool
from .hostconn import HostConnections
from .http import Http

__all__ = ("SLOW_STEP", "Context")

SLOW_STEP = 0.005
"""Seconds a file step may hold the loop thread before its folder's steps move to
worker threads (ext4 here: p99 of opening a partial 0.9 ms, of a rename 0.2 ms)."""

T = TypeVar("T")


class Context:
    """Shared services handed to each job by the :class:`~.engine.Engine`."""

    def __init__(
        self,
        config: HubConfig,
        http: Http,
        executor: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self.config = config
        self.http = http
        self.executor = executor
        self.buffers = BufferPool()
        self.written_folders: set[Path] = set()  # fsynced once, when the engine closes
        self._cost: dict[Path, str] = {}  # folder → its write_cost (see run_step)
        self._slow: set[Path] = set()  # disk folders whose steps must not block
        limits = config.limits
        self.hosts = HostConnections(  # connections per file, per host (the rule)
            min(limits.max_parts_per_file, limits.max_connections_per_host)
        )

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Start ``fn(*args)`` in a worker thread (blocking file I/O, hashing)."""
        return self.executor.submit(fn, *args)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in a worker thread and wait for it."""
        return await asyncio.wrap_future(self.submit(fn, *args))

    async def run_step(self, folder: Path, fn: Callable[..., T], *args: Any) -> T:
        """Run one short file step (open, or seal a small file) for ``folder``.

        A step without fsync takes microseconds, less than a hop to a worker
        thread and back, so on a memory or local disk file system it runs here,
        on the loop thread: on tmpfs that saved about 0.3 ms of CPU per file of a
        2,000-file mirror, on ext4 (with the fsync still in a worker,
        :meth:`run_sync`) 0.2-0.5 ms, mostly the GIL hand-offs of eight threads
        (10 context switches a file instead of 30-40). On a disk, a step that
        takes longer than :data:`SLOW_STEP` (a disk that stalls) sends every later
        step of that folder to a worker, so the loop stalls once per folder at
        most. Network and FUSE file systems, which can block for seconds, and
        systems where the kind is unknown always use workers (:meth:`run_to_end`).
        """
        cost = self._cost_of(folder)
        if cost == "memory":
            return fn(*args)
        if cost != "disk" or folder in self._slow:
            return await self.run_to_end(fn, *args)
        started = time.perf_counter()
        try:
            return fn(*args)
        finally:
            if time.perf_counter() - started > SLOW_STEP:
                self._slow.add(folder)

    async def run_sync(self, folder: Path, fn: Callable[..., T], *args: Any) -> T:
        """Run a step that may wait for the disk (fsync): in a worker, to its end,
        unless ``folder`` is on a memory file system (where fsync returns at once)."""
        if self._cost_of(folder) == "memory":
            return fn(*args)
        return await self.run_to_end(fn, *args)

    def inline(self, folder: Path) -> bool:
        """Whether :meth:`run_step` runs ``folder``'s steps on the loop thread."""
        cost = self._cost_of(folder)
        return cost == "memory" or (cost == "disk" and folder not in self._slow)

    def _cost_of(self, folder: Path) -> str:
        found = self._cost.get(folder)
        if found is None:  # once per folder: reading /proc takes microseconds
            found = self._cost[folder] = write_cost(folder)
        return found

    async def run_to_end(self, fn: Callable[..., T], *args: Any) -> T:
        """Like :meth:`run`, but a cancellation waits for ``fn`` to finish first.

        For steps whose result must not be lost (opening or committing a file):
        the cancellation is re-raised once the thread is done.
        """
        wrapped = asyncio.wrap_future(self.submit(fn, *args))
        try:
            return await asyncio.shield(wrapped)
        except asyncio.CancelledError:
            while not wrapped.done():
                try:
                    await asyncio.wait([wrapped])
                except asyncio.CancelledError:
                    continue
            if not wrapped.cancelled():
                wrapped.exception()  # retrieved: the cancellation wins
            raise
