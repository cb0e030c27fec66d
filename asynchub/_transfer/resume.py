"""Resuming: where a download starts, and one segment fetched across failures.

A file with bytes on disk from an earlier run starts at its first gap; a fresh one
at byte 0 (one part when it is big enough to split, else the whole file). A dropped
connection resumes its segment from the last byte received; the retry budget of a
segment resets whenever bytes arrive. A refused extra connection is the business of
:mod:`.hostconn`: :func:`fetch_resuming` asks it and stops with :class:`BackedOff`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..config import Limits, RetryPolicy
from ..errors import IncompleteTransferError, TransferError
from .failures import is_retryable
from .hostconn import Verdict
from .partial import Partial
from .parts import Segment
from .retry import Backoff
from .spec import FileSpec

__all__ = ("BackedOff", "Route", "fetch_resuming", "first_segment")


class BackedOff(Exception):
    """The host refused this extra connection: the segment is left to the others."""


@dataclass
class Route:
    """Where requests go: the URL, then where it last redirected to.

    Parts go straight to the CDN a hub redirects to (Hugging Face: a signed URL
    valid for an hour) instead of paying the redirect again for each part; after
    any failure there the next request goes to the URL itself again (at once if
    the failure would not be retried, as an expired signature is not).
    """

    url: str
    target: str = ""

    def __post_init__(self) -> None:
        self.target = self.target or self.url

    def back_to_url(self) -> bool:
        """Send the next request to the URL itself; True if it had redirected."""
        redirected, self.target = self.target != self.url, self.url
        return redirected


def first_segment(
    partial: Partial, spec: FileSpec, limits: Limits, use_ranges: bool
) -> Segment | None:
    """The probe's range; None when a resumed partial already has every byte."""
    state, part = partial.state, limits.part_size
    if state.total is not None and partial.resumed > 0:
        gaps = partial.assembler.gaps(state.total)
        if not gaps:
            return None
        start, end = gaps[0]
        return Segment(start, min(end, start + part), start)
    size = spec.size
    if use_ranges and size is not None and _split(size, limits):
        return Segment(0, part, 0)
    return Segment(0, None, 0, whole=True)  # the answer tells the size


def _split(size: int, limits: Limits) -> bool:
    return size >= limits.split_threshold and size > limits.part_size


async def fetch_resuming(
    seg: Segment,
    attempt: Callable[[Segment], Awaitable[None]],
    judge: Callable[[TransferError, Segment], Verdict | None],
    route: Route,
    policy: RetryPolicy,
) -> None:
    """Fetch ``seg``, resuming from ``seg.pos`` after each failure.

    ``judge`` tells a refused connection (:mod:`.hostconn`); raises
    :class:`BackedOff`, or the last error once retries are spent.
    """
    retries = _Retries(policy)
    while not seg.done:
        before = seg.pos
        try:
            await attempt(seg)
        except TransferError as err:
            await retries.after(err, judge(err, seg), route, seg.pos > before)
            continue
        if not seg.done and seg.pos == before:
            await retries.backoff.wait_or_raise(_short(seg, route.url))


class _Retries:
    """The retry budget of one segment, and how often it asked the URL again."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.backoff = Backoff(policy)
        self.asked_again = 0  # bounded: a URL may redirect to a failing target forever

    async def after(
        self,
        err: TransferError,
        verdict: Verdict | None,
        route: Route,
        progressed: bool,
    ) -> None:
        """Raise (``err``, or :class:`BackedOff`), or wait before the next attempt
        (no wait when a redirect's target failed: the URL is asked again first)."""
        if verdict == "back off":
            raise BackedOff from err
        redirected = route.back_to_url()
        policy = self.backoff.policy
        if not is_retryable(err, policy):
            if redirected and self.asked_again < policy.attempts:
                self.asked_again += 1  # e.g. a signed redirect expired: ask the URL
                return
            if verdict != "retry":
                raise err
        if progressed:
            self.backoff.reset()
        await self.backoff.wait_or_raise(err)


def _short(seg: Segment, url: str) -> IncompleteTransferError:
    return IncompleteTransferError(
        f"{url} ended the body at byte {seg.pos} of {seg.end}", url=url
    )
