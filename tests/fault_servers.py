"""Scriptable HTTP/1.1 fault servers for the fault-injection suite.

:class:`FaultServer` is a raw asyncio HTTP server on ``127.0.0.1:0`` that runs in a
background thread (so the sync API, the async API and subprocesses can all use it).
It is written on sockets, not on aiohttp's server, because the faults need byte-level
control that a well-behaved server framework refuses to give: a real TCP reset after
exactly N body bytes (``SO_LINGER`` 0), a body shorter or longer than its
``Content-Length``, a 206 with a lying ``Content-Range``, a stall after the headers.

Each path has a *script*: a list of handlers, one per request, the last one repeating
(``server.route("/f", reset_after(blob, 1000), serve(blob))``: first request reset,
every later one served). Every request is logged with its headers, the status sent
and the number of body bytes sent, so tests assert on ``Range``, ``If-Range``,
``Authorization`` and on how many bytes were served.

:meth:`FaultServer.hub` publishes a hub (``ONNX_HUB_MANIFEST.json`` plus files) under
``/hub/`` so tests can go through ``AsyncHub`` with ``repo=server.hub_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import gzip
import hashlib
import json
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from asynchub._transfer.state import (
    LOCK_SUFFIX,
    PART_SUFFIX,
    STATE_SUFFIX,
    STATE_TMP_SUFFIX,
)
from asynchub.cache._layout import STATE_DIR
from asynchub.config import HubConfig, RetryPolicy, Timeouts

__all__ = (
    "Ctx",
    "FaultServer",
    "Logged",
    "chunked",
    "cache_files",
    "close_without_response",
    "entry",
    "fast_config",
    "gzip_encoded",
    "html_page",
    "http_date",
    "ignore_range",
    "lfs_pointer",
    "overlong",
    "paced",
    "redirect",
    "reset_after",
    "serve",
    "sha",
    "stall",
    "self_signed_cert",
    "server_tls",
    "status",
    "temp_files",
    "tree",
    "trickle",
    "truncated",
    "wrong_range",
)

Handler = Callable[["Ctx"], Awaitable[None]]
HTTP_DATE = "Tue, 15 Nov 1994 08:12:31 GMT"
_REASONS = {
    200: "OK",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    307: "Temporary Redirect",
    403: "Forbidden",
    404: "Not Found",
    416: "Range Not Satisfiable",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def sha(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class Logged:
    """One request as the server saw it, and what it answered."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0
    at: float = field(default_factory=time.monotonic)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    @property
    def range_start(self) -> int | None:
        """The first byte asked for by ``Range: bytes=N-[M]``, else None."""
        parsed = _parse_range(self.header("range"))
        return parsed[0] if parsed else None


