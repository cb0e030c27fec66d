"""Configurable local aiohttp file servers for transfer, hub, mirror and CLI tests.

:class:`FileServer` serves in-memory files on ``127.0.0.1`` with real HTTP semantics
(``Range``, ``If-Range``, ``ETag``, ``Last-Modified``, ``416``) and per-file faults
chosen with :class:`Behavior`. Every request is logged (:class:`Request`) and every
body byte counted, so tests assert exactly what crossed the wire::

    async with FileServer() as server:
        url = server.add("/m.onnx", data, Behavior(truncate_after=1000))
        ...                                   # download url
        assert server.stats("/m.onnx").bytes_served == len(data) + 1000
        assert server.stats("/m.onnx").requests[1].range == "bytes=1000-"

Use it inside the test's event loop (``async with``), or from sync code and
subprocess tests with :meth:`FileServer.start_thread` / :meth:`stop_thread`, which run
it on its own loop in a daemon thread.

Faults (all per file, all combinable):

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
- ``etag=None`` / ``weak_etag=True`` / ``last_modified=False``: validators;
- ``chunked=True``: no Content-Length; ``content_type``: the Content-Type header.

``If-None-Match`` with the current ETag is answered ``304``.

Redirects: :meth:`FileServer.redirect` (to a path, another server, or any scheme).
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import re
import socket
import struct
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from aiohttp import web

__all__ = ("Behavior", "FileServer", "PathStats", "Request")

CHUNK = 64 * 1024
RESET_GRACE = 0.05
"""Seconds between the last byte and the RST (a RST discards the peer's unread data)."""
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_EPOCH = 1_700_000_000


@dataclass
class Behavior:
    """How one path answers (see the module docs for each knob)."""

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
class Request:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0
    time: float = field(default_factory=time.monotonic)  # arrival

    @property
    def range(self) -> str | None:
        return self.headers.get("Range")

    @property
    def if_range(self) -> str | None:
        return self.headers.get("If-Range")


@dataclass
class PathStats:
    """Requests and body bytes served for one path."""

    requests: list[Request] = field(default_factory=list)
    bytes_served: int = 0

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def ranges(self) -> list[str | None]:
        return [r.range for r in self.requests]


Body = bytes | Path
"""File content: bytes in memory, or a file on disk read as it is sent."""


@dataclass
class _File:
    data: Body
    behavior: Behavior
    served: int = 0  # responses started (drives faults and versions)


class FileServer:
    """An aiohttp server on 127.0.0.1 serving in-memory files with faults."""

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}
        self.redirects: dict[str, tuple[str, int]] = {}
        self._stats: dict[str, PathStats] = {}
        self.log: list[Request] = []  # every request, in arrival order
        self._runner: web.AppRunner | None = None
        self._thread: tuple[threading.Thread, asyncio.AbstractEventLoop] | None = None
        self.port = 0

    # content ------------------------------------------------------------
    def add(self, path: str, data: Body, behavior: Behavior | None = None) -> str:
        """Serve ``data`` (bytes, or a file read lazily) at ``path``; return its URL."""
        self.files[path] = _File(data, behavior or Behavior())
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer ``path`` with a redirect to ``location`` (taken verbatim)."""
        self.redirects[path] = (location, status)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stats(self, path: str) -> PathStats:
        """What was served at ``path`` so far (empty stats if nothing)."""
        return self._stats.setdefault(path, PathStats())

    def reset_stats(self) -> None:
        self._stats.clear()
        self.log.clear()
        for file in self.files.values():
            file.served = 0

    # lifecycle ----------------------------------------------------------
    async def start(self) -> FileServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FileServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def start_thread(self) -> FileServer:
        """Run the server on its own event loop in a daemon thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(10)
        self._thread = (thread, loop)
        return self

    def stop_thread(self) -> None:
        if self._thread is None:
            return
        thread, loop = self._thread
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None

    # handling -----------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = Request(request.method, request.path, dict(request.headers))
        stats = self.stats(request.path)
        stats.requests.append(record)
        self.log.append(record)
        response = await self._answer(request, record, stats)
        record.status = response.status
        return response

    async def _answer(
        self, request: web.Request, record: Request, stats: PathStats
    ) -> web.StreamResponse:
        if request.path in self.redirects:
            location, status = self.redirects[request.path]
            return web.Response(status=status, headers={"Location": location})
        file = self.files.get(request.path)
        if file is None:
            return web.Response(status=404, text="not found")
        index = file.served
        file.served += 1
        failure = _failure(file.behavior, index)
        if failure is not None:
            return failure
        data, headers = _version(file, index)
        etag = headers.get("ETag")
        if etag and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        return await _send(request, record, stats, file.behavior, data, headers, index)


def _failure(behavior: Behavior, index: int) -> web.Response | None:
    if behavior.expire_after is not None and index >= behavior.expire_after:
        return web.Response(status=403, text="Request has expired")
    statuses = list(behavior.fail_statuses) + [behavior.fail_status] * (
        behavior.fail_first
    )
    if index >= len(statuses):
        return None
    headers = {"Retry-After": behavior.retry_after} if behavior.retry_after else {}
    return web.Response(status=statuses[index], headers=headers, text="try later")


def _version(file: _File, index: int) -> tuple[Body, dict[str, str]]:
    """The content served for the ``index``-th request and its validators."""
    behavior, data, number = file.behavior, file.data, 0
    if behavior.versions:
        number = min(index // behavior.requests_per_version, len(behavior.versions) - 1)
        data = behavior.versions[number]
    headers = {"Accept-Ranges": "bytes", "Content-Type": behavior.content_type}
    if behavior.etag:
        tag = f'"{_tag(data)}"'
        headers["ETag"] = f"W/{tag}" if behavior.weak_etag else tag
    if behavior.last_modified:
        headers["Last-Modified"] = email.utils.formatdate(_EPOCH + number, usegmt=True)
    return data, headers


def _tag(data: Body) -> str:
    if isinstance(data, Path):
        info = data.stat()
        return f"{info.st_size:x}-{info.st_mtime_ns:x}"
    return hashlib.sha256(data).hexdigest()[:16]


def _size(data: Body) -> int:
    return data.stat().st_size if isinstance(data, Path) else len(data)


def _wanted_range(
    request: web.Request, size: int, headers: dict[str, str], behavior: Behavior
) -> tuple[int, int] | None | str:
    """``(first, last)`` to send as 206, None for 200, ``"416"`` when unsatisfiable."""
    match = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if behavior.ignore_range or match is None or not (match[1] or match[2]):
        return None
    if_range = request.headers.get("If-Range")
    validators = (headers.get("ETag"), headers.get("Last-Modified"))
    if if_range and not behavior.ignore_if_range and if_range not in validators:
        return None
    if not match[1]:  # suffix range: the last N bytes
        return (max(0, size - int(match[2])), size - 1) if size else "416"
    first = int(match[1])
    last = min(int(match[2]), size - 1) if match[2] else size - 1
    return "416" if first >= size or last < first else (first, last)


async def _send(
    request: web.Request,
    record: Request,
    stats: PathStats,
    behavior: Behavior,
    data: Body,
    headers: dict[str, str],
    index: int,
) -> web.StreamResponse:
    size = _size(data)
    wanted = _wanted_range(request, size, headers, behavior)
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
    await response.prepare(request)
    if request.method != "HEAD":
        with body:
            await _stream(request, response, record, stats, behavior, body, index)
    return response


class _Slice:
    """``length`` bytes of a body from ``first``, read in pieces."""

    def __init__(self, data: Body, first: int, length: int) -> None:
        self.data, self.first, self.length = data, first, length
        self._file: BinaryIO | None = None

    def __len__(self) -> int:
        return self.length

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
    request: web.Request,
    response: web.StreamResponse,
    record: Request,
    stats: PathStats,
    behavior: Behavior,
    body: _Slice,
    index: int,
) -> None:
    truncate = behavior.truncate_after if index < behavior.truncate_times else None
    stall = behavior.stall_after if index < behavior.stall_times else None
    step = CHUNK if behavior.rate is None else max(1, int(behavior.rate / 20))
    sent = 0
    while sent < len(body):
        if stall is not None and sent >= stall:
            await _stall(request, behavior.stall_seconds)
            stall = None
        end = min(len(body), sent + step)
        for limit in (truncate, stall):
            if limit is not None and sent < limit:
                end = min(end, limit)
        if truncate is not None and sent >= truncate:
            await _reset(request)
            return
        try:
            await response.write(body.read(sent, end))
        except ConnectionError:  # the client went away (timeouts, cancellation)
            return
        record.body_bytes += end - sent
        stats.bytes_served += end - sent
        sent = end
        if behavior.rate is not None:
            await asyncio.sleep(step / behavior.rate)
    await response.write_eof()


async def _stall(request: web.Request, seconds: float) -> None:
    """Send nothing for ``seconds`` (or until the client goes away)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    transport = request.transport
    while loop.time() < deadline and transport and not transport.is_closing():
        await asyncio.sleep(0.02)


async def _reset(request: web.Request) -> None:
    """Flush what was written, then abort the connection with a TCP RST."""
    transport = request.transport
    if transport is None:
        return
    while transport.get_write_buffer_size() and not transport.is_closing():
        await asyncio.sleep(0.001)
    await asyncio.sleep(RESET_GRACE)  # let the client read them: RST drops unread data
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            linger = struct.pack("ii", 1, 0)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    transport.abort()
    raise asyncio.CancelledError  # nothing more to send on this connection
