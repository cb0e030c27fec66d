"""Scripted behaviours for :meth:`Server.route`: small pieces, one per request.

Each returns a :data:`~.server.Handler`. :func:`serve` is a correct server (200,
206 for ``Range`` honouring ``If-Range``, 416); the others break one thing on top
of it or instead of it: a reset after N bytes, a clean close too early, a lying
``Content-Length`` or ``Content-Range``, a stall, a trickle, a fixed status, a
redirect, chunked or gzip bodies, a Git LFS pointer, an HTML error page. They all
answer with raw bytes and ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Mapping
from typing import Any

from .ctx import Ctx, Handler
from .http import choose_range, if_range_ok

__all__ = (
    "chunked",
    "close_without_response",
    "gzip_encoded",
    "html_page",
    "ignore_range",
    "lfs_pointer",
    "overlong",
    "paced",
    "redirect",
    "reset_after",
    "serve",
    "stall",
    "status",
    "trickle",
    "truncated",
    "wrong_range",
)

Answer = tuple[int, dict[str, str], bytes]
"""Status, headers (with ``Content-Length``) and body."""


def _answer(
    ctx: Ctx,
    data: bytes,
    *,
    etag: str | None = '"v1"',
    last_modified: str | None = None,
    ranges: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """What a correct server sends to this request for ``data``."""
    base = {k: v for k, v in (("ETag", etag), ("Last-Modified", last_modified)) if v}
    base.update(headers or {})
    wanted = choose_range(ctx.log.range, len(data)) if ranges else None
    if wanted is not None and not if_range_ok(ctx.log.if_range, etag, last_modified):
        wanted = None
    if wanted is None:
        base["Accept-Ranges"] = "bytes"
        status_code, body = 200, data
    elif isinstance(wanted, str):  # "416"
        base["Content-Range"] = f"bytes */{len(data)}"
        status_code, body = 416, b""
    else:
        first, last = wanted
        base["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
        status_code, body = 206, data[first : last + 1]
    return status_code, {**base, "Content-Length": str(len(body))}, body


def serve(data: bytes, **kwargs: Any) -> Handler:
    """A correct server: 200, or 206 for ``Range`` (honouring ``If-Range``), 416.

    Keywords: ``etag`` (``'"v1"'``; None: none), ``last_modified``, ``ranges``
    (False: always 200), ``headers`` (added to every answer).
    """

    async def handler(ctx: Ctx) -> None:
        code, headers, body = _answer(ctx, data, **kwargs)
        await ctx.head(code, headers)
        await ctx.body(body)

    return handler


def reset_after(data: bytes, n: int, **kwargs: Any) -> Handler:
    """Like :func:`serve` (ranges honoured) but RST after ``n`` body bytes."""

    async def handler(ctx: Ctx) -> None:
        code, headers, body = _answer(ctx, data, **kwargs)
        await ctx.head(code, headers)
        await ctx.body(body[:n])
        await ctx.reset()

    return handler


def truncated(data: bytes, missing: int, **kwargs: Any) -> Handler:
    """Announce the full length but close cleanly (FIN) ``missing`` bytes early."""

    async def handler(ctx: Ctx) -> None:
        code, headers, body = _answer(ctx, data, **kwargs)
        await ctx.head(code, headers)
        await ctx.body(body[: max(0, len(body) - missing)])
        await ctx.flushed()

    return handler


def paced(
    data: bytes,
    steps: list[tuple[int, float]],
    *,
    stall_after: float | None = None,
    **kwargs: Any,
) -> Handler:
    """Like :func:`serve` (ranges honoured), but send the body in ``steps`` of
    (bytes, pause seconds); then the rest at once, or go silent for ``stall_after``
    seconds instead when it is given."""

    async def handler(ctx: Ctx) -> None:
        code, headers, body = _answer(ctx, data, **kwargs)
        await ctx.head(code, headers)
        pos = 0
        for size, pause in steps:
            await ctx.body(body[pos : pos + size])
            pos += size
            await asyncio.sleep(pause)
        if stall_after is not None:
            await asyncio.sleep(stall_after)
            return
        await ctx.body(body[pos:])

    return handler


def ignore_range(data: bytes, etag: str | None = '"v1"') -> Handler:
    """Always a full 200, whatever ``Range`` says."""
    return serve(data, etag=etag, ranges=False)


def overlong(data: bytes, extra: bytes) -> Handler:
    """Announce ``len(data)`` but send ``data + extra`` (a lying Content-Length)."""

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(data)), "ETag": '"v1"'})
        await ctx.body(data + extra)
        await ctx.flushed()

    return handler


def wrong_range(data: bytes, content_range: str | None, shift: int = 0) -> Handler:
    """A 206 to any ``Range`` with a chosen ``Content-Range`` (None: header missing).

    The body starts ``shift`` bytes after the requested start, so a client that
    trusts the offset it asked for instead of the header would splice wrong bytes.
    ``content_range`` may use ``{start}``, ``{end}`` and ``{total}``.
    """

    async def handler(ctx: Ctx) -> None:
        wanted = ctx.range
        if wanted is None:
            await serve(data)(ctx)
            return
        start = wanted[0] + shift
        headers = {"ETag": '"v1"'}
        if content_range is not None:
            headers["Content-Range"] = content_range.format(
                start=start, end=len(data) - 1, total=len(data)
            )
        await ctx.send(206, headers, data[start:])

    return handler


def status(
    code: int, headers: Mapping[str, str] | None = None, data: bytes = b""
) -> Handler:
    """A fixed status with fixed headers and body."""

    async def handler(ctx: Ctx) -> None:
        await ctx.send(code, dict(headers or {}), data)

    return handler


def redirect(location: str, code: int = 302) -> Handler:
    """A redirect to ``location`` (absolute, a path on this server, any scheme)."""
    return status(code, {"Location": location})


def chunked(data: bytes, piece: int = 4096, *, reset: bool = False) -> Handler:
    """A 200 with ``Transfer-Encoding: chunked`` and no ``Content-Length``.

    With ``reset`` the connection is reset after the last data chunk, before the
    terminating zero-size chunk: the client has every byte but cannot know it.
    """

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Transfer-Encoding": "chunked", "ETag": '"v1"'})
        for start in range(0, len(data), piece):
            part = data[start : start + piece]
            await ctx.raw(f"{len(part):x}\r\n".encode())
            await ctx.body(part)
            await ctx.raw(b"\r\n")
        if reset:
            await ctx.reset()
            return
        await ctx.raw(b"0\r\n\r\n")

    return handler


def gzip_encoded(data: bytes) -> Handler:
    """A 200 whose body is ``gzip(data)`` with ``Content-Encoding: gzip``."""
    packed = gzip.compress(data, mtime=0)
    return status(200, {"Content-Encoding": "gzip", "ETag": '"gz"'}, packed)


def stall(data: bytes, after: int, seconds: float) -> Handler:
    """Send the headers and ``after`` bytes, then go silent for ``seconds``."""

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(data)), "ETag": '"v1"'})
        await ctx.body(data[:after])
        await asyncio.sleep(seconds)

    return handler


def trickle(data: bytes, interval: float, limit: int) -> Handler:
    """Send one byte every ``interval`` seconds, at most ``limit`` bytes, then stop."""

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(data)), "ETag": '"v1"'})
        for i in range(min(limit, len(data))):
            await ctx.body(data[i : i + 1])
            await asyncio.sleep(interval)

    return handler


def close_without_response() -> Handler:
    """Accept the request, then close the connection without a byte."""

    async def handler(ctx: Ctx) -> None:
        ctx.log.status = -1

    return handler


def lfs_pointer(oid: str, size: int) -> Handler:
    """A 200 carrying a Git LFS pointer text, as raw.githubusercontent.com does."""
    text = "version https://git-lfs.github.com/spec/v1\n"
    text += f"oid sha256:{oid}\nsize {size}\n"
    return status(200, {"Content-Type": "text/plain"}, text.encode())


def html_page(size: int | None = None) -> Handler:
    """A 200 HTML error page (padded to ``size`` bytes when given)."""
    page = b"<!DOCTYPE html>\n<html><head><title>Error</title></head><body>"
    page += b"Sorry, something went wrong.</body></html>\n"
    if size is not None:
        page = (page + b" " * size)[:size]
    return status(200, {"Content-Type": "text/html; charset=utf-8"}, page)
