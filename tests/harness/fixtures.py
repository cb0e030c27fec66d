"""Pytest fixtures around :class:`~.server.Server` (import the ones a module uses)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .server import Server

__all__ = ("file_server",)


@pytest.fixture
async def file_server() -> AsyncIterator[Server]:
    """A :class:`Server` running in the test's event loop."""
    async with Server() as server:
        yield server
