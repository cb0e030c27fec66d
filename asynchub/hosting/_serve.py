"""Serve a hub folder over HTTP: ``asynchub serve DIR``.

A hub is a folder with ``ONNX_HUB_MANIFEST.json`` and the files it lists; any static
server can host one, and this is a small one for a laptop, a CI job or a LAN. Files
are served by aiohttp's ``FileResponse``: ``Range`` (resumable, multi-connection
downloads), strong ``ETag`` and ``Last-Modified``, ``If-None-Match`` (the client
revalidates manifests with it) and ``HEAD``. ``Range`` and ``If-Range`` are decided
here first, because ``FileResponse`` reads ``If-Range`` as a date only (a client
resuming with an old ETag got a 206 tail of the new file, and spliced):

- ``If-Range`` (RFC 9110 §13.1.5): a range is served only if its value is the
  current strong ETag, or an HTTP-date exactly equal to ``Last-Modified`` of a file
  last modified at least a second ago; a weak, other or garbage value gets ``200``
  with the whole file;
- one ``bytes=`` range is served (``bytes=-0`` and a start past the end: ``416``
  with ``Content-Range: bytes */size``); several ranges, an unknown unit or an
  invalid range get ``200`` with the whole file (RFC 9110 §14.2 lets a server
  ignore ``Range``); ``HEAD`` with ``Range`` gets the headers of the ``200``.

Only regular files inside the folder are served: paths that are not safe relative
paths, hidden names (``.asynchub/`` state, temporary files) and symbolic links that
lead outside the folder are refused. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import email.utils
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
from aiohttp import web

from .._transfer import TEMP_SUFFIXES
from ..errors import CacheError, UnsafePathError
from ..manifest import check_relative_path
from ..sources import MANIFEST_NAME

__all__ = ("build_app", "serve_forever", "serving")

_ROOT = web.AppKey("root", Path)
_ONE_RANGE = re.compile(r"bytes=(?:(\d{1,18})-(\d{0,18})|-(\d{1,18}))", re.IGNORECASE)
_INDEX = (
    "This is an asynchub hub. Its manifest is /{manifest}; use it with "
    "asynchub list --repo {url}\n"
)


_SHUTDOWN_SECONDS = 2.0
"""How long a stop waits for responses in flight (aiohttp's default is 60 s)."""


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
    runner = web.AppRunner(
        build_app(root), access_log=log, shutdown_timeout=_SHUTDOWN_SECONDS
    )
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
    path = _resolve(root, relative)
    return await _ranged(request, path)


async def _ranged(request: web.Request, path: Path) -> web.StreamResponse:
    """Decide Range and If-Range here (see the module docs), then serve the file."""
    if "Range" not in request.headers:
        return web.FileResponse(path)
    try:
        stat = await anyio.to_thread.run_sync(os.stat, path)
    except OSError:
        raise web.HTTPNotFound(text="404: Not Found\n") from None
    kind = _range_kind(request, stat.st_size)
    if kind == "ignore" or not _if_range_holds(request, stat):
        headers = _without(request, ("range", "if-range"))
    elif kind == "unsatisfiable":
        content_range = {"Content-Range": f"bytes */{stat.st_size}"}
        return web.Response(status=416, headers=content_range)
    else:  # one satisfiable range: aiohttp serves it
        headers = _without(request, ("if-range",))
    response = web.FileResponse(path)
    await response.prepare(request.clone(headers=headers))
    return response


def _without(request: web.Request, names: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in request.headers.items() if k.lower() not in names}


def _range_kind(request: web.Request, size: int) -> str:
    """``serve`` one valid ``bytes=`` range; ``unsatisfiable`` (416) for ``bytes=-0``
    or a start at or past the end; ``ignore`` HEAD, several ranges, other units,
    junk (RFC 9110 §14.2)."""
    match = _ONE_RANGE.fullmatch(request.headers["Range"].strip())
    if request.method != "GET" or match is None:
        return "ignore"
    first, last, suffix = match.groups()
    if suffix is not None:
        return "unsatisfiable" if int(suffix) == 0 else "serve"
    if last and int(last) < int(first):
        return "ignore"
    return "unsatisfiable" if int(first) >= size else "serve"


def _if_range_holds(request: web.Request, stat: os.stat_result) -> bool:
    """RFC 9110 §13.1.5: true without If-Range, or when it names this version."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
    if value.startswith("W/"):
        return False
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return False
    last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
    strong = time.time() - stat.st_mtime >= 1.0  # §8.8.2.2: a second before now
    return strong and when.tzinfo is not None and value == last_modified


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
