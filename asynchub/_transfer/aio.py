"""Small asyncio helpers (aiohttp ties the engine to asyncio anyway)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Coroutine, Iterable
from typing import Any

__all__ = ("drain", "gather_or_cancel")


async def gather_or_cancel(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines concurrently; on the first failure cancel the rest and re-raise.

    Unlike ``asyncio.gather`` no task is left running when this returns or raises,
    also when the caller itself is cancelled.
    """
    coros = list(coros)
    if len(coros) == 1:  # the common case (one request per file): no task needed
        await coros[0]
        return
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await _settle(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def _settle(tasks: list[asyncio.Task[None]]) -> None:
    """Wait until every task has finished, even if we are cancelled meanwhile."""
    pending = [task for task in tasks if not task.done()]
    cancelled = False
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = [task for task in pending if not task.done()]
    if cancelled:
        raise asyncio.CancelledError


async def drain(futures: set[concurrent.futures.Future[Any]]) -> None:
    """Wait for thread-pool work still running (writes) before a file is closed."""
    cancelled = False
    while futures:
        wrapped = [asyncio.wrap_future(f) for f in futures]
        try:
            await asyncio.wait(wrapped)
        except asyncio.CancelledError:
            cancelled = True
        for future in wrapped:
            if future.done() and not future.cancelled():
                future.exception()  # reported where it was awaited first
        futures.difference_update({f for f in futures if f.done()})
    if cancelled:
        raise asyncio.CancelledError
