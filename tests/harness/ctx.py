"""The request a behaviour answers: :class:`Ctx`, and the :data:`Handler` type.

A behaviour either returns an aiohttp response, or writes raw bytes on the
connection with :meth:`Ctx.head` and :meth:`Ctx.body` and returns None.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web

from .http import REASONS, abort, flushed, parse_range
from .log import Request

if TYPE_CHECKING:
    from .server import Server

__all__ = ("Ctx", "Handler")

Handler = Callable[["Ctx"], Awaitable[web.StreamResponse | None]]
HIGH_WATER = 256 * 1024
"""Bytes queued in a connection beyond which raw writes wait for the client."""


class Ctx:
    """One request being answered: its log entry, its place in the path's script
    (``index``: the requests to the path before it) and the raw connection."""

    def __init__(
        self, server: Server, request: web.BaseRequest, log: Request, index: int
    ) -> None:
        self.server, self.request, self.log, self.index = server, request, log, index

    @property
    def range(self) -> tuple[int, int | None] | None:
        """The first ``bytes=N-[M]`` range asked for, else None."""
        return parse_range(self.log.range)

    @property
    def transport(self) -> asyncio.Transport:
        transport = self.request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client went away")
        return transport

    async def head(self, status_code: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers (always ``Connection: close``)."""
        self.log.status = status_code
        lines = [f"HTTP/1.1 {status_code} {REASONS.get(status_code, 'X')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("Connection: close")
        await self.raw(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    async def raw(self, data: bytes) -> None:
        """Write bytes as they are, waiting while the client does not read."""
        transport = self.transport
        transport.write(data)
        while transport.get_write_buffer_size() > HIGH_WATER:
            await asyncio.sleep(0.001)
            transport = self.transport

    async def body(self, data: bytes, chunk: int = 64 * 1024) -> None:
        """Send body bytes, counted in the log."""
        view = memoryview(data)
        for start in range(0, len(view), chunk):
            piece = bytes(view[start : start + chunk])
            await self.raw(piece)
            self.log.sent += len(piece)

    async def send(
        self, status_code: int, headers: Mapping[str, str], data: bytes = b""
    ) -> None:
        """A complete raw response with ``Content-Length``."""
        await self.head(status_code, {**headers, "Content-Length": str(len(data))})
        await self.body(data)

    async def flushed(self) -> None:
        """Wait until the kernel has every byte written so far."""
        await flushed(self.request.transport)

    async def reset(self) -> None:
        """Abort the connection with a TCP RST (``SO_LINGER`` on, timeout 0)."""
        await abort(self.request.transport)
