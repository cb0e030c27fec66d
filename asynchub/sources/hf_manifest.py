"""The manifest of an ``hf://`` repo, pinned to one commit, cached by commit.

One operation reads the revision API once (the commit, and whether the repo holds
``ONNX_HUB_MANIFEST.json``); the manifest of a commit never changes, so it is cached
under the repo and commit and read from disk on every later call, and a second
cache entry records the commit the revision last pointed at, which is what offline
mode uses. Without an own manifest the repo's recursive listing is read page by page
(``Link: <…>; rel="next"``) and turned into one (:mod:`.hf_listing`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import anyio

from ..config import HubConfig
from ..errors import (
    HTTPStatusError,
    HubAuthError,
    ManifestNotFoundError,
    ManifestParseError,
    OfflineCacheMissError,
    TransferError,
)
from . import hf
from ._source import MANIFEST_NAME, Source
from .github import is_commit
from .hf_listing import Listing, TreeFile, build_manifest, next_link, unnamed
from .hf_opset import WINDOW, scan

if TYPE_CHECKING:
    from .._transfer import Engine

__all__ = ("MAX_LISTED_FILES", "auth_error", "load")

_log = logging.getLogger("asynchub")

MAX_LISTED_FILES = 200_000
"""A listing longer than this is refused (memory never grows with a claimed size)."""

MAX_HEADER_READS = 64
"""Files without an opset in their name whose opset is read from the model (a few
ranged reads each); any more are left out, with a warning."""

HEADER_READERS = 8
"""Models read at once for their opset."""

_WINDOWS_PER_FILE = 3

ReadCached = Callable[[str], Awaitable[tuple[bytes, str] | None]]
WriteCached = Callable[[str, bytes], Awaitable[None]]


def auth_error(err: HTTPStatusError, spec: str) -> HTTPStatusError:
    """A 401/403 from the hub as a :class:`HubAuthError` (the token is never shown)."""
    if err.status not in (401, 403):
        return err
    return HubAuthError(
        f"{spec} is gated, private or does not exist: the hub answered {err.status}",
        status=err.status,
        url=err.url,
    )


async def load(
    engine: Engine,
    config: HubConfig,
    source: Source,
    read: ReadCached,
    write: WriteCached,
) -> tuple[bytes, Source]:
    """The manifest JSON of ``source`` and the Source pinned to its commit."""
    repo_id, revision = hf.parse(source.spec)
    if config.offline:
        return await _offline(config, source, read)
    try:
        commit, files = await _revision(engine, config, source.spec)
    except (HubAuthError, ManifestNotFoundError):
        raise
    except TransferError as exc:
        return await _offline(config, source, read, exc)
    pinned = hf.source(source.spec, config, commit)
    key = _manifest_key(repo_id, commit)
    cached = await read(key)
    if cached is not None:
        data = cached[0]
    else:
        data = await _fresh(engine, config, source.spec, pinned, files)
        await write(key, data)
    if commit != revision:
        await write(_ref_key(source.spec), commit.encode())
    return data, pinned


def _manifest_key(repo_id: str, commit: str) -> str:
    return f"{hf.PREFIX}{repo_id}@{commit}#manifest"


def _ref_key(spec: str) -> str:
    return f"{spec}#commit"


async def _offline(
    config: HubConfig,
    source: Source,
    read: ReadCached,
    exc: TransferError | None = None,
) -> tuple[bytes, Source]:
    """The manifest cached for the commit the revision last pointed at."""
    repo_id, revision = hf.parse(source.spec)
    commit: str | None = revision if is_commit(revision) else None
    if commit is None:
        ref = await read(_ref_key(source.spec))
        commit = ref[0].decode("ascii", "replace").strip() if ref else None
    cached = await read(_manifest_key(repo_id, commit)) if commit else None
    why = "offline mode" if exc is None else f"the network failed ({exc})"
    if cached is None or commit is None:
        message = f"no cached manifest for {source.spec} and {why}"
        if exc is None:
            raise OfflineCacheMissError(message)
        raise ManifestNotFoundError(message) from exc
    if exc is not None:
        _log.warning("%s: using the cached manifest of %s", why, source.spec)
    return cached[0], hf.source(source.spec, config, commit)


async def _revision(
    engine: Engine, config: HubConfig, spec: str
) -> tuple[str, set[str]]:
    """The revision's commit and the names of its files (the revision API)."""
    repo_id, revision = hf.parse(spec)
    url = hf.revision_url(repo_id, revision, config)
    body = await _get_json(engine, url, spec)
    commit = body.get("sha") if isinstance(body, dict) else None
    if not isinstance(commit, str) or not is_commit(commit):
        raise ManifestParseError(f"{url} did not answer a commit id for {spec}")
    siblings = body.get("siblings") if isinstance(body, dict) else None
    names = {
        str(s.get("rfilename"))
        for s in (siblings if isinstance(siblings, list) else [])
        if isinstance(s, dict)
    }
    return commit, names


