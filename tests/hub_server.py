"""A local server hosting a hub folder under GitHub-, Hugging-Face- and plain layouts.

It runs on its own event loop in a thread (the harness's ``Background``), so both
the sync API (which blocks the calling thread) and the async API can talk to it.
Every request is logged in ``requests`` (method and path) so tests can assert
what was fetched.

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

from pathlib import Path

from aiohttp import web

from .harness import Background, listen

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
        self._background: Background | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle -----------------------------------------------------------
    def start(self) -> HubServer:
        self._background = Background()
        self._runner, self.port = self._background.run(listen(self._app()))
        return self

    def _app(self) -> web.Application:
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
        return app

    def stop(self) -> None:
        if self._background is not None and self._runner is not None:
            self._background.run(self._runner.cleanup())
            self._background.close()
            self._background = None

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
