"""What every job of one engine shares: config, HTTP, the worker threads."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import HubConfig
from .assembler import BufferPool
from .hostconn import HostConnections
from .http import Http

__all__ = ("Context",)

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
