"""The module API's default clients: one :class:`~asynchub.client.AsyncHub` per event
loop and configuration, shared by :mod:`asynchub.hub`'s functions and the module
mirror functions, so they all borrow one engine, one manifest store and one trust
gate (the composition root) instead of building their own.

A client made for a sync call (``run_prompting``) asks on stdin whether to trust an
unknown repo, as onnx.hub did; an async caller's client raises instead.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from . import _sync
from ._defaults import default_config
from ._transfer import FileStarted, ProgressCallback, ProgressEvent
from .client import AsyncHub, Confirm, prompt_stdin
from .config import HubConfig

__all__ = ("aclose", "default_client", "run_prompting")

P = ParamSpec("P")
T = TypeVar("T")
_prompting: ContextVar[bool] = ContextVar("asynchub_prompting", default=False)
_Key = tuple[HubConfig, bool]
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_Key, AsyncHub]]
_clients = weakref.WeakKeyDictionary()


async def default_client() -> AsyncHub:
    """This loop's default client for the current configuration."""
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    interactive = _prompting.get()
    key = (default_config(), interactive)
    client = per_loop.get(key)
    if client is None:
        for stale in [k for k in per_loop if k[0] != key[0]]:
            await per_loop.pop(stale).aclose()  # set_dir or the environment changed
        confirm: Confirm | None = prompt_stdin if interactive else None
        progress = _auto_progress() if key[0].progress_bars else None
        client = per_loop[key] = AsyncHub(key[0], confirm=confirm, progress=progress)
    return client


def _auto_progress() -> ProgressCallback:
    """Bars for downloads that take a while (see :mod:`asynchub._autoprogress`);
    rich is imported only when a download starts."""
    shown: list[ProgressCallback] = []

    def callback(event: ProgressEvent) -> None:
        if not shown:
            if not isinstance(event, FileStarted):
                return
            from ._autoprogress import AutoProgress

            shown.append(AutoProgress())
        shown[0](event)

    return callback


async def _with_prompt(
    fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    _prompting.set(True)  # only this task's context: the sync caller's call
    return await fn(*args, **kwargs)


def run_prompting(
    fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
) -> T:
    """Run an async twin from sync code, prompting on stdin for untrusted repos."""
    return _sync.run(_with_prompt, fn, *args, **kwargs)


async def aclose() -> None:
    """Close this loop's default clients (their HTTP sessions)."""
    per_loop = _clients.pop(asyncio.get_running_loop(), {})
    for client in per_loop.values():
        await client.aclose()
