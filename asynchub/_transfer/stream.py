"""The part streams: one response body written at its segment's offset in batches.

Bytes are gathered into fixed buffers (:class:`Batch`) and each full batch is written
and hashed in a worker thread, after the segment's previous write; a slow link still
writes (and reports progress) every :data:`FLUSH_INTERVAL`. A trickle slower than
:data:`LOW_SPEED_BYTES` per read-timeout window counts as a stall. The resume sidecar
is saved at most every :data:`SAVE_INTERVAL` while bytes arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import IntegrityError, TransferTimeoutError
from .context import Context
from .http import BodyChunks
from .partial import Partial
from .parts import Batch, Segment
from .spec import FileSpec

__all__ = ("SAVE_INTERVAL", "BodyWriter", "SpeedFloor", "Tail")

SAVE_INTERVAL = 1.0
"""Seconds between resume-state saves while bytes arrive."""

LOW_SPEED_BYTES = 1024
"""Bytes a connection must deliver per read-timeout window (else: retry it)."""

FLUSH_INTERVAL = 0.5
"""A batch is written after this many seconds even if not full (slow links)."""


class SpeedFloor:
    """Treat a trickle as a stall: too few bytes in a read-timeout window fails.

    aiohttp's ``sock_read`` only fires when *nothing* arrives; a server sending a
    few bytes a second would otherwise hold a connection forever.
    """

    def __init__(self, window: float, url: str) -> None:
        self.window, self.url = window, url
        self.start, self.count = time.monotonic(), 0

    def feed(self, count: int) -> None:
        self.count += count
        now = time.monotonic()
        if now - self.start < self.window:
            return
        if self.count < LOW_SPEED_BYTES:
            raise TransferTimeoutError(
                f"{self.url} sent only {self.count} bytes in {now - self.start:.1f} s",
                url=self.url,
            )
        self.start, self.count = now, 0


@dataclass(frozen=True)
class Tail:
    """The last, not yet written batch of a file fetched in one request."""

    offset: int
    batch: Batch

    @property
    def data(self) -> memoryview:
        return memoryview(self.batch.buf)[: self.batch.size]


class BodyWriter:
    """Writes the bodies of one download into its partial (see the module docs).

    ``pending`` collects the thread futures in flight (the job drains them);
    ``on_bytes`` is told of every batch once it is on disk.
    """

    def __init__(
        self,
        ctx: Context,
        spec: FileSpec,
        url: str,
        partial: Partial,
        pending: set[concurrent.futures.Future[Any]],
        on_bytes: Callable[[int], None],
    ) -> None:
        self.ctx, self.spec, self.url, self.partial = ctx, spec, url, partial
        self.pending, self.on_bytes = pending, on_bytes
        self._last_save = time.monotonic()

    async def stream(
        self, response: aiohttp.ClientResponse, seg: Segment, skip: int
    ) -> Tail | None:
        """Write the body at ``seg.pos`` in batches; stop at ``seg.end`` (read as
        the body arrives: a split may move it, and the rest of the body is dropped
        with its connection). ``seg.began`` and ``seg.got`` measure its rate.

        Returns the last batch of a whole file unwritten (see :meth:`_keep_tail`).
        """
        batch = Batch(self.ctx.buffers.get())
        floor = SpeedFloor(self.ctx.config.timeouts.read, self.url)
        complete, tail = False, None
        seg.began, seg.got = time.monotonic(), 0
        chunks = BodyChunks(response, self.url, self.ctx.config.limits.coalesce_seconds)
        try:
            async for chunk in chunks:
                floor.feed(len(chunk))
                seg.got += len(chunk)
                view, skip = memoryview(chunk)[skip:], max(0, skip - len(chunk))
                view = _clip(view, seg, batch)
                self._check_overlong(seg.pos + batch.size + len(view))
                while view:  # inline: ``finally`` must see the batch being filled
                    view = batch.fill(view)
                    if batch.full or _flush_due(seg):
                        await self.flush(seg, batch)
                        batch = Batch(self.ctx.buffers.get())
                        view = _clip(view, seg, batch)  # a split may move the end
                if seg.end is not None and seg.pos + batch.size >= seg.end:
                    break
            complete = True
        finally:
            chunks.close()
            if complete and seg.whole and _ends(seg, batch):
                tail = self._keep_tail(seg, batch)
            else:
                await self.flush(seg, batch)
        if seg.end is None and seg.whole:
            seg.finished = True
            self.partial.state.total = seg.pos
        return tail

    def _keep_tail(self, seg: Segment, batch: Batch) -> Tail | None:
        """Leave a whole file's last batch to the job, which writes it in the same
        thread hop that verifies and renames (a small file: two hops, not three)."""
        if not batch.size:
            self.ctx.buffers.put(batch.buf)
            return None
        tail = Tail(seg.pos, batch)
        seg.pos += batch.size
        return tail

    def _check_overlong(self, end: int) -> None:
        """A body of unknown length must not run past the expected size."""
        size = self.spec.size
        if size is not None and end > size:
            raise IntegrityError(
                f"{self.url} sent more than the expected {size} bytes for "
                f"{self.spec.label or self.spec.dest.name}",
                path=str(self.spec.dest),
                expected=self.spec.sha256,
                actual=None,
            )

    async def flush(self, seg: Segment, batch: Batch) -> None:
        """Hand ``batch`` to a thread (after the segment's previous write)."""
        await self.settle(seg)
        if not batch.size:
            self.ctx.buffers.put(batch.buf)
            return
        seg.flushed_at = time.monotonic()
        data = memoryview(batch.buf)[: batch.size]
        future = self.ctx.submit(self.partial.assembler.write, seg.pos, data)
        seg.pending = (future, batch)
        self.pending.add(future)
        seg.pos += batch.size

    async def settle(self, seg: Segment) -> None:
        """Wait for the segment's write in flight; report its bytes."""
        if seg.pending is None:
            return
        (future, batch), seg.pending = seg.pending, None
        await asyncio.wrap_future(future)  # if cancelled, stays in pending for drain
        self.pending.discard(future)
        self.ctx.buffers.put(batch.buf)
        self.on_bytes(batch.size)
        self._save_soon()

    def _save_soon(self) -> None:
        now = time.monotonic()
        if now - self._last_save >= SAVE_INTERVAL:
            self._last_save = now
            self.pending.add(self.ctx.submit(self.partial.save))


def _clip(view: memoryview, seg: Segment, batch: Batch) -> memoryview:
    """``view`` without what lies at or past ``seg.end``, which may have moved
    since the request was sent (an idle connection took the rest, see :mod:`.parts`)."""
    if seg.end is None:
        return view
    return view[: max(0, seg.end - seg.pos - batch.size)]


def _flush_due(seg: Segment) -> bool:
    """On a slow link, write (and report) at least every FLUSH_INTERVAL."""
    return time.monotonic() - seg.flushed_at >= FLUSH_INTERVAL


def _ends(seg: Segment, batch: Batch) -> bool:
    """Whether ``batch`` holds the segment's last bytes (nothing is fetched after)."""
    return seg.end is None or seg.pos + batch.size >= seg.end
