"""Run asynchub's coroutines from synchronous code.

Every sync function of asynchub is a thin bridge over its async twin: it submits the
coroutine to one background event loop that lives in a daemon thread for the whole
process, and waits for the result. This works the same whether the caller's thread has
no event loop (scripts, the CLI) or is running one (a Jupyter cell): the caller's loop
is never re-entered (no ``nest_asyncio``, no ``run_until_complete`` on a loop we do not
own), and aiohttp sessions stay bound to the one loop that created them.

Ctrl-C while waiting cancels the coroutine, waits briefly for its cleanup (temporary
files removed or left resumable), then re-raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

__all__ = ("LoopThread", "run")

P = ParamSpec("P")
T = TypeVar("T")

_CLEANUP_GRACE = 10.0


class LoopThread:
    """One asyncio event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use (and again after a fork)."""
        with self._lock:
            if self._loop is None or not self._loop.is_running():
                self._loop = self._start()
            return self._loop

    def _start(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        loop.call_soon(ready.set)
        thread = threading.Thread(
            target=loop.run_forever, name="asynchub-loop", daemon=True
        )
        thread.start()
        ready.wait()
        return loop

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread, where waiting deadlocks."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def run(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``fn(*args, **kwargs)`` on the loop thread and return its result."""
        if self.in_loop_thread():
            raise RuntimeError(
                "asynchub's sync API was called from its own event loop; "
                "use the async twin (await hub.aload(...)) there"
            )
        finished = threading.Event()
        coro = _call(finished, fn, *args, **kwargs)
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            finished.wait(_CLEANUP_GRACE)  # let the cancelled task clean up first
            raise

    def shutdown(
        self, cleanup: Callable[[], Coroutine[Any, Any, None]], timeout: float
    ) -> None:
        """Run ``cleanup`` on the running loop, then stop it (at interpreter exit)."""
        loop = self._loop
        if loop is None or not loop.is_running():
            return
        with contextlib.suppress(Exception):  # exiting anyway: never mask the exit
            asyncio.run_coroutine_threadsafe(cleanup(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)

    def reset_after_fork(self) -> None:
        """Forget the parent's loop: a forked child has no thread running it."""
        self._loop = None
        self._lock = threading.Lock()


async def _call(
    finished: threading.Event,
    fn: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    try:
        return await fn(*args, **kwargs)
    finally:
        finished.set()


_DEFAULT = LoopThread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_DEFAULT.reset_after_fork)


def run(fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run an async function to completion from sync code, with or without a loop."""
    return _DEFAULT.run(fn, *args, **kwargs)


def default_loop() -> LoopThread:
    """The process-wide loop thread that sync calls run on."""
    return _DEFAULT
