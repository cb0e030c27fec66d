"""One file: lock, claim or create the partial, try each URL, verify, rename.

A file that arrives in one batch costs one worker-thread hop, its fsync: open
(lock, unless it is too small to split; partial) and seal (write the last batch,
verify, stamp, rename, unlock) run on the loop thread while they stay fast, and on
a memory file system the fsync too (see ``Context.run_step``).

On success the verified file is at ``spec.dest`` and nothing else is left. On failure
nothing is under ``spec.dest``; the partial is kept for a later run when the failure
is transient (network, cancellation) and removed otherwise (wrong content, 404, full
disk).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from .._fs import os_error
from ..errors import (
    AsyncHubError,
    CacheError,
    IncompleteTransferError,
    IntegrityError,
    OfflineCacheMissError,
    RemoteFileNotFoundError,
    TransferError,
    UnexpectedContentError,
)
from .aio import drain
from .assembler import sha256_file
from .context import Context
from .deadline import FirstAnswer, until_answered
from .download import Download, Restart, Tail
from .failures import is_retryable
from .local import copy_local
from .partial import Partial
from .spec import FileProgress, FileResult, FileSpec, ProgressEvent
from .state import activity
from .verify import HEAD_SIZE, verify

__all__ = ("FileJob",)

PROGRESS_INTERVAL = 0.1
"""Minimum seconds between two progress events of one file."""

INLINE_TAIL = 256 * 1024
"""Largest last batch a seal writes and hashes on the loop thread (tmpfs): a bigger
one (up to 1 MiB, 0.6 ms of hashing) goes to a worker, so the loop never stalls
long (the zoo at 1/256 on tmpfs: the same wall time with 256 KiB or 1 MiB here)."""

LOCK_POLL = (0.05, 1.0)
"""First and longest pause between two tries of a busy lock."""

LOCK_STALL = 120.0
"""Seconds a lock holder may leave its temporary files unchanged before a waiter
stops waiting and downloads without the lock (it saves about once a second)."""

_log = logging.getLogger("asynchub")


class FileJob:
    """Fetch one :class:`FileSpec` (see the module docs)."""

    def __init__(
        self, ctx: Context, spec: FileSpec, emit: Callable[[ProgressEvent], None]
    ) -> None:
        self.ctx, self.spec, self.emit = ctx, spec, emit
        self.pending: set[concurrent.futures.Future[Any]] = set()
        self.received = 0
        self.done = 0
        self.bodies = 0  # bodies the last download was assembled from
        self.tail: Tail | None = None  # the last batch, written when sealing
        self._last_event = 0.0
        self.answered = FirstAnswer()  # a server answered: see .deadline
        self.url = spec.urls[0] if spec.urls else ""  # the URL being tried

    async def run(self) -> FileResult:
        """Fetch, verify and rename; raise an AsyncHubError on failure."""
        try:
            return await self._locked()
        except OSError as exc:
            if isinstance(exc, AsyncHubError):
                raise
            raise os_error(exc, self.spec.dest) from exc

    # lock and partial -------------------------------------------------
    async def _locked(self) -> FileResult:
        partial, waited = await self._begin()
        try:
            reused = await self._reuse_after_wait() if waited else None
            if reused is not None:
                await self.ctx.run_to_end(partial.discard)
                return reused
            self.done = partial.resumed
            return await until_answered(
                self._try_urls(partial),
                self.answered,
                self.ctx.config.timeouts,
                self.spec.label or self.spec.dest.name,
                lambda: self.url,
            )
        except BaseException as exc:
            await self._settle(partial, exc)
            raise

    async def _begin(self) -> tuple[Partial, bool]:
        """Lock and open the partial without blocking the loop; True if we waited.

        Bounded: while the holder's temporary files change we wait; after
        :data:`LOCK_STALL` seconds without a change (a hung holder) we go ahead
        without the lock, which is safe (own temp file, verify, rename).
        """
        spec, pause, waited = self.spec, LOCK_POLL[0], False
        args = (spec.dest, spec.urls, spec.sha256, spec.size, spec.root)
        begin = functools.partial(Partial.begin, *args, small=self._small())
        seen, since = None, time.monotonic()
        while True:
            partial = await self.ctx.run_step(spec.dest.parent, begin)
            if partial is not None:
                return partial, waited
            waited = True
            await anyio.sleep(pause)
            pause = min(pause * 2, LOCK_POLL[1])
            now_seen = await self.ctx.run(activity, spec.dest)
            if now_seen != seen:
                seen, since = now_seen, time.monotonic()
            elif time.monotonic() - since > LOCK_STALL:
                _log.warning(
                    "%s: the lock holder made no progress for %.0f s; "
                    "downloading without the lock",
                    spec.dest,
                    LOCK_STALL,
                )
                partial = await self.ctx.run_to_end(
                    functools.partial(Partial.begin, *args, locked=False)
                )
                assert partial is not None
                return partial, True

    def _small(self) -> bool:
        """Too small to split, size and SHA-256 known: no lock file unless one
        is there already (``Partial.begin(small=True)``)."""
        limits, spec = self.ctx.config.limits, self.spec
        largest = min(limits.split_threshold, limits.min_split_size)
        if spec.sha256 is None or spec.size is None:
            return False
        return spec.size <= largest

    async def _reuse_after_wait(self) -> FileResult | None:
        """Another process just fetched this file: keep it if it verifies."""
        spec = self.spec
        if spec.sha256 is None:
            return None
        found = await self.ctx.run(_hash_file, spec.dest)
        if found is None:
            return None
        digest, size = found
        if digest != spec.sha256.lower() or spec.size not in (None, size):
            return None
        return FileResult(spec.dest, digest, size, spec.dest.as_uri(), 0)

    # partial ------------------------------------------------------------
    async def _settle(self, partial: Partial, exc: BaseException) -> None:
        """After a failure: keep the partial if a rerun can resume it, else remove."""
        try:
            await drain(self.pending)
        finally:
            keep = _resumable(exc, self.ctx) and partial.assembler.covered() > 0
            await self.ctx.run_to_end(partial.keep if keep else partial.discard)

    async def _try_urls(self, partial: Partial) -> FileResult:
        errors: list[AsyncHubError] = []
        for url in self.spec.urls:
            self.url = url
            try:
                return await self._from_url(url, partial)
            except (TransferError, IntegrityError) as err:
                errors.append(err)
        raise _most_telling(errors)

    async def _from_url(self, url: str, partial: Partial) -> FileResult:
        if partial.state.url != url:
            await self._restart(partial, url)
        try:
            return await self._fetch_and_verify(url, partial)
        except (IntegrityError, UnexpectedContentError):
            if not self._maybe_spliced(partial):
                raise
        # The bytes may come from two versions of the file: one clean retry.
        await self._restart(partial, url)
        return await self._fetch_and_verify(url, partial)

    def _maybe_spliced(self, partial: Partial) -> bool:
        """Bytes from an earlier run, or from several bodies without a strong ETag."""
        etag = partial.state.etag or ""
        strong = bool(etag) and not etag.startswith("W/")
        return partial.resumed > 0 or (self.bodies > 1 and not strong)

    async def _restart(self, partial: Partial, url: str) -> None:
        self.tail = None
        await drain(self.pending)
        await self.ctx.run_to_end(partial.restart, url)
        self._on_reset()

    def _on_reset(self) -> None:
        self.done = 0

    async def _fetch_and_verify(self, url: str, partial: Partial) -> FileResult:
        if url.startswith("file:"):
            self.answered.set()  # no network: the deadline does not apply
            total: int | None = await copy_local(
                self.ctx.run, url, partial.assembler, self._on_bytes
            )
        else:
            total = await self._download(url, partial)
        return await self._finish(url, partial, total)

    async def _download(self, url: str, partial: Partial) -> int | None:
        use_ranges, attempts = True, self.ctx.config.retry.attempts
        for _ in range(attempts):
            download = Download(
                self.ctx,
                self.spec,
                url,
                partial,
                use_ranges=use_ranges,
                pending=self.pending,
                on_bytes=self._on_bytes,
                on_reset=self._on_reset,
                answer=self.answered,
            )
            try:
                fetched = await download.run()
                self.bodies, self.tail = fetched.bodies, fetched.tail
                return fetched.total
            except Restart as restart:
                use_ranges = use_ranges and not restart.ranges_broken
                reason = restart.reason
            await self._restart(partial, url)
        raise IncompleteTransferError(
            f"{reason}; gave up after {attempts} fresh starts", url=url
        )

    # finish -------------------------------------------------------------
    async def _finish(
        self, url: str, partial: Partial, total: int | None
    ) -> FileResult:
        await drain(self.pending)
        tail, self.tail = self.tail, None
        prefix = total if tail is None else tail.offset
        if prefix is None or partial.assembler.hashed < prefix:
            await self.ctx.run(partial.assembler.catch_up)  # resumed: read back
        fsync, folder = self.ctx.config.fsync, self.spec.dest.parent
        try:
            small_tail = tail is None or tail.batch.size <= INLINE_TAIL
            if small_tail and self.ctx.inline(folder):
                seal = functools.partial(_seal, partial, self.spec, url, total, tail)
                digest, size = await self.ctx.run_step(folder, seal)
                if fsync:
                    await self.ctx.run_sync(folder, partial.sync_all)
                await self.ctx.run_step(folder, partial.commit, False)
            else:  # one hop; hashing a big tail here would hold up every transfer
                seal = functools.partial(_sealed, partial, self.spec, url, total, tail)
                digest, size = await self.ctx.run_to_end(seal, fsync)
        finally:
            if tail is not None:
                self._on_bytes(tail.batch.size)
                self.ctx.buffers.put(tail.batch.buf)
        if self.ctx.config.fsync:
            self.ctx.written_folders.add(self.spec.dest.parent)
        return FileResult(
            self.spec.dest,
            digest,
            size,
            url,
            self.received,
            partial.resumed,
            stamped=partial.stamped,
        )

    def _on_bytes(self, count: int) -> None:
        self.received += count
        self.done += count
        now = time.monotonic()
        if now - self._last_event >= PROGRESS_INTERVAL:
            self._last_event = now
            self.emit(FileProgress(self.spec.label, self.done, self.spec.size))


def _resumable(exc: BaseException, ctx: Context) -> bool:
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return True
    if isinstance(exc, OfflineCacheMissError):  # nothing was tried: keep its bytes
        return True
    if isinstance(exc, (RemoteFileNotFoundError, CacheError)):
        return False
    return isinstance(exc, TransferError) and is_retryable(exc, ctx.config.retry)


def _most_telling(errors: list[AsyncHubError]) -> AsyncHubError:
    """The error to raise when every URL failed: the first that is not a 404."""
    for err in errors:
        if not isinstance(err, RemoteFileNotFoundError):
            return err
    return errors[0]


def _hash_file(path: Path) -> tuple[str, int] | None:
    """Digest and size of a regular file at ``path`` (a link or FIFO: None)."""
    try:
        return sha256_file(path), os.lstat(path).st_size
    except OSError:
        return None


def _sealed(
    partial: Partial,
    spec: FileSpec,
    url: str,
    total: int | None,
    tail: Tail | None,
    fsync: bool,
) -> tuple[str, int]:
    """In a worker thread: :func:`_seal`, then fsync and commit."""
    digest, size = _seal(partial, spec, url, total, tail)
    partial.commit(fsync)
    return digest, size


def _seal(
    partial: Partial,
    spec: FileSpec,
    url: str,
    total: int | None,
    tail: Tail | None,
) -> tuple[str, int]:
    """Write the tail, check size and hash, trim and stamp (``Partial.prepare``);
    the caller then fsyncs (or not) and commits."""
    assembler = partial.assembler
    if tail is not None:
        assembler.write(tail.offset, tail.data)
    hashed = assembler.catch_up()
    size = hashed if total is None else total
    if hashed != size:
        raise IncompleteTransferError(
            f"{url}: only {hashed} of {size} bytes arrived", url=url
        )
    digest = assembler.hexdigest()
    verify(spec, url, size, digest, lambda: assembler.head(HEAD_SIZE))
    partial.prepare(size, digest)
    return digest, size