class Ctx:
    """One request being answered: the parsed request and the raw socket writer."""

    def __init__(
        self, server: FaultServer, log: Logged, writer: asyncio.StreamWriter
    ) -> None:
        self.server, self.log, self.writer = server, log, writer

    @property
    def range(self) -> tuple[int, int | None] | None:
        return _parse_range(self.log.header("range"))

    async def head(self, status_code: int, headers: Mapping[str, str]) -> None:
        """Send the status line and headers (always ``Connection: close``)."""
        self.log.status = status_code
        lines = [f"HTTP/1.1 {status_code} {_REASONS.get(status_code, 'X')}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        lines.append("Connection: close")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()

    async def body(self, data: bytes, chunk: int = 64 * 1024) -> None:
        """Send body bytes, counted in the log (and in the server's total)."""
        view = memoryview(data)
        for start in range(0, len(view), chunk):
            piece = view[start : start + chunk]
            self.writer.write(piece)
            self.log.sent += len(piece)
            self.server.bytes_sent += len(piece)
            await self.writer.drain()

    async def send(
        self, status_code: int, headers: Mapping[str, str], data: bytes = b""
    ) -> None:
        """A complete response with ``Content-Length``."""
        await self.head(status_code, {**headers, "Content-Length": str(len(data))})
        await self.body(data)

    async def flushed(self) -> None:
        """Wait until the kernel has every byte written so far."""
        transport = self.writer.transport
        for _ in range(200):
            if transport.get_write_buffer_size() == 0:
                break
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # let the client read them before what follows

    async def reset(self) -> None:
        """Abort the connection with a TCP RST (``SO_LINGER`` on, timeout 0)."""
        await self.flushed()
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
        self.writer.transport.abort()


# Handlers ------------------------------------------------------------------


def serve(
    data: bytes,
    *,
    etag: str | None = '"v1"',
    last_modified: str | None = None,
    ranges: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Handler:
    """A correct server: 200, or 206 for ``Range`` (honouring ``If-Range``), 416."""

    async def handler(ctx: Ctx) -> None:
        base = _validators(etag, last_modified)
        base.update(headers or {})
        wanted = ctx.range if ranges else None
        if wanted is not None and not _if_range_ok(ctx, etag, last_modified):
            wanted = None
        if wanted is None:
            await ctx.send(200, {**base, "Accept-Ranges": "bytes"}, data)
            return
        start, end = wanted
        if start >= len(data):
            await ctx.send(416, {**base, "Content-Range": f"bytes */{len(data)}"})
            return
        last = len(data) - 1 if end is None else min(end, len(data) - 1)
        cr = f"bytes {start}-{last}/{len(data)}"
        await ctx.send(206, {**base, "Content-Range": cr}, data[start : last + 1])

    return handler


def reset_after(data: bytes, n: int, **kwargs: Any) -> Handler:
    """Like :func:`serve` (ranges honoured) but RST after ``n`` body bytes."""
    inner = serve(data, **kwargs)

    async def handler(ctx: Ctx) -> None:
        capture = _Capture(ctx)
        await inner(capture)  # type: ignore[arg-type]
        await ctx.head(capture.status_code, capture.headers)
        await ctx.body(capture.data[:n])
        await ctx.reset()

    return handler


def truncated(data: bytes, missing: int, **kwargs: Any) -> Handler:
    """Announce the full length but close cleanly (FIN) ``missing`` bytes early."""
    inner = serve(data, **kwargs)

    async def handler(ctx: Ctx) -> None:
        capture = _Capture(ctx)
        await inner(capture)  # type: ignore[arg-type]
        await ctx.head(capture.status_code, capture.headers)
        await ctx.body(capture.data[: max(0, len(capture.data) - missing)])
        await ctx.flushed()

    return handler


def overlong(data: bytes, extra: bytes) -> Handler:
    """Announce ``len(data)`` but send ``data + extra`` (a lying Content-Length)."""

    async def handler(ctx: Ctx) -> None:
        await ctx.head(200, {"Content-Length": str(len(data)), "ETag": '"v1"'})
        await ctx.body(data + extra)
        await ctx.flushed()

    return handler


def ignore_range(data: bytes, etag: str | None = '"v1"') -> Handler:
    """Always a full 200, whatever ``Range`` says."""
    return serve(data, etag=etag, ranges=False)


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
        body = data[start:]
        headers = {"ETag": '"v1"'}
        if content_range is not None:
            headers["Content-Range"] = content_range.format(
                start=start, end=len(data) - 1, total=len(data)
            )
        await ctx.send(206, headers, body)

    return handler


def status(
    code: int, headers: Mapping[str, str] | None = None, data: bytes = b""
) -> Handler:
    """A fixed status with fixed headers and body."""

    async def handler(ctx: Ctx) -> None:
        await ctx.send(code, dict(headers or {}), data)

    return handler


def redirect(location: str, code: int = 302) -> Handler:
    """A redirect to ``location`` (absolute, or a path on this server)."""
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
            ctx.writer.write(f"{len(part):x}\r\n".encode())
            await ctx.body(part)
            ctx.writer.write(b"\r\n")
        if reset:
            await ctx.reset()
            return
        ctx.writer.write(b"0\r\n\r\n")
        await ctx.writer.drain()

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
    inner = serve(data, **kwargs)

    async def handler(ctx: Ctx) -> None:
        capture = _Capture(ctx)
        await inner(capture)  # type: ignore[arg-type]
        await ctx.head(capture.status_code, capture.headers)
        body, pos = capture.data, 0
        for size, pause in steps:
            await ctx.body(body[pos : pos + size])
            pos += size
            await asyncio.sleep(pause)
        if stall_after is not None:
            await asyncio.sleep(stall_after)
            return
        await ctx.body(body[pos:])

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


# Manifest helpers -----------------------------------------------------------


def entry(name: str, path: str, data: bytes | None, **extra: Any) -> dict[str, Any]:
    """A manifest entry for ``data`` at ``path`` (SHA and size filled in)."""
    meta: dict[str, Any] = {"tags": ["test"]}
    if data is not None:
        meta.update(model_sha=sha(data), model_bytes=len(data))
    meta.update(extra.pop("metadata", {}))
    item: dict[str, Any] = {
        "model": name,
        "model_path": path,
        "onnx_version": "1.14",
        "opset_version": extra.pop("opset_version", 13),
        "metadata": meta,
    }
    item.update(extra)
    return item


# The server ------------------------------------------------------------------


class FaultServer:
    """A scriptable HTTP/1.1 server on 127.0.0.1, in a background thread."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, list[Handler]] = {}
        self.requests: list[Logged] = []
        self.bytes_sent = 0
        self.connections = 0
        self.active = 0
        self.peak_active = 0
        self._ssl = ssl_context
        self.handshakes = 0
        if ssl_context is not None:  # counts ClientHellos, even failed handshakes
            ssl_context.sni_callback = self._hello
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self._bucket: _Bucket | None = None
        self._every: tuple[int, str | None] | None = None
        self._seen = 0

    def _hello(self, *_: object) -> None:
        self.handshakes += 1

    # lifecycle -----------------------------------------------------------
    def start(self) -> FaultServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fault server did not start")
        return self

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(
                self._connection, "127.0.0.1", 0, ssl=self._ssl, backlog=512
            )
        )
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.sleep(0)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # addresses and scripts -------------------------------------------------
    @property
    def base(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def hub_url(self) -> str:
        return f"{self.base}/hub/"

    def url(self, path: str) -> str:
        return self.base + path

    def route(self, path: str, *handlers: Handler) -> None:
        """Answer ``path`` with ``handlers`` in turn; the last one repeats."""
        self.routes[path] = list(handlers)

    def hub(
        self,
        files: Mapping[str, bytes],
        entries: list[dict[str, Any]] | None = None,
        manifest: bytes | None = None,
    ) -> str:
        """Publish files under ``/hub/`` and a manifest; return the repo URL.

        Without ``entries`` each file ``a/b.onnx`` gets an entry named ``b``.
        """
        for path, data in files.items():
            self.route(f"/hub/{path}", serve(data))
        if manifest is None:
            if entries is None:
                entries = [
                    entry(path.rsplit("/", 1)[-1].removesuffix(".onnx"), path, data)
                    for path, data in files.items()
                    if path.endswith(".onnx")
                ]
            manifest = json.dumps(entries).encode()
        self.route("/hub/ONNX_HUB_MANIFEST.json", serve(manifest, etag='"m1"'))
        return self.hub_url

    def rate_limit(self, per_second: float, burst: int, retry_after: str = "1") -> None:
        """Answer 429 (with ``Retry-After``) beyond a token bucket, on every path."""
        self._bucket = _Bucket(per_second, burst, retry_after)

    def limit_every(self, n: int, retry_after: str | None = "0") -> None:
        """Answer 429 to every ``n``-th request (whatever the client's speed)."""
        self._every = (n, retry_after)

    def log(self, path: str) -> list[Logged]:
        """Requests logged for ``path``."""
        return [r for r in self.requests if r.path == path]

    # connection handling ---------------------------------------------------
    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:  # the server is stopping
            pass
        finally:
            self.active -= 1
            with contextlib.suppress(Exception):
                writer.close()
            if task is not None:
                self._tasks.discard(task)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        path = target.split("?", 1)[0]
        log = Logged(method, path, headers)
        self.requests.append(log)
        self._seen += 1
        limited = self._every is not None and self._seen % self._every[0] == 0
        if limited and self._every is not None:
            headers = {"Retry-After": self._every[1]} if self._every[1] else {}
            await Ctx(self, log, writer).send(429, headers, b"slow down")
            return
        if self._bucket is not None and not self._bucket.take():
            headers = {"Retry-After": self._bucket.retry_after}
            await Ctx(self, log, writer).send(429, headers, b"slow down")
            return
        script = self.routes.get(path)
        if not script:
            await Ctx(self, log, writer).send(404, {}, b"404: Not Found")
            return
        n_before = sum(1 for r in self.requests[:-1] if r.path == path)
        handler = script[min(n_before, len(script) - 1)]
        await handler(Ctx(self, log, writer))


# internals --------------------------------------------------------------------


class _Bucket:
    """A token bucket: ``per_second`` tokens a second, at most ``burst`` saved."""

    def __init__(self, per_second: float, burst: int, retry_after: str) -> None:
        self.rate, self.burst, self.retry_after = per_second, burst, retry_after
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class _Capture:
    """A fake Ctx that records what a handler would send, to send it differently."""

    def __init__(self, ctx: Ctx) -> None:
        self.log, self.range = ctx.log, ctx.range
        self.status_code, self.headers, self.data = 0, {}, b""

    async def send(
        self, status_code: int, headers: Mapping[str, str], data: bytes = b""
    ) -> None:
        self.status_code, self.data = status_code, data
        self.headers = {**headers, "Content-Length": str(len(data))}


def _validators(etag: str | None, last_modified: str | None) -> dict[str, str]:
    headers = {}
    if etag is not None:
        headers["ETag"] = etag
    if last_modified is not None:
        headers["Last-Modified"] = last_modified
    return headers


def _if_range_ok(ctx: Ctx, etag: str | None, last_modified: str | None) -> bool:
    """RFC 9110 §13.1.5: a strong ETag match, or an exact Last-Modified match."""
    value = ctx.log.header("if-range")
    if value is None:
        return True
    if value.startswith('"'):
        return etag is not None and not etag.startswith("W/") and value == etag
    return last_modified is not None and value == last_modified


def _parse_range(value: str | None) -> tuple[int, int | None] | None:
    if not value or not value.startswith("bytes="):
        return None
    first = value[len("bytes=") :].split(",", 1)[0].strip()
    start, _, end = first.partition("-")
    if not start.isdigit() or (end and not end.isdigit()):
        return None
    return int(start), int(end) if end else None


def fast_config(cache_dir: Path, **overrides: Any) -> HubConfig:
    """A config for fault tests: short timeouts and backoffs, no fsync."""
    values: dict[str, Any] = {
        "cache_dir": cache_dir,
        "retry": RetryPolicy(
            attempts=4, backoff_base=0.01, backoff_max=0.05, max_retry_after=5.0
        ),
        "timeouts": Timeouts(connect=2.0, read=0.5),
        "fsync": False,
    }
    values.update(overrides)
    return HubConfig(**values)


def cache_files(root: Path) -> list[str]:
    """Files under a cache root, relative and sorted, without asynchub's bookkeeping
    (``.asynchub/``) and lock files: what a user would see as cached data."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink())
        and STATE_DIR not in p.relative_to(root).parts
        and not p.name.endswith(LOCK_SUFFIX)
    )


def temp_files(root: Path) -> list[str]:
    """Temporary files (parts, sidecars) the engine left under ``root``."""
    return [
        f
        for f in cache_files(root)
        if f.endswith((PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX))
    ]


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (relative, sorted), links included, for escapes."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made by the openssl CLI (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def http_date(when: float) -> str:
    """An IMF-fixdate for ``when`` (seconds since the epoch)."""
    return email.utils.formatdate(when, usegmt=True)
