"""Pytest fixtures around :class:`~.server.Server` (import the ones a module uses)."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .helpers import self_signed_cert
from .server import Server

__all__ = ("certificate", "file_server")


@pytest.fixture
async def file_server() -> AsyncIterator[Server]:
    """A :class:`Server` running in the test's event loop."""
    async with Server() as server:
        yield server


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (skips without openssl)."""
    try:
        return self_signed_cert(tmp_path_factory.mktemp("tls"))
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"openssl CLI unavailable to make a test certificate: {exc}")
