"""Pytest fixtures around :mod:`tests.servers` (import the ones you need).

``from tests._server_fixtures import file_server, fast_config`` in a test module
makes them available there (tests/conftest.py belongs to the lead).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asynchub.config import HubConfig, Limits, RetryPolicy, Timeouts

from .servers import FileServer

__all__ = ("PART", "fast_config", "file_server", "small_config")

PART = 64 * 1024
"""Part size of :func:`small_config` (the smallest the config allows)."""


def small_config(**limits: int) -> HubConfig:
    """A config that splits anything above :data:`PART` and retries fast."""
    values = {"part_size": PART, "split_threshold": PART, "max_parts_per_file": 4}
    values.update(limits)
    return HubConfig(
        limits=Limits(**values),
        retry=RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05),
        timeouts=Timeouts(connect=2.0, read=2.0),
        fsync=False,
    )


@pytest.fixture
def fast_config() -> HubConfig:
    return small_config()


@pytest.fixture
async def file_server() -> AsyncIterator[FileServer]:
    """A :class:`FileServer` running in the test's event loop."""
    async with FileServer() as server:
        yield server
