"""The engine: one per client, shared by every download it makes.

It owns the worker threads that write and hash, a cap on files in flight (largest
first, see :mod:`._admission`), its network half (:mod:`.network`: one aiohttp
session with total and per-host connection caps, opened on the first request that
needs it), and the in-process dedupe:
concurrent :meth:`Engine.fetch` calls for the same ``dest`` share one download, which
is cancelled only when every caller has given up on it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from ..config import HubConfig
from ..errors import AsyncHubError, TransferError
from .admission import Admission
from .local import read_local
from .netenv import NetEnv
from .partial import fsync_dir
from .revalidate import revalidate
from .spec import (
    BytesResponse,
    FileFailed,
    FileResult,
    FileSpec,
    FileStarted,
    FileVerified,
    ProgressCallback,
    ProgressEvent,
)

if TYPE_CHECKING:
    from .context import Context
    from .network import Network

__all__ = ("WORKER_THREADS", "Engine")

_log = logging.getLogger("asynchub")

T = TypeVar("T")

WORKER_THREADS = 8
"""Threads that write and hash (hashlib and file I/O release the GIL)."""


class _Flight:
    """One download in progress and everyone waiting for it."""

    def __init__(self, spec: FileSpec) -> None:
        self.spec = spec
        self.callbacks: list[ProgressCallback] = []
        self.waiters = 0
        self.started: FileStarted | None = None
        self.task: asyncio.Task[FileResult] | None = None

    def same_file(self, spec: FileSpec) -> bool:
        return (spec.sha256, spec.size) == (self.spec.sha256, self.spec.size)

    def emit(self, event: ProgressEvent) -> None:
        if isinstance(event, FileStarted):
            self.started = event
        for callback in list(self.callbacks):
            try:
                callback(event)
            except Exception:  # a broken progress bar must not break a download
                _log.exception("asynchub progress callback failed")


class Engine:
    """Downloads files to verified destinations; use as an async context manager.

    Example::

        async with Engine(HubConfig()) as engine:
            result = await engine.fetch(FileSpec(urls, dest, sha256, size))
    """

    def __init__(self, config: HubConfig | None = None) -> None:
        self.config = config if config is not None else HubConfig()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._env: NetEnv | None = None
        self._net: Network | None = None
        self._flights: dict[str, _Flight] = {}
        self._files = Admission(self.config.limits.max_files)

    async def __aenter__(self) -> Engine:
        executor = concurrent.futures.ThreadPoolExecutor(
            WORKER_THREADS, thread_name_prefix="asynchub-io"
        )
        loop = asyncio.get_running_loop()
        self._env = await loop.run_in_executor(executor, NetEnv.read)
        self._executor = executor
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tasks = [f.task for f in self._flights.values() if f.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        net, executor = self._net, self._executor
        self._net = self._executor = None
        if net is not None:
            await net.close()
            await self._sync_folders(net.ctx)
        if executor is not None:
            executor.shutdown(wait=True)

    async def _sync_folders(self, ctx: Context) -> None:
        """Make the renames of this engine's files durable: one fsync per folder."""
        folders, ctx.written_folders = ctx.written_folders, set()
        if folders:
            done = ctx.submit(_fsync_dirs, sorted(folders))
            await _wait_quietly(asyncio.wrap_future(done))

    @property
    def ctx(self) -> Context:
        """The downloads' shared context (opens the network half if need be)."""
        return self._network().ctx

    def _network(self) -> Network:
        if self._net is None:
            if self._executor is None or self._env is None:
                raise RuntimeError("use the Engine inside 'async with Engine(...)'")
            from .network import Network  # aiohttp: only once a request needs it

            self._net = Network(self.config, self._env, self._executor)
        return self._net

    async def file_step(self, folder: Path, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)``, a short file step in ``folder``, where the engine runs
        its own: on the loop thread on a memory file system, else in a worker, to
        its end even when cancelled (``Context.run_step``)."""
        return await self.ctx.run_step(folder, fn, *args)

    # files --------------------------------------------------------------
    async def fetch(
        self, spec: FileSpec, progress: ProgressCallback | None = None
    ) -> FileResult:
        """Download ``spec`` to ``spec.dest`` verified; see the package docs."""
        if not spec.urls:
            raise TransferError(f"no URL given for {spec.label or spec.dest}")
        key = os.path.abspath(spec.dest)
        flight = self._flights.get(key)
        while flight is not None and not flight.same_file(spec):
            await asyncio.wait([flight.task]) if flight.task else None
            flight = self._flights.get(key)
        if flight is None:
            flight = self._start(key, spec)
        return await self._join(flight, progress)

    def _start(self, key: str, spec: FileSpec) -> _Flight:
        flight = _Flight(spec)
        task = asyncio.create_task(self._run(flight))
        flight.task = task
        self._flights[key] = flight

        def forget(_: object) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning

        task.add_done_callback(forget)
        return flight

    async def _join(
        self, flight: _Flight, progress: ProgressCallback | None
    ) -> FileResult:
        assert flight.task is not None
        if progress is not None:
            flight.callbacks.append(progress)
            if flight.started is not None:
                progress(flight.started)
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task)
        except asyncio.CancelledError:
            if flight.waiters == 1 and not flight.task.done():
                flight.task.cancel()
                await _wait_quietly(flight.task)
            raise
        finally:
            flight.waiters -= 1
            if progress is not None:
                flight.callbacks.remove(progress)

    async def _run(self, flight: _Flight) -> FileResult:
        spec = flight.spec
        async with self._files.slot(spec.size):
            flight.emit(FileStarted(spec.label, spec.dest, spec.size))
            try:
                result = await self._network().fetch(spec, flight.emit)
            except AsyncHubError as err:
                flight.emit(FileFailed(spec.label, err))
                raise
        flight.emit(FileVerified(spec.label, result))
        return result

    # small bodies -------------------------------------------------------
    async def get_bytes(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> BytesResponse:
        """GET a small body (a manifest) into memory, with retries.

        Returns for 200, 206 (when a Range was asked), 304, 404 and 410; raises a
        TransferError subclass for any other status (after retries when it is
        retryable) and when the body is larger than ``max_bytes`` (default
        ``limits.max_manifest_bytes``).
        """
        limit = max_bytes if max_bytes is not None else self._manifest_cap()
        if url.startswith("file:"):
            done = self._pool().submit(read_local, url, limit)
            return await asyncio.wrap_future(done)
        env = self._revalidating(headers)
        if env is not None:
            answer = await revalidate(url, headers or {}, env, self.config)
            if answer is not None:
                return answer
        return await self._network().get_bytes(url, headers, limit)

    def _revalidating(self, headers: Mapping[str, str] | None) -> NetEnv | None:
        """The environment for :mod:`.revalidate` when a conditional GET comes
        before the session is open, else None (always None offline: Http refuses
        every request then)."""
        if self._net is not None or self.config.offline or not _conditional(headers):
            return None
        return self._env

    def _manifest_cap(self) -> int:
        return int(self.config.limits.max_manifest_bytes)

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._executor is None:
            raise RuntimeError("use the Engine inside 'async with Engine(...)'")
        return self._executor


def _conditional(headers: Mapping[str, str] | None) -> bool:
    return any(k.lower() == "if-none-match" for k in (headers or {}))


def _fsync_dirs(folders: list[Path]) -> None:
    for folder in folders:
        fsync_dir(folder)


async def _wait_quietly(task: asyncio.Future[Any]) -> None:
    """Wait for a cancelled task's cleanup, absorbing further cancellations."""
    while not task.done():
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            continue
