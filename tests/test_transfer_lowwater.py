"""Reading a fast body in fewer, larger pieces (the socket's receive low-water mark,
``_transfer/lowwater.py``), and the ways such a mark could hold bytes back for good:
the body's last bytes, the next response on the connection, a link that slows down,
TLS. Real sockets: an aiohttp server writing small pieces, aiohttp's client, the
package's :class:`BodyChunks`."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web

from asynchub._transfer import lowwater
from asynchub._transfer.http import BodyChunks
from asynchub.errors import TransferTimeoutError

from .harness import Ctx, Handler, Server, certificate, server_tls

__all__ = ("certificate",)  # a fixture

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(
        not sys.platform.startswith("linux"), reason="SO_RCVLOWAT is used on Linux"
    ),
]

KiB = 1024
MiB = 1024 * KiB
PIECE = 16 * KiB
FAST = 4 * MiB  # the paced part: long enough (> MEASURE_AFTER) to set a mark
COALESCE = 0.05
BODY = bytes(range(256)) * ((FAST + 128 * KiB) // 256)


@pytest.fixture(autouse=True)
def patient_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    """No rescue by the watchdog unless a test asks: a mark that holds the last
    bytes back must show as a stall, not as a quarter-second delay."""
    monkeypatch.setattr(lowwater, "WATCHDOG", 60.0)


async def _pieces(ctx: Ctx, data: bytes, pause: float = 0.002) -> None:
    """Write ``data`` in small pieces with pauses: the client, left alone, wakes for
    each of them."""
    for start in range(0, len(data), PIECE):
        await ctx.body(data[start : start + PIECE])
        await asyncio.sleep(pause)


def _tail_then_silence(body: bytes) -> Handler:
    """Raw: the fast part in pieces, the rest at once, then the connection stays
    open (so only the Content-Length ends the body, no FIN)."""

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(body))})
        await _pieces(ctx, body[:FAST])
        await ctx.body(body[FAST:])
        await asyncio.sleep(30)

    return handler


def _keep_alive(body: bytes) -> Handler:
    """A keep-alive response written in pieces (aiohttp's own framing)."""

    async def handler(ctx: Ctx) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = len(body)
        await response.prepare(ctx.request)
        for start in range(0, len(body), PIECE):
            await response.write(body[start : start + PIECE])
            await asyncio.sleep(0.002)
        await response.write_eof()
        return response

    return handler


async def _read(
    response: aiohttp.ClientResponse, coalesce: float, stop_after: int | None = None
) -> tuple[bytes, int]:
    """The body (or its first ``stop_after`` bytes) and the number of reads."""
    got, reads = bytearray(), 0
    chunks = BodyChunks(response, str(response.url), coalesce)
    try:
        async for chunk in chunks:
            got += chunk
            reads += 1
            if stop_after is not None and len(got) >= stop_after:
                break
    finally:
        chunks.close()
    return bytes(got), reads


def _mark(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)


def _socket(response: aiohttp.ClientResponse) -> socket.socket:
    assert response.connection is not None and response.connection.transport
    sock = response.connection.transport.get_extra_info("socket")
    assert sock is not None
    return sock  # type: ignore[no-any-return]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_a_fast_body_comes_in_fewer_reads(
    session: aiohttp.ClientSession,
) -> None:
    reads = {}
    async with Server() as srv:
        srv.route("/f", _keep_alive(BODY))
        for coalesce in (0.0, COALESCE):
            async with session.get(srv.url("/f")) as response:
                got, reads[coalesce] = await _read(response, coalesce)
            assert got == BODY
    assert reads[COALESCE] * 2 < reads[0.0], reads


async def test_the_last_bytes_are_not_held_back(session: aiohttp.ClientSession) -> None:
    async with Server() as srv:
        srv.route("/f", _tail_then_silence(BODY))
        async with session.get(srv.url("/f")) as response:
            with anyio.fail_after(10):  # a stall would wait for the server's 30 s
                got, _ = await _read(response, COALESCE)
    assert got == BODY