async def _get_json(engine: Engine, url: str, spec: str) -> object:
    try:
        response = await engine.get_bytes(url, {"Accept": "application/json"})
    except HTTPStatusError as err:
        raise auth_error(err, spec) from None
    if response.status in (404, 410):
        raise ManifestNotFoundError(
            f"no Hugging Face model repo or revision {spec} ({url} answered 404)",
            hint="check the repo name and revision on the Hugging Face web page",
        )
    try:
        return json.loads(response.body)
    except (ValueError, RecursionError) as exc:
        raise ManifestParseError(f"{url} did not answer JSON: {exc}") from exc


async def _fresh(
    engine: Engine, config: HubConfig, spec: str, pinned: Source, files: set[str]
) -> bytes:
    """The repo's own manifest when it has one, else one built from its listing."""
    if MANIFEST_NAME in files:
        try:
            response = await engine.get_bytes(pinned.manifest_url)
        except HTTPStatusError as err:
            raise auth_error(err, spec) from None
        if response.status == 200:
            return response.body
    repo_id = hf.parse(spec)[0]
    commit = pinned.file_bases[0].rstrip("/").rsplit("/", 1)[-1]
    listing = await _listing(engine, hf.tree_url(repo_id, commit, config), spec)
    opsets = await _read_opsets(engine, pinned, unnamed(listing))
    manifest = build_manifest(listing, opsets)
    if listing.skipped:
        _log.warning(
            "%s: %d .onnx files left out of the manifest built from its listing "
            "(for example %s)",
            spec,
            len(listing.skipped),
            "; ".join(listing.skipped[:3]),
        )
    return manifest.to_json().encode()


async def _read_opsets(
    engine: Engine, pinned: Source, files: list[TreeFile]
) -> dict[str, int]:
    """The opset of each model whose name has none, read from its bytes."""
    opsets: dict[str, int] = {}
    limiter = anyio.CapacityLimiter(HEADER_READERS)

    async def read(file: TreeFile) -> None:
        async with limiter:
            opset = await _opset_of(engine, pinned.file_urls(file.path)[0], file.size)
        if opset is not None:
            opsets[file.path] = opset

    async with anyio.create_task_group() as group:
        for file in files[:MAX_HEADER_READS]:
            group.start_soon(read, file)
    if len(files) > MAX_HEADER_READS:
        _log.warning(
            "%d models have no opset in their name; only the first %d were read",
            len(files),
            MAX_HEADER_READS,
        )
    return opsets


async def _opset_of(engine: Engine, url: str, size: int | None) -> int | None:
    """At most a few 64 KiB ranged reads; None when the opset cannot be read."""
    offset = 0
    for _ in range(_WINDOWS_PER_FILE):
        if size is not None and offset >= size:
            return None
        headers = {"Range": f"bytes={offset}-{offset + WINDOW - 1}"}
        try:
            response = await engine.get_bytes(url, headers, max_bytes=WINDOW)
        except TransferError as exc:
            _log.debug("could not read the opset of %s: %s", url, exc)
            return None
        if response.status not in (200, 206):
            return None
        base = 0 if response.status == 200 else offset  # 200: the whole (small) file
        found = scan(response.body, base)
        if found.opset is not None:
            return found.opset
        if found.resume is None or len(response.body) < WINDOW:
            return None
        offset = found.resume
    return None


async def _listing(engine: Engine, url: str, spec: str) -> Listing:
    """Every page of the recursive listing, following ``Link rel="next"``."""
    listing, origin = Listing(), _origin(url)
    next_url: str | None = url
    while next_url is not None:
        response = await engine.get_bytes(next_url, {"Accept": "application/json"})
        if response.status in (404, 410):
            raise ManifestNotFoundError(f"{next_url} answered 404 for {spec}")
        page = _json_list(response.body, next_url)
        listing.add_page(page)
        if len(listing.files) > MAX_LISTED_FILES:
            raise ManifestParseError(
                f"{spec} lists more than {MAX_LISTED_FILES} files; refusing to build "
                "a manifest from it",
                hint="add an ONNX_HUB_MANIFEST.json to the repo",
            )
        link = next_link(response.headers.get("Link"))
        next_url = urljoin(next_url, link) if link else None
        if next_url is not None and _origin(next_url) != origin:
            raise ManifestParseError(f"{url}: the next page is on another host")
    return listing


def _json_list(body: bytes, url: str) -> list[object]:
    try:
        page = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise ManifestParseError(f"{url} did not answer JSON: {exc}") from exc
    if not isinstance(page, list):
        raise ManifestParseError(f"{url} did not answer a JSON list of files")
    return page


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc
