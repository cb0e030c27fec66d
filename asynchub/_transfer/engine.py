"""The engine: one per client, shared by every download it makes.

It owns one aiohttp session (total and per-host connection caps), the worker
threads that write and hash, a cap on files in flight (largest first, see
:mod:`._admission`), and the in-process dedupe:
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
from typing import Any, TypeVar

import aiohttp

from ..config import HubConfig
from ..errors import AsyncHubError, TransferError, UnexpectedContentError
from .admission import Admission
from .context import Context
from .deadline import FirstAnswer, until_answered
from .failures import is_retryable, status_error
from .http import BodyChunks, Http, bearer_tokens, make_session, parse_content_range
from .job import FileJob
from .local import local_path
from .netenv import NetEnv
from .partial import fsync_dir
from .retry import Backoff, parse_retry_after
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

__all__ = ("WORKER_THREADS", "Engine")

_log = logging.getLogger("asynchub")

T = TypeVar("T")

WORKER_THREADS = 8
"""Threads that write and hash (hashlib and file I/O release the GIL)."""

_BYTES_STATUSES = frozenset({200, 206, 304, 404, 410})


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
        self._session: aiohttp.ClientSession | None = None
        self._ctx: Context | None = None
        self._flights: dict[str, _Flight] = {}
        self._files = Admission(self.config.limits.max_files)

    async def __aenter__(self) -> Engine:
        self._session = make_session(self.config)
        executor = concurrent.futures.ThreadPoolExecutor(
            WORKER_THREADS, thread_name_prefix="asynchub-io"
        )
        limits, retry = self.config.limits, self.config.retry
        loop = asyncio.get_running_loop()
        env = await loop.run_in_executor(executor, NetEnv.read)
        http = Http(
            self._session,
            limits.max_redirects,
            retry.max_retry_after,
            env,
            bearer=bearer_tokens(self.config),
            offline=self.config.offline,
        )
        self._ctx = Context(self.config, http, executor)
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
        if self._session is not None:
            await self._session.close()
        if self._ctx is not None:
            await self._sync_folders(self._ctx)
            self._ctx.executor.shutdown(wait=True)
        self._session = self._ctx = None

    async def _sync_folders(self, ctx: Context) -> None:
        """Make the renames of this engine's files durable: one fsync per folder."""
        folders, ctx.written_folders = ctx.written_folders, set()
        if folders:
            done = ctx.submit(_fsync_dirs, sorted(folders))
            await _wait_quietly(asyncio.wrap_future(done))

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            raise RuntimeError("use the Engine inside 'async with Engine(...)'")
        return self._ctx

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
                result = await FileJob(self.ctx, spec, flight.emit).run()
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
            return await self.ctx.run(_read_local, url, limit)
        answered = FirstAnswer()
        work = self._get_retrying(url, headers, limit, answered)
        timeouts = self.config.timeouts
        return await until_answered(work, answered, timeouts, url, lambda: url)

    async def _get_retrying(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        limit: int,
        answered: FirstAnswer,
    ) -> BytesResponse:
        backoff = Backoff(self.config.retry)
        while True:
            try:
                return await self._get_once(url, headers, limit, answered)
            except TransferError as err:
                answered.failed(err)
                if not is_retryable(err, backoff.policy):
                    raise
                await backoff.wait_or_raise(err)

    def _manifest_cap(self) -> int:
        return int(self.config.limits.max_manifest_bytes)

    async def _get_once(
        self,
        url: str,
        headers: Mapping[str, str] | None,
        limit: int,
        answered: FirstAnswer,
    ) -> BytesResponse:
        async with self.ctx.http.get(url, headers) as response:
            answered.set()
            if response.status not in _BYTES_STATUSES:
                after = parse_retry_after(response.headers.get("Retry-After"))
                raise status_error(response.status, response.reason, url, after)
            if response.status == 206:
                _check_partial(response, url, headers)
            body = await _read_limited(response, url, limit)
            return BytesResponse(
                response.status, response.headers, body, str(response.url)
            )


def _check_partial(
    response: aiohttp.ClientResponse, url: str, headers: Mapping[str, str] | None
) -> None:
    """A 206 counts only as the answer to a Range we asked, with a valid range."""
    asked = any(k.lower() == "range" for k in (headers or {}))
    if not asked or parse_content_range(response.headers.get("Content-Range")) is None:
        raise UnexpectedContentError(
            f"{url} answered 206 with no valid Content-Range for the range asked",
            url=url,
            hint="the server's partial answers are broken; report it to its owner",
        )


async def _read_limited(
    response: aiohttp.ClientResponse, url: str, limit: int
) -> bytes:
    if (response.content_length or 0) > limit:
        raise _too_large(url, limit)
    body = bytearray()
    async for chunk in BodyChunks(response, url):
        body += chunk
        if len(body) > limit:
            raise _too_large(url, limit)
    return bytes(body)


def _too_large(url: str, limit: int) -> UnexpectedContentError:
    return UnexpectedContentError(
        f"{url} sent more than {limit} bytes", url=url, hint="check the URL"
    )


def _read_local(url: str, limit: int) -> BytesResponse:
    path = local_path(url)
    try:
        with open(path, "rb") as f:
            body = f.read(limit + 1)
    except FileNotFoundError:
        return BytesResponse(404, {}, b"", url)
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc}", url=url) from exc
    if len(body) > limit:
        raise _too_large(url, limit)
    return BytesResponse(200, {}, body, url)


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
