"""The one client configuration of the server tests: :func:`fast_config`.

Short timeouts and backoffs and no fsync, so a fault costs milliseconds; keywords
name the timeouts a test needs otherwise, and :func:`split_limits` the limits of
tests about ranged parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asynchub.config import HubConfig, Limits, RetryPolicy, Timeouts

__all__ = ("PART", "fast_config", "split_limits")

PART = 64 * 1024
"""Part size of :func:`split_limits` (the smallest the config allows)."""


def fast_config(
    cache_dir: Path | None = None,
    *,
    connect: float = 2.0,
    read: float = 0.5,
    **overrides: Any,
) -> HubConfig:
    """A config with ``connect`` and ``read`` timeouts, 4 quick attempts, no fsync;
    ``overrides`` are further :class:`HubConfig` fields (``limits``, ``retry``...)."""
    values: dict[str, Any] = {
        "cache_dir": cache_dir,
        "retry": RetryPolicy(
            attempts=4, backoff_base=0.01, backoff_max=0.05, max_retry_after=5.0
        ),
        "timeouts": Timeouts(connect=connect, read=read),
        "fsync": False,
    }
    values.update(overrides)
    return HubConfig(**values)


def split_limits(**limits: int) -> Limits:
    """Limits that split anything above :data:`PART`, at most 4 parts a file."""
    values = {"part_size": PART, "split_threshold": PART, "max_parts_per_file": 4}
    values.update(limits)
    return Limits(**values)
