"""Serve a hub folder over HTTP: ``asynchub serve DIR``.

A hub is a folder with ``ONNX_HUB_MANIFEST.json`` and the files it lists; any static
server can host one, and this is a small one for a laptop, a CI job or a LAN. Files
are served by aiohttp's ``FileResponse``: ``Range`` (resumable, multi-connection
downloads), strong ``ETag`` and ``Last-Modified``, ``If-None-Match`` (the client
revalidates manifests with it), ``If-Range`` and ``HEAD``.

Only regular files inside the folder are served: paths that are not safe relative
paths, hidden names (``.asynchub/`` state, temporary files) and symbolic links that
lead outside the folder are refused. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from aiohttp import web

from ._transfer.state import TEMP_SUFFIXES
from .errors import CacheError, UnsafePathError
from .manifest import check_relative_path
from .sources import MANIFEST_NAME

__all__ = ("build_app", "serve_forever", "serving")

_ROOT = web.AppKey("root", Path)
_INDEX = (
    "This is an asynchub hub. Its manifest is /{manifest}; use it with "
    "asynchub list --repo {url}\n"
)


def build_app(root: Path) -> web.Application:
    """The aiohttp application serving ``root`` (GET and HEAD only)."""
    app = web.Application()
    app[_ROOT] = root.resolve()
    app.router.add_get("/{path:.*}", _handle)
    return app


@asynccontextmanager
async def serving(
    root: Path, host: str = "127.0.0.1", port: int = 0, *, access_log: bool = False
) -> AsyncIterator[str]:
    """Serve ``root`` while the block runs; yields the base URL (ends with ``/``).

    ``port=0`` picks a free port.

    Raises:
        CacheError: ``root`` is not a folder, or the address cannot be bound.
    """
    if not root.is_dir():
        raise CacheError(
            f"{root} is not a folder", hint="give the folder that holds the manifest"
        )
    sock = _bind(host, port)
    log = logging.getLogger("aiohttp.access") if access_log else None
    runner = web.AppRunner(build_app(root), access_log=log)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        bound = sock.getsockname()[1]
        yield f"http://{_url_host(host)}:{bound}/"
    finally:
        with anyio.CancelScope(shield=True):
            await runner.cleanup()


async def serve_forever(
    root: Path, host: str = "127.0.0.1", port: int = 8000, *, access_log: bool = True
) -> None:
    """Serve ``root`` until cancelled (Ctrl-C in the CLI)."""
    async with serving(root, host, port, access_log=access_log):
        await anyio.sleep_forever()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CacheError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port, or stop what is using it",
        ) from exc
    return sock


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def _handle(request: web.Request) -> web.StreamResponse:
    root = request.app[_ROOT]
    relative = request.match_info["path"]
    if relative == "":
        url = str(request.url.origin()) + "/"
        return web.Response(text=_INDEX.format(manifest=MANIFEST_NAME, url=url))
    return web.FileResponse(_resolve(root, relative))


def _resolve(root: Path, relative: str) -> Path:
    """The file a request path names, or an HTTP error (403 unsafe, 404 absent)."""
    try:
        check_relative_path(relative)
    except UnsafePathError as exc:
        raise web.HTTPForbidden(text=f"403: {exc.message}\n") from None
    segments = relative.split("/")
    if any(s.startswith(".") for s in segments) or relative.endswith(TEMP_SUFFIXES):
        raise web.HTTPNotFound(text="404: Not Found\n")
    target = root.joinpath(*segments).resolve()
    if not target.is_relative_to(root):
        raise web.HTTPForbidden(text="403: the path leads outside the hub\n")
    if not target.is_file():
        raise web.HTTPNotFound(text="404: Not Found\n")
    return target
