"""One HTTP test server on real sockets: :class:`Server`, and the :class:`Ctx` its
behaviours answer with.

The server is aiohttp's on ``127.0.0.1`` (TLS when given a context). Each path has
a *script*, a list of behaviours (``async (ctx) -> response | None``), one per
request, the last one repeating: ``server.route("/f", reset_after(blob, 1000),
serve(blob))`` resets the first request and serves every later one, and
``server.add("/f", blob, Behavior(fail_first=2))`` is a script of one
configurable file. A behaviour either returns an aiohttp response (a well-behaved
server, keep-alive), or writes raw bytes with :meth:`Ctx.head` and :meth:`Ctx.body`
and returns None (byte-level faults: a lying ``Content-Length``, a reset after N
bytes, ``Connection: close``). Every request is logged (:class:`~.log.Request`).

Run it in the test's event loop (``async with Server()``), or on its own loop in
a daemon thread for sync code and subprocesses (``with Server()``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from multidict import CIMultiDict

from .behaviours import redirect, serve
from .ctx import Ctx, Handler
from .files import Behavior, Body, File
from .helpers import entry
from .log import PathStats, Request
from .loop import Background

__all__ = ("Server",)


class _Sent(web.StreamResponse):
    """What a raw behaviour returns to aiohttp: it wrote everything already."""

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


class _Counting(web.Server):
    """aiohttp's low-level server, counting connections for :class:`Server`."""

    def __init__(self, owner: Server) -> None:
        super().__init__(owner._handle, access_log=None)
        self.owner = owner

    def connection_made(
        self, handler: RequestHandler, transport: asyncio.Transport
    ) -> None:
        super().connection_made(handler, transport)
        owner = self.owner
        owner.connections += 1
        owner.active += 1
        owner.peak_active = max(owner.peak_active, owner.active)

    def connection_lost(
        self, handler: RequestHandler, exc: BaseException | None = None
    ) -> None:
        super().connection_lost(handler, exc)
        self.owner.active -= 1


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


class Server:
    """An HTTP(S) server on 127.0.0.1 whose paths answer with scripted behaviours."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, list[Handler]] = {}
        self.requests: list[Request] = []  # every request, in arrival order
        self.connections = self.active = self.peak_active = self.handshakes = 0
        self._ssl = ssl_context
        if ssl_context is not None:  # counts ClientHellos, even failed handshakes
            ssl_context.sni_callback = self._hello
        self._runner: web.ServerRunner | None = None
        self._background: Background | None = None
        self._bucket: _Bucket | None = None
        self._every: tuple[int, str | None] | None = None
        self.port = 0

    def _hello(self, *_: object) -> None:
        self.handshakes += 1

    # addresses ------------------------------------------------------------
    @property
    def base(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def hub_url(self) -> str:
        return f"{self.base}/hub/"

    def url(self, path: str) -> str:
        return self.base + path

    # scripts ----------------------------------------------------------------
    def route(self, path: str, *handlers: Handler) -> str:
        """Answer ``path`` with ``handlers`` in turn (the last one repeats)."""
        self.routes[path] = list(handlers)
        return self.url(path)

    def add(self, path: str, data: Body, behavior: Behavior | None = None) -> str:
        """Serve ``data`` (bytes, or a file read lazily) at ``path`` as one
        :class:`~.files.File` shaped by ``behavior``; return its URL."""
        return self.route(path, File(data, behavior or Behavior()))

    @property
    def files(self) -> dict[str, File]:
        """The :meth:`add`-ed files by path (change ``.behavior`` to re-script)."""
        return {p: s[0] for p, s in self.routes.items() if isinstance(s[0], File)}

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        """Answer ``path`` with a redirect to ``location`` (taken verbatim)."""
        return self.route(path, redirect(location, status))

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

    # the log ----------------------------------------------------------------
    def log(self, path: str) -> list[Request]:
        """Requests logged for ``path``."""
        return [r for r in self.requests if r.path == path]

    def stats(self, path: str) -> PathStats:
        """A live view of what was served at ``path``."""
        return PathStats(lambda: self.log(path))

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent, over every path."""
        return sum(r.sent for r in self.requests)

    def reset_stats(self) -> None:
        """Forget the log (scripts start again from their first behaviour)."""
        self.requests.clear()

    # lifecycle ----------------------------------------------------------------
    async def start(self) -> Server:
        """Listen in the running event loop (the port is kept across restarts)."""
        self._runner = web.ServerRunner(_Counting(self), shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, "127.0.0.1", self.port, ssl_context=self._ssl, backlog=512
        )
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start_thread(self) -> Server:
        """Run the server on its own event loop in a daemon thread."""
        self._background = Background()
        self._background.run(self.start())
        return self

    def stop_thread(self) -> None:
        if self._background is not None:
            self._background.run(self.stop())
            self._background.close()
            self._background = None

    def __enter__(self) -> Server:
        return self.start_thread()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_thread()

    # handling ---------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = self._path(request)
        record = Request(request.method, path, CIMultiDict(request.headers))
        index = sum(1 for r in self.requests if r.path == path)
        self.requests.append(record)
        ctx = Ctx(self, request, record, index)
        try:
            response = await self._answer(ctx)
        except ConnectionError:
            response = None
        if response is None:  # a raw answer: the connection ends with it
            if request.transport is not None:
                request.transport.close()
            return _Sent()
        record.status = response.status
        return response

    def _path(self, request: web.BaseRequest) -> str:
        """The script a request asks for: its target as sent (an absolute URL when
        it comes to a proxy), else its decoded path, else the target as sent."""
        target = request.raw_path.split("?", 1)[0]
        if target not in self.routes and request.path in self.routes:
            return request.path
        return target

    async def _answer(self, ctx: Ctx) -> web.StreamResponse | None:
        refusal = self._refusal()
        if refusal is not None:
            await ctx.send(429, refusal, b"slow down")
            return None
        script = self.routes.get(ctx.log.path)
        if not script:
            await ctx.send(404, {}, b"404: Not Found")
            return None
        return await script[min(ctx.index, len(script) - 1)](ctx)

    def _refusal(self) -> dict[str, str] | None:
        """The headers of a 429 when a rate limit refuses this request, else None."""
        if self._every is not None and len(self.requests) % self._every[0] == 0:
            return {"Retry-After": self._every[1]} if self._every[1] else {}
        if self._bucket is not None and not self._bucket.take():
            return {"Retry-After": self._bucket.retry_after}
        return None
