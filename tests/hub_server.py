"""A local server hosting a hub folder under GitHub-, Hugging-Face- and plain layouts.

It runs in its own thread with its own event loop, so both the sync API (which
blocks the calling thread) and the async API can talk to it. Every request is
logged in ``requests`` (method and path) so tests can assert what was fetched.

Layouts served from one folder ``root`` (a hub: ONNX_HUB_MANIFEST.json + files):

- ``/raw/{owner}/{name}/{ref}/{path}``    GitHub raw (manifests, non-LFS files)
- ``/media/{owner}/{name}/{ref}/{path}``  GitHub LFS media
- ``/hf/onnxmodelzoo/legacy_models/resolve/main/{path}`` → 302 to ``/cdn/{path}``
- ``/plain/{path}``                        any static server (``repo="http://…/plain/"``)
- ``/api/repos/{owner}/{name}/commits/{ref}`` the GitHub API's ref → ``COMMIT``

Knobs: ``down`` is a set of layout names ("hf", "media", "raw", "plain") that answer
503; ``repos`` lists the ``owner/name`` pairs that exist (others 404).
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from aiohttp import web

__all__ = ("COMMIT", "HubServer")

COMMIT = "c0ffee" * 6 + "beef"


class HubServer:
    """Serve ``root`` on 127.0.0.1 from a background thread."""

    def __init__(
        self, root: Path, repos: tuple[str, ...] = ("onnx/models", "acme/zoo")
    ):
        self.root = root
        self.repos = set(repos)
        self.down: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle -----------------------------------------------------------
    def start(self) -> HubServer:
        ready = threading.Event()
        threading.Thread(target=self._serve, args=(ready,), daemon=True).start()
        ready.wait(10)
        return self

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start_site())
        ready.set()
        self._loop.run_forever()

    async def _start_site(self) -> None:
        app = web.Application()
        app.router.add_get("/raw/{owner}/{name}/{ref}/{path:.+}", self._github("raw"))
        app.router.add_get(
            "/media/{owner}/{name}/{ref}/{path:.+}", self._github("media")
        )
        app.router.add_get(
            "/hf/onnxmodelzoo/legacy_models/resolve/main/{path:.+}", self._hf
        )
        app.router.add_get("/cdn/{path:.+}", self._plain("cdn"))
        app.router.add_get("/api/repos/{owner}/{name}/commits/{ref}", self._api)
        app.router.add_get("/plain/{path:.+}", self._plain("plain"))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        async def cleanup() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    # addresses -----------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment variables that point asynchub's GitHub/HF endpoints here."""
        return {
            "ASYNCHUB_GITHUB_RAW": f"{self.base}/raw",
            "ASYNCHUB_GITHUB_MEDIA": f"{self.base}/media",
            "ASYNCHUB_HF_ENDPOINT": f"{self.base}/hf",
            "ASYNCHUB_GITHUB_API": f"{self.base}/api",
        }

    def file_requests(self, suffix: str = ".onnx") -> list[str]:
        """Paths of logged GETs that fetched a file ending with ``suffix``."""
        return [p for _, p in self.requests if p.endswith(suffix)]

    # handlers ------------------------------------------------------------
    def _file(self, layout: str, path: str) -> web.StreamResponse:
        if layout in self.down:
            return web.Response(status=503, text="down for the test")
        target = (self.root / path).resolve()
        if self.root.resolve() not in target.parents or not target.is_file():
            return web.Response(status=404, text="404: Not Found")
        return web.FileResponse(target)

    def _log(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path))

    def _github(self, layout: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            self._log(request)
            info = request.match_info
            if f"{info['owner']}/{info['name']}" not in self.repos:
                return web.Response(status=404, text="404: Not Found")
            return self._file(layout, info["path"])

        return handler

    async def _api(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        info = request.match_info
        if "api" in self.down or f"{info['owner']}/{info['name']}" not in self.repos:
            return web.Response(status=404 if "api" not in self.down else 503)
        if request.headers.get("Accept") != "application/vnd.github.sha":
            return web.json_response({"sha": COMMIT})
        return web.Response(text=COMMIT)

    async def _hf(self, request: web.Request) -> web.StreamResponse:
        self._log(request)
        if "hf" in self.down:
            return web.Response(status=503, text="down for the test")
        raise web.HTTPFound(f"/cdn/{request.match_info['path']}")

    def _plain(self, layout: str):  # type: ignore[no-untyped-def]
        async def handler(request: web.Request) -> web.StreamResponse:
            self._log(request)
            return self._file(layout, request.match_info["path"])

        return handler
