"""Connections per file: up to the per-host cap, and the back-off when a host
refuses extra ranged connections (403/429/503), remembered for the run."""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from asynchub._transfer import Engine, FileSpec
from asynchub._transfer.hostconn import HostConnections, is_refusal
from asynchub.config import Limits
from asynchub.errors import HTTPStatusError, RetryableStatusError

from .harness import PART, fast_config, split_limits

pytestmark = pytest.mark.anyio
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class StingyServer:
    """Serves files in 16 KiB steps; more than ``allow`` ranged requests of one
    client at once are answered with ``status``."""

    allow: int
    status: int = 403
    files: dict[str, bytes] = field(default_factory=dict)
    active: int = 0
    peak: int = 0  # most requests served at once
    refused: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        data = self.files[request.path]
        match = _RANGE.fullmatch(request.headers.get("Range", ""))
        if match and self.active >= self.allow:
            self.refused += 1
            if self.status == 0 and request.transport is not None:
                request.transport.abort()  # 0: reset the connection, no answer
            return web.Response(status=self.status or 503)
        self.active += 1
        self.peak = max(self.peak, self.active)
        done = False
        try:
            start, end = 0, len(data)
            response = web.StreamResponse(status=200)
            if match:
                start = int(match.group(1))
                end = int(match.group(2)) + 1 if match.group(2) else len(data)
                response.set_status(206)
                span = f"bytes {start}-{end - 1}/{len(data)}"
                response.headers["Content-Range"] = span
            response.headers["ETag"] = '"v1"'
            response.headers["Accept-Ranges"] = "bytes"
            response.content_length = end - start
            await response.prepare(request)
            for pos in range(start, end, 16 * 1024):
                if pos + 16 * 1024 >= end:
                    self.active -= 1  # done once the last bytes are handed over
                    done = True
                await response.write(data[pos : min(end, pos + 16 * 1024)])
                await asyncio.sleep(0.005)  # slow enough for parts to overlap
            await response.write_eof()
            return response
        finally:
            if not done:
                self.active -= 1


@pytest.fixture
async def stingy() -> AsyncIterator[StingyServer]:
    server = StingyServer(allow=2)
    app = web.Application()
    app.router.add_get("/{name}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


def _blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _spec(server: StingyServer, name: str, data: bytes, dest: Path) -> FileSpec:
    server.files[f"/{name}"] = data
    return FileSpec(
        (f"{server.url}/{name}",),
        dest / name,
        hashlib.sha256(data).hexdigest(),
        len(data),
        label=name,
    )


@pytest.mark.parametrize("status", [403, 429, 503, 0])
async def test_refused_extra_connections_back_off_and_are_remembered(
    stingy: StingyServer, tmp_path: Path, status: int
) -> None:
    stingy.status = status
    first, second = _blob(1, 8 * PART), _blob(2, 8 * PART)
    async with Engine(
        fast_config(read=2.0, limits=split_limits(max_parts_per_file=4))
    ) as engine:
        got = await engine.fetch(_spec(stingy, "a.bin", first, tmp_path))
        assert got.path.read_bytes() == first  # the file did not fail
        assert stingy.refused >= 1 and stingy.peak <= 2
        refused = stingy.refused
        got = await engine.fetch(_spec(stingy, "b.bin", second, tmp_path))
        assert got.path.read_bytes() == second
    assert stingy.refused == refused  # the next file asked for 2, not 4 again
    assert stingy.peak == 2  # both connections the host allows were used


async def test_a_refused_first_request_still_fails(
    stingy: StingyServer, tmp_path: Path
) -> None:
    stingy.allow = 0  # every ranged request refused: not a connection limit
    data = _blob(3, 8 * PART)
    async with Engine(
        fast_config(read=2.0, limits=split_limits(max_parts_per_file=4))
    ) as engine:
        with pytest.raises(HTTPStatusError):
            await engine.fetch(_spec(stingy, "c.bin", data, tmp_path))


def test_host_limits_are_per_host_and_only_go_down() -> None:
    hosts = HostConnections(16)
    assert hosts.allowed("https://cdn.example/a") == 16
    assert hosts.refused(2, "https://hub.example/x", "https://cdn.example/a") == 2
    assert hosts.allowed("https://hub.example/y") == 2  # the origin remembers too
    assert hosts.allowed("https://CDN.example/b") == 2  # host names: any case
    assert hosts.allowed("https://other.example/c") == 16
    assert hosts.allowed("http://cdn.example/a") == 16  # another scheme or port
    assert hosts.refused(5, "https://cdn.example/a") == 2  # never raised again
    assert hosts.refused(0, "https://cdn.example/a") == 1  # at least one


def test_refusal_statuses() -> None:
    assert is_refusal(HTTPStatusError("x", status=403))
    assert is_refusal(_retryable(429)) and is_refusal(_retryable(503))
    assert not is_refusal(HTTPStatusError("x", status=401))
    assert not is_refusal(_retryable(500))


def _retryable(status: int) -> RetryableStatusError:
    return RetryableStatusError("x", status=status, url="u", retry_after=None)


def test_a_file_alone_may_use_every_connection_to_its_host() -> None:
    # Deliberate default change (issue 11): 8 parts per file left half of a
    # per-connection-capped link unused; the per-host cap now bounds a file.
    limits = Limits()
    assert limits.max_parts_per_file == limits.max_connections_per_host == 16


async def test_the_notice_says_connections_are_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While refused connections are retried, the "still waiting" notice says so
    (not "no answer"); the file still fails at its first-byte deadline."""
    import logging

    from asynchub.config import HubConfig, RetryPolicy, Timeouts
    from asynchub.errors import TransferTimeoutError

    config = HubConfig(
        timeouts=Timeouts(connect=0.3, read=0.3, first_byte=1.0, notice=0.25),
        retry=RetryPolicy(attempts=1000, backoff_base=0.02, backoff_max=0.05),
        fsync=False,
    )
    spec = FileSpec(("http://127.0.0.1:9/a.bin",), tmp_path / "a.bin", label="a")
    caplog.set_level(logging.WARNING, "asynchub")
    async with Engine(config) as engine:
        with pytest.raises(TransferTimeoutError) as failed:
            await engine.fetch(spec)
    assert "127.0.0.1:9 refused" in failed.value.message  # not "no first byte"
    assert "nothing listens" in (failed.value.hint or "")
    notes = [
        r.getMessage() for r in caplog.records if "still waiting" in r.getMessage()
    ]
    assert notes and all("127.0.0.1:9 refused" in n for n in notes)
    assert all("; retrying" in n and "no answer" not in n for n in notes)
