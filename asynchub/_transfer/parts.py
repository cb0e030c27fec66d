"""The byte ranges of one download: segments being fetched and the queue of parts.

Pure bookkeeping, no I/O: :class:`Segment` is one range in flight, :class:`Parts`
the ranges still to fetch, cut into parts only as workers take them.

The tail: connections finish their parts unevenly, so once the queue is empty a
connection that is idle takes the second half of the range in flight that would
finish last (:func:`split_largest`, work stealing as aria2c does). The range's
request stops at the cut: the stream writer reads ``Segment.end`` as the body
arrives and drops the rest of the body with its connection (an HTTP/1.1 response
not read to its end cannot be reused), so a split costs a connection.

It is made only when the range has at least ``limits.min_split_seconds`` (0.3 s)
left at its measured rate (:class:`Pace`): the split saves at most half of that,
against a round trip and, on a TLS CDN, a handshake and a slow start (0.1-0.2 s).
On a fast link a part drains in milliseconds and nothing is split; at 16 MiB/s a
connection, 5 MiB left still is. A body's own rate is trusted after
:data:`MEASURE_AFTER`; a younger one is taken to run as fast as the idle
connection's last request. Both halves must also be at least
``limits.min_split_size``. Smaller parts near the end would keep connections too,
but cost requests on every file and do not help one slow connection.
The resume sidecar records the bytes written, not the parts, so a split changes
nothing there.
"""

from __future__ import annotations

import concurrent.futures
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = (
    "MEASURE_AFTER",
    "Batch",
    "Pace",
    "Parts",
    "Segment",
    "count_parts",
    "split_largest",
    "split_ranges",
    "subtract",
)

MEASURE_AFTER = 0.1
"""Seconds a body must have run before its own rate is trusted: its first chunks
come in a burst (what was in flight when the headers arrived)."""


@dataclass
class Batch:
    """A fixed buffer being filled from the network before one thread hop."""

    buf: bytearray
    size: int = 0
    _view: memoryview = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Copied into through a memoryview: a bytearray's own slice assignment
        # from a memoryview first copies it into a temporary bytearray.
        self._view = memoryview(self.buf)

    @property
    def full(self) -> bool:
        return self.size == len(self.buf)

    def fill(self, view: memoryview) -> memoryview:
        """Copy as much of ``view`` as fits; return the rest."""
        take = min(len(view), len(self.buf) - self.size)
        self._view[self.size : self.size + take] = view[:take]
        self.size += take
        return view[take:]


@dataclass
class Segment:
    """A byte range ``[start, end)`` being fetched; ``pos`` is the next byte.

    ``answered``: the segment's current request got a response (a connection
    refused or reset before one is a refusal, see :mod:`.hostconn`). ``began`` and
    ``got``: when the current body began and the bytes it brought (its rate).
    """

    start: int
    end: int | None
    pos: int
    whole: bool = False
    finished: bool = False
    answered: bool = False
    pending: tuple[concurrent.futures.Future[None], Batch] | None = None
    flushed_at: float = field(default_factory=time.monotonic)
    began: float | None = None
    got: int = 0

    @property
    def done(self) -> bool:
        return self.finished or (self.end is not None and self.pos >= self.end)

    @property
    def left(self) -> int:
        """Bytes still to fetch of a ranged segment (0: unknown end or a whole file)."""
        if self.end is None or self.whole or self.finished:
            return 0
        return max(0, self.end - self.pos)

    def rate(self, now: float) -> float | None:
        """Bytes a second of the current body until ``now`` (None: none began)."""
        if self.began is None or now <= self.began:
            return None
        return self.got / (now - self.began)


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


@dataclass(frozen=True)
class Pace:
    """What a split is weighed by (see the module docs): the clock, the rate of the
    idle connection's last request (None: unknown) and the least time a range must
    have left to be split."""

    now: float
    fallback: float | None
    min_seconds: float

    def seconds_left(self, seg: Segment) -> float:
        """How long ``seg`` needs for its bytes left (0 when no rate is known)."""
        rate = self.fallback
        if seg.began is not None and self.now - seg.began >= MEASURE_AFTER:
            rate = seg.rate(self.now)
        if rate is None or not seg.left:
            return 0.0
        return seg.left / rate if rate > 0 else math.inf


def split_largest(
    running: Iterable[Segment], min_size: int, reserve: int, pace: Pace
) -> Segment | None:
    """The second half of the range in flight that would finish last, for an idle
    connection, if that is worth a connection (see the module docs).

    The victim's ``end`` moves to the cut. ``reserve``: bytes past its ``pos`` the
    victim may hold unwritten (a batch and a read), never given away. None when no
    range has ``pace.min_seconds`` left and both halves at least ``min_size`` bytes.
    """
    worth = [
        seg
        for seg in running
        if _smaller_half(seg, reserve) >= min_size
        and pace.seconds_left(seg) >= pace.min_seconds
    ]
    victim = max(
        worth, key=lambda seg: (pace.seconds_left(seg), seg.left), default=None
    )
    if victim is None or victim.end is None:
        return None
    cut, end = victim.pos + _keep(victim, reserve), victim.end
    victim.end = cut
    return Segment(cut, end, cut)


def _keep(seg: Segment, reserve: int) -> int:
    """The bytes a split leaves to ``seg``: ``reserve`` and half of the rest."""
    return reserve + (seg.left - reserve) // 2


def _smaller_half(seg: Segment, reserve: int) -> int:
    """The smaller of the two ranges a split of ``seg`` would make (0: none)."""
    if seg.end is None or seg.left <= reserve:
        return 0
    keep = _keep(seg, reserve)
    return min(keep, seg.left - keep)


def count_parts(gaps: list[tuple[int, int]], part: int) -> int:
    """How many parts of at most ``part`` bytes ``gaps`` make (without making them)."""
    return sum(-(-(end - start) // part) for start, end in gaps if end > start)


def subtract(
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


def split_ranges(gaps: list[tuple[int, int]], part: int) -> list[tuple[int, int]]:
    """Cut each gap into parts of at most ``part`` bytes."""
    return [
        (pos, min(pos + part, end))
        for start, end in gaps
        for pos in range(start, end, part)
    ]
