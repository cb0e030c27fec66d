"""Fetch one HTTP URL into a :class:`~.partial.Partial`: probe, plan parts, stream.

The first request (the *probe*) asks for the first missing range (or the whole file
when it is small or its size unknown). Its answer fixes the plan:

- ``200``: the server sent the whole file (small file, Range ignored, or the remote
  changed under ``If-Range``): drop any partial bytes and stream it from byte 0.
- ``206`` with a consistent ``Content-Range``: remember size and validator, queue the
  remaining ranges as parts, and let several workers fetch them at once, each
  writing at its own offset; every later request carries ``If-Range``.
- a changed size or validator, a bad ``Content-Range``, a ``416``, or a ``200`` while
  other parts are in flight raise :class:`Restart`: the job empties the file and
  starts over (a bounded number of times).

A dropped connection resumes its part from the last byte received; the retry budget
of a part resets whenever bytes arrive.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from ..config import Limits
from ..errors import (
    HTTPStatusError,
    IncompleteTransferError,
    IntegrityError,
    TransferError,
    TransferTimeoutError,
)
from .aio import drain, gather_or_cancel
from .context import Context
from .failures import is_retryable, status_error
from .hostconn import is_refusal
from .http import (
    Validator,
    iter_body,
    parse_content_range,
    parse_unsatisfied_length,
    require_identity,
)
from .partial import Partial
from .retry import Backoff, parse_retry_after
from .spec import FileSpec
from .verify import HEAD_SIZE, check_announced_size

_log = logging.getLogger("asynchub")

__all__ = (
    "SAVE_INTERVAL",
    "SHED_STATUSES",
    "Download",
    "Restart",
    "Segment",
    "Tail",
    "sheds_connection",
)

SAVE_INTERVAL = 1.0
"""Seconds between resume-state saves while bytes arrive."""

LOW_SPEED_BYTES = 1024
"""Bytes a connection must deliver per read-timeout window (else: retry it)."""

FLUSH_INTERVAL = 0.5
"""A batch is written after this many seconds even if not full (slow links)."""


SHED_STATUSES = frozenset({403})
"""Answers to an extra ranged connection that mean "fewer connections, please"
(a CDN that allows a few ranged connections per client refuses the rest with 403)."""


def sheds_connection(err: TransferError, others: int, shed: int) -> str | None:
    """What a part's worker does when the host refuses its request: the one place
    that decides it.

    ``"shed"``: stop, and leave the range to the ``others`` still running (the host
    refuses extra connections); ``"retry"``: the last worker of a host that already
    refused extras (``shed`` > 0) waits and tries again, since the host may still
    count a connection that just closed; None: not a refusal, fail as usual.
    """
    if not isinstance(err, HTTPStatusError) or err.status not in SHED_STATUSES:
        return None
    if others > 0:
        return "shed"
    return "retry" if shed > 0 else None


class _Shed(Exception):
    """This worker stops; its unfinished range went back to the queue."""


class _Refused(Exception):
    """An extra connection of this file was refused (see :mod:`._hostconn`)."""


class Restart(Exception):
    """The remote changed or answered inconsistently: empty the file, start over."""

    def __init__(self, reason: str, *, ranges_broken: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ranges_broken = ranges_broken


@dataclass
class Batch:
    """A fixed buffer being filled from the network before one thread hop."""

    buf: bytearray
    size: int = 0

    @property
    def full(self) -> bool:
        return self.size == len(self.buf)

    def fill(self, view: memoryview) -> memoryview:
        """Copy as much of ``view`` as fits; return the rest."""
        take = min(len(view), len(self.buf) - self.size)
        self.buf[self.size : self.size + take] = view[:take]
        self.size += take
        return view[take:]


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


@dataclass
class Segment:
    """A byte range ``[start, end)`` being fetched; ``pos`` is the next byte."""

    start: int
    end: int | None
    pos: int
    whole: bool = False
    finished: bool = False
    pending: tuple[concurrent.futures.Future[None], Batch] | None = None
    flushed_at: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> bool:
        return self.finished or (self.end is not None and self.pos >= self.end)


class Download:
    """One attempt at fetching ``url`` into ``partial`` (see the module docs)."""

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
        on_answer: Callable[[], None] = lambda: None,
    ) -> None:
        self.ctx, self.spec, self.url, self.partial = ctx, spec, url, partial
        self.use_ranges = use_ranges
        self.pending = pending
        self.on_bytes, self.on_reset = on_bytes, on_reset
        self.on_answer = on_answer  # the server answered (the first-byte deadline)
        self.queue = Parts(self.limits.part_size)
        self.planned = False
        self._ready = asyncio.Event()  # set once the probe has fixed the plan
        self.workers = 1
        self.active = 0  # workers still running
        self.shed = 0  # workers stopped because the host refused extra connections
        self.in_flight = 0  # requests of this file sent and not yet finished
        self.restarts = 0
        self.bodies = 0  # responses whose body was used (more than one: spliced)
        self._last_save = time.monotonic()
        self._syncing: concurrent.futures.Future[None] | None = None
        self.tail: Tail | None = None  # see _keep_tail
        # Where requests go: the URL, then where it last redirected to. Parts go
        # straight to the CDN a hub redirects to (Hugging Face: a signed URL valid
        # for an hour) instead of paying the redirect again for each part; after
        # any failure there the next request goes to the URL itself again (at once
        # if the failure would not be retried, as an expired signature is not).
        self.target = url

    @property
    def limits(self) -> Limits:
        return self.ctx.config.limits

    async def run(self) -> int | None:
        """Fetch every missing byte; return the file's size (None if unknown)."""
        first = self._first_segment()
        if first is not None:
            self.workers = self._worker_count(first)
            await gather_or_cancel(
                self._worker(first if i == 0 else None) for i in range(self.workers)
            )
        return self.partial.state.total

    # planning -----------------------------------------------------------
    def _first_segment(self) -> Segment | None:
        state, part = self.partial.state, self.limits.part_size
        if state.total is not None and self.partial.resumed > 0:
            gaps = self.partial.assembler.gaps(state.total)
            if not gaps:
                self.planned = True
                return None
            start, end = gaps[0]
            return Segment(start, min(end, start + part), start)
        size = self.spec.size
        if self.use_ranges and size is not None and self._split(size):
            return Segment(0, part, 0)
        return Segment(0, None, 0, whole=True)  # the answer tells the size

    def _split(self, size: int) -> bool:
        limits = self.limits
        return size >= limits.split_threshold and size > limits.part_size

    def _worker_count(self, first: Segment) -> int:
        if first.whole:
            return 1
        total = self.partial.state.total or self.spec.size or 0
        parts = _count_parts(self.partial.assembler.gaps(total), self._part())
        return max(1, min(self.ctx.hosts.allowed(self.url), parts))

    def _part(self) -> int:
        return self.limits.part_size

    def _plan(self, total: int, first: Segment) -> None:
        """Queue every missing range except the probe's (cut into parts lazily)."""
        gaps = _subtract(self.partial.assembler.gaps(total), first.start, first.end)
        self.queue.extend(gaps)

    # workers ------------------------------------------------------------
    async def _worker(self, first: Segment | None) -> None:
        self.active += 1
        try:
            if first is not None:
                await self._fetch(first)
            else:
                await self._ready.wait()
            while (seg := self.queue.pop()) is not None:
                try:
                    await self._fetch(seg)
                except _Refused:
                    if seg.end is not None:  # the working connections finish it
                        self.queue.give_back(seg.pos, seg.end)
                    return
                self._write_back()
        except _Shed:
            self.workers -= 1
            self.shed += 1
        finally:
            self.active -= 1

    def _write_back(self) -> None:
        """After a part: flush the file's data now, so the fsync before the rename
        is short (1 GiB left to the end took 0.5 s there). One flush at a time."""
        if not self.ctx.config.fsync:
            return
        if self._syncing is None or self._syncing.done():
            self._syncing = self.ctx.submit(self.partial.sync_data)
            self.pending.add(self._syncing)

    async def _fetch(self, seg: Segment) -> None:
        """Fetch one segment, resuming from ``seg.pos`` after each failure."""
        backoff = Backoff(self.ctx.config.retry)
        asked_again = 0  # bounded too: a URL may redirect to a failing target forever
        while not seg.done:
            before = seg.pos
            try:
                await self._attempt(seg)
            except TransferError as err:
                if self._extra_refused(err):
                    raise _Refused from err
                redirected, self.target = self.target != self.url, self.url
                if not is_retryable(err, backoff.policy):
                    if redirected and asked_again < backoff.policy.attempts:
                        asked_again += 1  # e.g. a signed redirect expired: ask the URL
                        continue
                    action = self._refused(err)
                    if action == "shed":
                        self._requeue(seg)
                        raise _Shed from err
                    if action is None:
                        raise
                if seg.pos > before:
                    backoff.reset()
                await backoff.wait_or_raise(err)
                continue
            if not seg.done and seg.pos == before:
                await backoff.wait_or_raise(self._short(seg))

    def _refused(self, err: TransferError) -> str | None:
        if not self.planned:
            return None
        return sheds_connection(err, self.active - 1, self.shed)

    def _requeue(self, seg: Segment) -> None:
        """Give the rest of ``seg`` to the workers that are still fetching."""
        _log.info(
            "%s refused an extra ranged connection; continuing with %d",
            self.url,
            self.active - 1,
        )
        if seg.end is not None:  # planned parts always have an end
            self.queue.give_back(seg.pos, seg.end)

    def _extra_refused(self, err: TransferError) -> bool:
        """A refusal of an extra connection while others of this file are in flight: the
        host's limit for the run is lowered to those (see :mod:`._hostconn`)."""
        # The host already served this file (the probe's body) and another worker
        # goes on (it takes the part back): a refusal now limits connections.
        if not (is_refusal(err) and self.planned and self.bodies and self.active > 1):
            return False
        self.ctx.hosts.refused(max(1, self.in_flight), self.url, self.target)
        return True

    def _short(self, seg: Segment) -> IncompleteTransferError:
        return IncompleteTransferError(
            f"{self.url} ended the body at byte {seg.pos} of {seg.end}", url=self.url
        )

    async def _attempt(self, seg: Segment) -> None:
        self.in_flight += 1
        try:
            get = self.ctx.http.get(self.target, self._headers(seg), self._linked)
            async with get as response:
                self.on_answer()
                skip = await self._accept(response, seg)
                self.target = str(response.url)
                await self._stream(response, seg, skip)
        finally:
            self.in_flight -= 1
            await self._settle(seg)

    def _linked(self, headers: Mapping[str, str]) -> None:
        """Refuse a redirect whose ``X-Linked-Etag`` (a Hugging Face ``resolve``
        advertising the file's SHA-256) disagrees with the expected digest, before
        a byte of the file is fetched."""
        advertised = linked_sha256(headers)
        expected = self.spec.sha256
        if advertised and expected and advertised != expected.lower():
            raise IntegrityError(
                f"{self.url} advertises SHA-256 {advertised} for "
                f"{self.spec.label or self.spec.dest.name}, expected {expected}",
                path=str(self.spec.dest),
                expected=expected,
                actual=advertised,
            )

    def _headers(self, seg: Segment) -> dict[str, str]:
        if seg.whole and seg.pos == 0:
            return {}
        last = "" if seg.end is None else str(seg.end - 1)
        headers = {"Range": f"bytes={seg.pos}-{last}"}
        if_range = self._validator().if_range()
        if if_range:
            headers["If-Range"] = if_range
        return headers

    def _validator(self) -> Validator:
        state = self.partial.state
        return Validator(state.etag, state.last_modified)

    # response checks ----------------------------------------------------
    async def _accept(self, response: aiohttp.ClientResponse, seg: Segment) -> int:
        """Check the status and headers; return how many body bytes to skip."""
        status = response.status
        if status in (200, 206):
            self.bodies += 1
        if status == 200:
            return await self._accept_full(response, seg)
        if status == 206:
            return await self._accept_range(response, seg)
        if status == 416:
            return self._accept_unsatisfiable(response, seg)
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise status_error(status, response.reason, self.url, retry_after)

    async def _accept_full(self, response: aiohttp.ClientResponse, seg: Segment) -> int:
        require_identity(response, self.url)
        total = response.content_length
        await self._check_size(response, total)
        if seg.pos > 0 or not seg.whole:
            await self._restart_in_place(seg)
        seg.start = seg.pos = 0
        seg.end, seg.whole = total, True  # None: until EOF, capped by _check_overlong
        self._adopt(total, Validator.of(response.headers), seg)
        return 0

    async def _restart_in_place(self, seg: Segment) -> None:
        """A 200 answered a range: use it as the whole file if no one else writes."""
        if self.planned and self.active > 1:
            raise Restart(f"{self.url} sent the whole file instead of a range")
        self.restarts += 1
        if self.restarts > self.ctx.config.retry.attempts:
            raise Restart(f"{self.url} keeps ignoring Range", ranges_broken=True)
        await self._settle(seg)
        await drain(self.pending)
        await self.ctx.run(self.partial.restart, self.url)
        self.on_reset()
        self.queue.clear()
        self.planned = False

    async def _accept_range(
        self, response: aiohttp.ClientResponse, seg: Segment
    ) -> int:
        require_identity(response, self.url)
        value = response.headers.get("Content-Range")
        got = parse_content_range(value)
        if got is None or got.first > seg.pos or got.last < seg.pos:
            raise Restart(
                f"{self.url} answered bytes {seg.pos}- with Content-Range {value!r}",
                ranges_broken=True,
            )
        total = got.total if got.total is not None else self.partial.state.total
        if total is None:
            raise Restart(f"{self.url} did not say the file's size", ranges_broken=True)
        if seg.pos > 0 and self.spec.size not in (None, total):
            raise Restart(
                f"{self.url} answered a range of a {total}-byte file, "
                f"expected {self.spec.size} bytes",
                ranges_broken=True,
            )
        await self._check_size(response, total)
        self._check_same(total, Validator.of(response.headers))
        if seg.whole:
            seg.end = total
        self._adopt(total, Validator.of(response.headers), seg)
        return seg.pos - got.first

    def _check_same(self, total: int, validator: Validator) -> None:
        known = self.partial.state.total
        if known is not None and total != known:
            raise Restart(f"{self.url} changed size from {known} to {total} bytes")
        if not self._validator().same_as(validator):
            raise Restart(f"{self.url} changed between requests (new validator)")

    def _accept_unsatisfiable(
        self, response: aiohttp.ClientResponse, seg: Segment
    ) -> int:
        length = parse_unsatisfied_length(response.headers.get("Content-Range"))
        if seg.whole and seg.end is None and length == seg.pos:
            seg.finished = True
            self.partial.state.total = length
            return 0
        raise Restart(f"{self.url} answered 416 for bytes {seg.pos}-")

    async def _check_size(
        self, response: aiohttp.ClientResponse, total: int | None
    ) -> None:
        if total is None or self.spec.size is None or total == self.spec.size:
            return
        head = await response.content.read(HEAD_SIZE)
        check_announced_size(self.spec, self.url, total, head)

    def _adopt(self, total: int | None, validator: Validator, seg: Segment) -> None:
        """The probe's answer: record size and validator, queue the other parts."""
        if self.planned:
            return
        state = self.partial.state
        state.total, state.etag = total, validator.etag
        state.last_modified = validator.last_modified
        if total is not None and not seg.whole:
            self._plan(total, seg)
        self.planned = True
        self._ready.set()  # the sidecar is saved within SAVE_INTERVAL, not now

    # streaming ----------------------------------------------------------
    async def _stream(
        self, response: aiohttp.ClientResponse, seg: Segment, skip: int
    ) -> None:
        """Write the body at ``seg.pos`` in batches; stop at ``seg.end``."""
        batch = Batch(self.ctx.buffers.get())
        floor = SpeedFloor(self.ctx.config.timeouts.read, self.url)
        complete = False
        try:
            async for chunk in iter_body(response, self.url):
                floor.feed(len(chunk))
                view, skip = memoryview(chunk)[skip:], max(0, skip - len(chunk))
                if seg.end is not None:
                    view = view[: seg.end - seg.pos - batch.size]
                self._check_overlong(seg.pos + batch.size + len(view))
                while view:
                    view = batch.fill(view)
                    if batch.full or self._flush_due(seg):
                        await self._flush(seg, batch)
                        batch = Batch(self.ctx.buffers.get())
                if seg.end is not None and seg.pos + batch.size >= seg.end:
                    break
            complete = True
        finally:
            if complete and seg.whole and _ends(seg, batch):
                self._keep_tail(seg, batch)
            else:
                await self._flush(seg, batch)
        if seg.end is None and seg.whole:
            seg.finished = True
            self.partial.state.total = seg.pos

    def _keep_tail(self, seg: Segment, batch: Batch) -> None:
        """Leave a whole file's last batch to the job, which writes it in the same
        thread hop that verifies and renames (a small file: two hops, not three)."""
        if batch.size:
            self.tail = Tail(seg.pos, batch)
            seg.pos += batch.size
        else:
            self.ctx.buffers.put(batch.buf)

    def _flush_due(self, seg: Segment) -> bool:
        """On a slow link, write (and report) at least every FLUSH_INTERVAL."""
        return time.monotonic() - seg.flushed_at >= FLUSH_INTERVAL

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

    async def _flush(self, seg: Segment, batch: Batch) -> None:
        """Hand ``batch`` to a thread (after the segment's previous write)."""
        await self._settle(seg)
        if not batch.size:
            self.ctx.buffers.put(batch.buf)
            return
        seg.flushed_at = time.monotonic()
        data = memoryview(batch.buf)[: batch.size]
        future = self.ctx.submit(self.partial.assembler.write, seg.pos, data)
        seg.pending = (future, batch)
        self.pending.add(future)
        seg.pos += batch.size

    async def _settle(self, seg: Segment) -> None:
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


