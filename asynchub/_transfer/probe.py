"""The answers of one download checked; the first one (the *probe*) fixes the plan.

- ``200``: the server sent the whole file (small file, Range ignored, or the remote
  changed under ``If-Range``): drop any partial bytes and stream it from byte 0.
- ``206`` with a consistent ``Content-Range``: remember size and validator and queue
  the remaining ranges as parts; every later request carries ``If-Range``.
- a changed size or validator, a bad ``Content-Range``, a ``416``, or a ``200`` while
  other parts are in flight raise :class:`Restart`: the job empties the file and
  starts over (a bounded number of times).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

import aiohttp

from ..errors import IntegrityError
from .failures import status_error
from .http import (
    Validator,
    parse_content_range,
    parse_unsatisfied_length,
    require_identity,
)
from .partial import Partial
from .parts import Parts, Segment, subtract
from .retry import parse_retry_after
from .spec import FileSpec
from .verify import HEAD_SIZE, check_announced_size

__all__ = ("Probe", "Restart", "linked_sha256")

HEX = frozenset("0123456789abcdef")


class Restart(Exception):
    """The remote changed or answered inconsistently: empty the file, start over."""

    def __init__(self, reason: str, *, ranges_broken: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.ranges_broken = ranges_broken


class Probe:
    """Checks each response of one download against what the probe fixed.

    ``queue`` receives the ranges to fetch once the probe's answer is in; ``whole``
    is awaited when a 200 answers a range, to start the file over in place (it may
    raise :class:`Restart` instead). ``ready`` is set once the plan is fixed.
    """

    def __init__(
        self,
        spec: FileSpec,
        url: str,
        partial: Partial,
        queue: Parts,
        whole: Callable[[Segment], Awaitable[None]],
    ) -> None:
        self.spec, self.url, self.partial = spec, url, partial
        self.queue, self.whole = queue, whole
        self.planned = False
        self.ready = asyncio.Event()
        self.bodies = 0  # responses whose body was used (more than one: spliced)

    def forget(self) -> None:
        """The file starts over: the next answer is a probe again."""
        self.queue.clear()
        self.planned = False

    def validator(self) -> Validator:
        state = self.partial.state
        return Validator(state.etag, state.last_modified)

    async def accept(self, response: aiohttp.ClientResponse, seg: Segment) -> int:
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
            await self.whole(seg)
        seg.start = seg.pos = 0
        seg.end, seg.whole = total, True  # None: until EOF, capped by the writer
        self._adopt(total, Validator.of(response.headers), seg)
        return 0

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
        self._check_expected(seg, total)
        await self._check_size(response, total)
        self._check_same(total, Validator.of(response.headers))
        if seg.whole:
            seg.end = total
        self._adopt(total, Validator.of(response.headers), seg)
        return seg.pos - got.first

    def _check_expected(self, seg: Segment, total: int) -> None:
        if seg.pos > 0 and self.spec.size not in (None, total):
            raise Restart(
                f"{self.url} answered a range of a {total}-byte file, "
                f"expected {self.spec.size} bytes",
                ranges_broken=True,
            )

    def _check_same(self, total: int, validator: Validator) -> None:
        known = self.partial.state.total
        if known is not None and total != known:
            raise Restart(f"{self.url} changed size from {known} to {total} bytes")
        if not self.validator().same_as(validator):
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
            gaps = self.partial.assembler.gaps(total)
            self.queue.extend(subtract(gaps, seg.start, seg.end))
        self.planned = True
        self.ready.set()  # the sidecar is saved within SAVE_INTERVAL, not now

    def check_linked(self, headers: Mapping[str, str]) -> None:
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


def linked_sha256(headers: Mapping[str, str]) -> str | None:
    """The SHA-256 in an ``X-Linked-Etag`` header, if it holds one (LFS files)."""
    value = headers.get("X-Linked-Etag", "").strip()
    value = value.removeprefix("W/").strip('"').lower()
    return value if len(value) == 64 and all(c in HEX for c in value) else None
