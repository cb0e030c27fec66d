"""A well-behaved file for :meth:`Server.add`, with per-file faults (:class:`Behavior`).

:class:`File` answers with aiohttp responses (keep-alive), with real HTTP semantics
(``Range``, ``If-Range``, ``ETag``, ``Last-Modified``, ``304``, ``416``), from bytes in
memory or a file read as it is sent. Its faults, all combinable:

- ``fail_first=N, fail_status=503, retry_after="1"``: N errors, then service;
- ``fail_statuses=(500, 502, 503)``: one error per status, in order, then service;
- ``truncate_after=N, truncate_times=K``: the first K responses send N body bytes
  and then a real TCP reset (``SO_LINGER`` 0), not a clean close;
- ``stall_after=N, stall_seconds=S, stall_times=K``: stop sending for S seconds;
- ``rate=B``: trickle at B bytes per second (applies to every response);
- ``ignore_range=True``: answer every request with 200 and the whole file;
- ``expire_after=N``: after N answers, 403 for good (an expired signed URL);
- ``versions=[a, b, ...], requests_per_version=N``: the content (and its ETag and
  Last-Modified) changes every N requests, as if the file were re-uploaded;
- ``etag=False`` / ``weak_etag=True`` / ``last_modified=False``: validators;
- ``chunked=True``: no Content-Length; ``content_type``: the Content-Type header.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from aiohttp import web

from .ctx import Ctx
from .http import abort, choose_range, http_date, if_range_ok, silence

__all__ = ("Behavior", "Body", "File")

CHUNK = 64 * 1024
_EPOCH = 1_700_000_000

Body = bytes | Path
"""File content: bytes in memory, or a file on disk read as it is sent."""


@dataclass
class Behavior:
    """How one file answers (see the module docs for each knob)."""

    ignore_range: bool = False
    ignore_if_range: bool = False
    fail_first: int = 0
    fail_status: int = 503
    fail_statuses: Sequence[int] = ()
    retry_after: str | None = None
    truncate_after: int | None = None
    truncate_times: int = 1
    stall_after: int | None = None
    stall_seconds: float = 30.0
    stall_times: int = 1
    rate: float | None = None
    versions: Sequence[bytes] = ()
    requests_per_version: int = 1
    etag: bool = True
    weak_etag: bool = False
    last_modified: bool = True
    chunked: bool = False
    content_type: str = "application/octet-stream"
    expire_after: int | None = None


@dataclass
class File:
    """The behaviour of an :meth:`Server.add`-ed path: ``data`` shaped by
    ``behavior`` (which a test may replace between requests)."""

    data: Body
    behavior: Behavior

    async def __call__(self, ctx: Ctx) -> web.StreamResponse:
        failure = _failure(self.behavior, ctx.index)
        if failure is not None:
            return failure
        data, headers = self._version(ctx.index)
        etag = headers.get("ETag")
        if etag and ctx.request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return await _send(ctx, self.behavior, data, headers)

    def _version(self, index: int) -> tuple[Body, dict[str, str]]:
        """The content served for the ``index``-th request and its validators."""
        behavior, data, number = self.behavior, self.data, 0
        if behavior.versions:
            last = len(behavior.versions) - 1
            number = min(index // behavior.requests_per_version, last)
            data = behavior.versions[number]
        headers = {"Accept-Ranges": "bytes", "Content-Type": behavior.content_type}
        if behavior.etag:
            tag = f'"{_tag(data)}"'
            headers["ETag"] = f"W/{tag}" if behavior.weak_etag else tag
        if behavior.last_modified:
            headers["Last-Modified"] = http_date(_EPOCH + number)
        return data, headers


def _failure(behavior: Behavior, index: int) -> web.Response | None:
    if behavior.expire_after is not None and index >= behavior.expire_after:
        return web.Response(status=403, text="Request has expired")
    statuses = [*behavior.fail_statuses, *[behavior.fail_status] * behavior.fail_first]
    if index >= len(statuses):
        return None
    headers = {"Retry-After": behavior.retry_after} if behavior.retry_after else {}
    return web.Response(status=statuses[index], headers=headers, text="try later")


def _tag(data: Body) -> str:
    if isinstance(data, Path):
        info = data.stat()
        return f"{info.st_size:x}-{info.st_mtime_ns:x}"
    return hashlib.sha256(data).hexdigest()[:16]


def _size(data: Body) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _wanted(
    ctx: Ctx, size: int, headers: dict[str, str], behavior: Behavior
) -> tuple[int, int] | None | str:
    """``(first, last)`` to send as 206, None for 200, ``"416"`` when unsatisfiable."""
    if behavior.ignore_range:
        return None
    wanted = choose_range(ctx.log.range, size)
    etag, modified = headers.get("ETag"), headers.get("Last-Modified")
    if behavior.ignore_if_range or if_range_ok(ctx.log.if_range, etag, modified):
        return wanted
    return None


async def _send(
    ctx: Ctx, behavior: Behavior, data: Body, headers: dict[str, str]
) -> web.StreamResponse:
    size = _size(data)
    wanted = _wanted(ctx, size, headers, behavior)
    if wanted == "416":
        headers["Content-Range"] = f"bytes */{size}"
        return web.Response(status=416, headers=headers, text="unsatisfiable")
    status, body = 200, _Slice(data, 0, size)
    if isinstance(wanted, tuple):
        first, last = wanted
        status, body = 206, _Slice(data, first, last + 1 - first)
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    response = web.StreamResponse(status=status, headers=headers)
    if not behavior.chunked:
        response.content_length = body.length
    await response.prepare(ctx.request)
    if ctx.request.method != "HEAD":
        with body:
            await _stream(ctx, response, behavior, body)
    return response


class _Slice:
    """``length`` bytes of a body from ``first``, read in pieces."""

    def __init__(self, data: Body, first: int, length: int) -> None:
        self.data, self.first, self.length = data, first, length
        self._file: BinaryIO | None = None

    def __enter__(self) -> _Slice:
        if isinstance(self.data, Path):
            self._file = self.data.open("rb")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def read(self, start: int, end: int) -> bytes:
        if self._file is None:
            assert isinstance(self.data, bytes)
            return self.data[self.first + start : self.first + end]
        self._file.seek(self.first + start)
        return self._file.read(end - start)


async def _stream(
    ctx: Ctx, response: web.StreamResponse, behavior: Behavior, body: _Slice
) -> None:
    """Send the body with the behaviour's truncation, stall and rate."""
    truncate = behavior.truncate_after if ctx.index < behavior.truncate_times else None
    stall = behavior.stall_after if ctx.index < behavior.stall_times else None
    step = CHUNK if behavior.rate is None else max(1, int(behavior.rate / 20))
    sent = 0
    while sent < body.length:
        if stall is not None and sent >= stall:
            await silence(ctx.request.transport, behavior.stall_seconds)
            stall = None
        end = min(body.length, sent + step)
        for limit in (truncate, stall):
            if limit is not None and sent < limit:
                end = min(end, limit)
        if truncate is not None and sent >= truncate:
            await abort(ctx.request.transport)
            raise asyncio.CancelledError  # nothing more to send on this connection
        try:
            await response.write(body.read(sent, end))
        except ConnectionError:  # the client went away (timeouts, cancellation)
            return
        ctx.log.sent += end - sent
        sent = end
        if behavior.rate is not None:
            await asyncio.sleep(step / behavior.rate)
    await response.write_eof()