class Parts:
    """The ranges still to fetch, cut into parts only as workers take them.

    Memory is in proportion to the number of gaps (what is on disk), never to a
    size the manifest or the server claims: a 10**14-byte claim was 6 million
    segments (915 MiB) planned before the first request.
    """

    def __init__(self, part: int) -> None:
        self.part = part
        self._gaps: deque[tuple[int, int]] = deque()

    def extend(self, gaps: list[tuple[int, int]]) -> None:
        self._gaps.extend((a, b) for a, b in gaps if a < b)

    def pop(self) -> Segment | None:
        """The next part, or None when nothing is left."""
        if not self._gaps:
            return None
        start, end = self._gaps.popleft()
        cut = min(end, start + self.part)
        if cut < end:
            self._gaps.appendleft((cut, end))
        return Segment(start, cut, start)

    def give_back(self, start: int, end: int) -> None:
        """Put a range a worker could not finish back in front of the others."""
        if start < end:
            self._gaps.appendleft((start, end))

    def clear(self) -> None:
        self._gaps.clear()

    def __bool__(self) -> bool:
        return bool(self._gaps)


def _count_parts(gaps: list[tuple[int, int]], part: int) -> int:
    """How many parts of at most ``part`` bytes ``gaps`` make (without making them)."""
    return sum(-(-(end - start) // part) for start, end in gaps if end > start)


def linked_sha256(headers: Mapping[str, str]) -> str | None:
    """The SHA-256 in an ``X-Linked-Etag`` header, if it holds one (LFS files)."""
    value = headers.get("X-Linked-Etag", "").strip()
    value = value.removeprefix("W/").strip('"').lower()
    return value if len(value) == 64 and all(c in HEX for c in value) else None


HEX = frozenset("0123456789abcdef")


def _ends(seg: Segment, batch: Batch) -> bool:
    """Whether ``batch`` holds the segment's last bytes (nothing is fetched after)."""
    return seg.end is None or seg.pos + batch.size >= seg.end


def _subtract(
    gaps: list[tuple[int, int]], lo: int, hi: int | None
) -> list[tuple[int, int]]:
    """``gaps`` without ``[lo, hi)``."""
    out: list[tuple[int, int]] = []
    end_cut = hi if hi is not None else lo
    for start, end in gaps:
        if start < lo:
            out.append((start, min(end, lo)))
        if end > end_cut:
            out.append((max(start, end_cut), end))
    return [(a, b) for a, b in out if a < b]


def _split_ranges(gaps: list[tuple[int, int]], part: int) -> list[tuple[int, int]]:
    """Cut each gap into parts of at most ``part`` bytes."""
    return [
        (pos, min(pos + part, end))
        for start, end in gaps
        for pos in range(start, end, part)
    ]
