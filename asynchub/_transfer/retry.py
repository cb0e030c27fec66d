"""Exponential backoff with full jitter, ``Retry-After``, and a budget that resets.

One :class:`Backoff` follows one stream of requests (a part, a manifest GET). Each
failure costs one attempt; ``reset()`` is called whenever bytes arrive, so a long
download over a flaky link is not killed by a few unrelated blips. The stream also
has a budget in time (``RetryPolicy.budget``, from its start or last byte), so many
cheap failures (instant 503s) cannot retry for longer than that either.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from datetime import timezone

import anyio

from ..config import RetryPolicy
from ..errors import RetryableStatusError, TransferError

__all__ = ("Backoff", "parse_retry_after")


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to str.isdigit
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class Backoff:
    """Counts consecutive failures of one stream and sleeps between attempts."""

    def __init__(
        self, policy: RetryPolicy, rng: Callable[[], float] = random.random
    ) -> None:
        self.policy = policy
        self.failures = 0
        self._rng = rng
        self._since = time.monotonic()

    def reset(self) -> None:
        """Bytes arrived: the next failure starts a fresh budget."""
        self.failures = 0
        self._since = time.monotonic()

    def delay(self, retry_after: float | None = None) -> float:
        """Seconds to sleep before the next attempt (after ``failures`` failures)."""
        policy = self.policy
        if retry_after is not None and policy.respect_retry_after:
            return min(retry_after, policy.max_retry_after)
        exponent = min(max(self.failures - 1, 0), 60)
        cap = min(policy.backoff_max, policy.backoff_base * 2.0**exponent)
        return self._rng() * cap

    async def wait_or_raise(self, err: TransferError) -> None:
        """Count ``err``; re-raise it when the budget is spent, else sleep."""
        self.failures += 1
        if self.failures >= self.policy.attempts:
            raise err
        retry_after = err.retry_after if isinstance(err, RetryableStatusError) else None
        delay = self.delay(retry_after)
        if time.monotonic() - self._since + delay > self.policy.budget:
            raise err
        await anyio.sleep(delay)
