"""Fetch one HTTP URL into a :class:`~.partial.Partial`: probe, plan parts, stream.

The first request (the *probe*, :mod:`.probe`) asks for the first missing range
(:mod:`.resume`), or the whole file when it is small or its size unknown. Its answer
fixes the plan; then several workers fetch the remaining parts at once, each writing
at its own offset (:mod:`.stream`), each resuming its part after a dropped
connection (:mod:`.resume`). A worker that finds the queue empty takes the second
half of the part in flight that would finish last, when it has enough time left
to be worth a connection (:func:`~.parts.split_largest`), so the file's
connections finish together. How many connections one file opens, and what
a refused one means, is :mod:`.hostconn`'s rule.

Data flows one way: the job builds a :class:`Download`, awaits :meth:`Download.run`
and gets a :class:`Fetched` back (or an exception, :class:`~.probe.Restart` to
start over).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import Limits
from ..errors import TransferError
from .aio import drain, gather_or_cancel
from .assembler import BATCH_SIZE
from .context import Context
from .deadline import FirstAnswer
from .hostconn import Connection, Verdict
from .http import READ_BUFSIZE
from .partial import Partial
from .parts import Pace, Parts, Segment, count_parts, split_largest
from .probe import Probe, Restart
from .resume import BackedOff, Route, fetch_resuming, first_segment
from .spec import FileSpec
from .stream import BodyWriter, Tail

__all__ = ("Download", "Fetched", "Restart", "Tail")

SPLIT_RESERVE = BATCH_SIZE + 4 * READ_BUFSIZE
"""Bytes past a part's position a split leaves to it: what its stream may already
hold in memory (a batch being filled and the chunk being read)."""


@dataclass(frozen=True)
class Fetched:
    """What a download hands back to the job.

    Args:
        total: The file's size (None if unknown).
        bodies: Responses whose body was used (more than one: maybe spliced).
        tail: A whole file's last batch, written by the job when sealing.
    """

    total: int | None
    bodies: int
    tail: Tail | None


class Download:
    """One attempt at fetching ``url`` into ``partial`` (see the module docs).

    ``on_bytes`` is told of bytes on disk, ``on_reset`` that the file started over
    at byte 0; ``answer`` learns of the first answer and of refused connections
    (the first-byte deadline, :mod:`.deadline`).
    """

    def __init__(
        self,
        ctx: Context,
        spec: FileSpec,
        url: str,
        partial: Partial,
        *,
        use_ranges: bool,
        pending: set[concurrent.futures.Future[Any]],
        on_bytes: Callable[[int], None],
        on_reset: Callable[[], None],
        answer: FirstAnswer,
    ) -> None:
        self.ctx, self.spec, self.url, self.partial = ctx, spec, url, partial
        self.use_ranges, self.pending = use_ranges, pending
        self.on_reset, self.answer = on_reset, answer
        self.queue = Parts(self.limits.part_size)
        self.probe = Probe(spec, url, partial, self.queue, self._whole_instead)
        self.writer = BodyWriter(ctx, spec, url, partial, pending, on_bytes)
        self.route = Route(url)
        self.active = 0  # workers still running
        self.running: list[Segment] = []  # the workers' parts (a split takes from them)
        self.in_flight = 0  # requests of this file sent and not yet finished
        self.restarts = 0
        self.tail: Tail | None = None
        self._syncing: concurrent.futures.Future[None] | None = None

    @property
    def limits(self) -> Limits:
        return self.ctx.config.limits

    async def run(self) -> Fetched:
        """Fetch every missing byte; return the file's size and how it came."""
        first = first_segment(self.partial, self.spec, self.limits, self.use_ranges)
        if first is None:
            self.probe.planned = True  # resumed with every byte: nothing to ask
        else:
            workers = self._worker_count(first)
            await gather_or_cancel(
                self._worker(first if i == 0 else None) for i in range(workers)
            )
        return Fetched(self.partial.state.total, self.probe.bodies, self.tail)

    def _worker_count(self, first: Segment) -> int:
        if first.whole:
            return 1
        total = self.partial.state.total or self.spec.size or 0
        gaps = self.partial.assembler.gaps(total)
        parts = count_parts(gaps, self.limits.part_size)
        return max(1, min(self.ctx.hosts.allowed(self.url), parts))

    # workers ------------------------------------------------------------
    async def _worker(self, first: Segment | None) -> None:
        """Fetch the probe (or wait for it), then parts until none is left; stop
        early when the host refuses this connection (see :mod:`.hostconn`)."""
        self.active += 1
        try:
            if first is not None:
                await self._part(first)
            else:
                await self.probe.ready.wait()
            last = first
            while (seg := self._next(last)) is not None:
                await self._part(seg)
                self._write_back()
                last = seg
        except BackedOff:
            return
        finally:
            self.active -= 1

    def _next(self, last: Segment | None) -> Segment | None:
        """The next part from the queue, else half of the part in flight that would
        finish last, if worth it; ``last``: the part this worker fetched before."""
        seg = self.queue.pop()
        if seg is None and self.probe.planned:
            pace = self._pace(last)
            seg = split_largest(
                self.running, self.limits.min_split_size, SPLIT_RESERVE, pace
            )
        return seg

    def _pace(self, last: Segment | None) -> Pace:
        """What a split is weighed by now: a part too young to be measured is taken
        to run as fast as this worker's last one (see :mod:`.parts`)."""
        now = time.monotonic()
        fallback = None if last is None else last.rate(now)
        return Pace(now, fallback or None, self.limits.min_split_seconds)

    async def _part(self, seg: Segment) -> None:
        policy = self.ctx.config.retry
        self.running.append(seg)
        try:
            await fetch_resuming(seg, self._attempt, self._judge, self.route, policy)
        except BackedOff:
            if seg.end is not None:  # the working connections finish it
                self.queue.give_back(seg.pos, seg.end)
            raise
        finally:
            self.running.remove(seg)

    def _judge(self, err: TransferError, seg: Segment) -> Verdict | None:
        """:mod:`.hostconn`'s rule for a failed request of ``seg``."""
        self.answer.failed(err)
        conn = Connection(
            served=self.probe.planned and self.probe.bodies > 0,
            answered=seg.answered,
            others=self.active - 1,
            working=self.in_flight,
        )
        return self.ctx.hosts.judge(err, conn, self.url, self.route.target)

    def _write_back(self) -> None:
        """After a part: flush the file's data now, so the fsync before the rename
        is short (1 GiB left to the end took 0.5 s there). One flush at a time."""
        if not self.ctx.config.fsync:
            return
        if self._syncing is None or self._syncing.done():
            self._syncing = self.ctx.submit(self.partial.sync_data)
            self.pending.add(self._syncing)

    # one request ----------------------------------------------------------
    async def _attempt(self, seg: Segment) -> None:
        self.in_flight += 1
        seg.answered = False
        try:
            headers = self._headers(seg)
            get = self.ctx.http.get(self.route.target, headers, self.probe.check_linked)
            async with get as response:
                seg.answered = True
                self.answer.set()
                skip = await self.probe.accept(response, seg)
                self.route.target = str(response.url)
                tail = await self.writer.stream(response, seg, skip)
                self.tail = tail or self.tail
        finally:
            self.in_flight -= 1
            await self.writer.settle(seg)

    def _headers(self, seg: Segment) -> dict[str, str]:
        if seg.whole and seg.pos == 0:
            return {}
        last = "" if seg.end is None else str(seg.end - 1)
        headers = {"Range": f"bytes={seg.pos}-{last}"}
        if_range = self.probe.validator().if_range()
        if if_range:
            headers["If-Range"] = if_range
        return headers

    async def _whole_instead(self, seg: Segment) -> None:
        """A 200 answered a range: use it as the whole file if no one else writes."""
        if self.probe.planned and self.active > 1:
            raise Restart(f"{self.url} sent the whole file instead of a range")
        self.restarts += 1
        if self.restarts > self.ctx.config.retry.attempts:
            raise Restart(f"{self.url} keeps ignoring Range", ranges_broken=True)
        await self.writer.settle(seg)
        await drain(self.pending)
        await self.ctx.run(self.partial.restart, self.url)
        self.on_reset()
        self.probe.forget()