async def test_the_mark_is_back_to_one_for_the_next_response(
    session: aiohttp.ClientSession,
) -> None:
    small = b"next response" * 10
    async with Server() as srv:
        srv.route("/big", _keep_alive(BODY))
        srv.route("/small", _keep_alive(small))
        async with session.get(srv.url("/big")) as response:
            sock = _socket(response)
            marks = []
            chunks = BodyChunks(response, "big", COALESCE)
            async for _ in chunks:
                marks.append(_mark(sock))
        assert max(marks) > 1  # coalescing did happen
        assert _mark(sock) == 1  # and ended with the body
        with anyio.fail_after(5):
            async with session.get(srv.url("/small")) as response:
                assert await response.read() == small
        assert srv.connections == 1  # the same connection carried both


async def test_a_reader_that_stops_early_leaves_the_mark_at_one(
    session: aiohttp.ClientSession,
) -> None:
    async with Server() as srv:
        srv.route("/f", _keep_alive(BODY))
        async with session.get(srv.url("/f")) as response:
            sock = _socket(response)
            got, _ = await _read(response, COALESCE, stop_after=FAST - 4 * PIECE)
            assert _mark(sock) == 1
    assert got == BODY[: len(got)]


async def test_a_link_that_slows_down_drops_the_mark(
    session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lowwater, "WATCHDOG", 0.25)
    slow_from: list[float] = []

    body = BODY[: FAST + 64 * KiB]

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(body))})
        await _pieces(ctx, body[:FAST])
        slow_from.append(time.monotonic())
        for start in range(FAST, len(body), KiB):  # 64 KiB in 1.3 s
            await ctx.body(body[start : start + KiB])
            await asyncio.sleep(0.02)
        await asyncio.sleep(30)

    arrivals: list[tuple[float, int]] = []
    async with Server() as srv:
        srv.route("/f", handler)
        async with session.get(srv.url("/f")) as response:
            got = 0
            with anyio.fail_after(10):
                async for chunk in BodyChunks(response, "f", COALESCE):
                    got += len(chunk)
                    arrivals.append((time.monotonic(), got))
    assert got == len(body)
    by = slow_from[0] + 0.9  # the trickle is under way, 0.4 s from its end
    assert max(n for t, n in arrivals if t <= by) > FAST + 16 * KiB, arrivals[-8:]


@pytest.mark.parametrize("tail", [1, 5000, 16 * KiB + 7, 40 * KiB, 100 * KiB])
async def test_over_tls_the_last_bytes_are_not_held_back(
    session: aiohttp.ClientSession, certificate: tuple[Path, Path], tail: int
) -> None:
    """A TLS record read from the socket but not yet decrypted is the body's, not
    the socket's: the mark keeps a margin below what the body still owes."""
    body = BODY[: FAST + tail]
    client = ssl.create_default_context(cafile=str(certificate[0]))
    async with Server(server_tls(*certificate)) as srv:
        srv.route("/f", _tail_then_silence(body))
        async with session.get(srv.url("/f"), ssl=client) as response:
            with anyio.fail_after(10):
                got, reads = await _read(response, COALESCE)
    assert got == body


async def test_a_server_that_goes_silent_has_every_byte_it_sent_delivered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile or broken server claims more than it sends and holds the connection
    open: the stall is detected as before, and no byte it did send is kept back in
    the kernel by the mark (the watchdog lowers it once reads stop)."""
    monkeypatch.setattr(lowwater, "WATCHDOG", 0.25)
    sent = BODY[: FAST + 100 * KiB]

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(sent) + MiB)})
        await _pieces(ctx, sent)
        await asyncio.sleep(30)

    got = bytearray()
    timeout = aiohttp.ClientTimeout(sock_read=1.5)
    async with Server() as srv, aiohttp.ClientSession(timeout=timeout) as client:
        srv.route("/f", handler)
        async with client.get(srv.url("/f")) as response:
            with anyio.fail_after(10), pytest.raises(TransferTimeoutError):
                async for chunk in BodyChunks(response, "f", COALESCE):
                    got += chunk
    assert bytes(got) == sent
