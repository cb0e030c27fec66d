"""Get a repo's manifest: from memory, the network (ETag-revalidated), disk, or the
copy of the official manifest that ships with asynchub.

Order for remote repos: a copy fetched less than ``MEMO_SECONDS`` ago is used as is;
otherwise the server is asked with ``If-None-Match`` and a ``304`` reuses the cached
copy. If the network fails, the cached copy (then, for ``onnx/models:main``, the
shipped copy) is used with a warning. In offline mode only the cached and shipped
copies are used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio

from .._fs import read_regular
from .._transfer import Engine
from ..config import HubConfig
from ..errors import (
    ManifestNotFoundError,
    OfflineCacheMissError,
    TransferError,
)
from ..manifest import Manifest
from ..sources import MANIFEST_NAME, Source, github
from ._layout import STATE_DIR, write_atomic
from ._trust import admit

__all__ = ("ManifestStore", "shipped_manifest_bytes")

_log = logging.getLogger("asynchub")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_warned: set[str] = set()  # fallback warnings already given in this process


def _warn_once(key: str, message: str) -> None:
    """Log a fallback warning the first time only: a script that lists and loads
    in a loop while offline sees it once, not on every call."""
    if key in _warned:
        _log.debug(message)
        return
    _warned.add(key)
    _log.warning(message)


def shipped_manifest_bytes() -> bytes:
    """The official zoo's manifest as shipped inside the package."""
    return (resources.files("asynchub") / "data" / MANIFEST_NAME).read_bytes()


class ManifestStore:
    """Manifests for one client, memoised for ``MEMO_SECONDS``."""

    MEMO_SECONDS = 60.0

    PIN_SECONDS = 5.0

    def __init__(self, config: HubConfig, engine: Engine) -> None:
        self._config = config
        self._engine = engine
        self._memo: dict[str, tuple[float, Manifest, Source]] = {}

    async def get(self, source: Source) -> Manifest:
        """The parsed manifest of ``source``; raises ManifestNotFoundError if none."""
        return (await self.resolve(source))[0]

    async def resolve(self, source: Source) -> tuple[Manifest, Source]:
        """The manifest and the Source to fetch its files from.

        For a GitHub ref, the returned Source is pinned to the commit the ref pointed
        at when the manifest was read, so the manifest and every file of one
        operation come from the same commit even if the branch moves meanwhile.
        """
        hit = self._memo.get(source.manifest_url)
        if hit and time.monotonic() - hit[0] < self.MEMO_SECONDS:
            return hit[1], hit[2]
        await admit(source, self._config, silent=False, manifest_only=True)
        if source.kind == "hf":
            from ..sources import hf_manifest  # its listing code: for hf:// repos only

            data, pinned = await hf_manifest.load(
                self._engine, self._config, source, self._read_async, self._write_async
            )
        else:
            pinned = await self._pin(source)
            data = await self._load(source, pinned)
        manifest = Manifest.parse(data, source=pinned.manifest_url)
        self._memo[source.manifest_url] = (time.monotonic(), manifest, pinned)
        return manifest, pinned

    async def _pin(self, source: Source) -> Source:
        if source.kind != "github" or self._config.offline or not self._config.pin_refs:
            return source
        if github.is_commit(github.parse(source.spec)[2]):
            return source
        commit = await self._commit_of(source.spec)
        return github.source(source.spec, self._config, commit) if commit else source

    async def _commit_of(self, spec: str) -> str | None:
        """The ref's commit from the GitHub API, or None (best effort, bounded)."""
        url = github.commit_url(spec, self._config)
        accept = {"Accept": "application/vnd.github.sha"}
        with anyio.move_on_after(self.PIN_SECONDS):
            try:
                response = await self._engine.get_bytes(url, accept, max_bytes=256)
            except TransferError as exc:
                _log.debug("could not pin %s to a commit: %s", spec, exc)
                return None
            commit = response.body.decode("ascii", "replace").strip()
            if response.status == 200 and github.is_commit(commit):
                return commit
        _log.debug("could not pin %s to a commit; using the ref as given", spec)
        return None

    async def _load(self, source: Source, pinned: Source) -> bytes:
        """The manifest's bytes, read from ``pinned`` but cached on disk under
        ``source``'s URL, so that an offline run (which cannot pin) finds them."""
        if source.kind == "local":
            data = await _read_local(source)
            # A copy lets 'cache ls' name these models and 'cache prune' keep them.
            await anyio.to_thread.run_sync(
                self._write_cached, source.manifest_url, data, ""
            )
            return data
        key = source.manifest_url
        cached = await anyio.to_thread.run_sync(self._read_cached, key)
        if self._config.offline:
            return self._fallback(source, cached, None)
        try:
            return await self._fetch(pinned.manifest_url, key, cached)
        except TransferError as exc:
            return self._fallback(source, cached, exc)

    async def _fetch(
        self, url: str, key: str, cached: tuple[bytes, str] | None
    ) -> bytes:
        headers = {"If-None-Match": cached[1]} if cached and cached[1] else None
        limit = self._config.limits.max_manifest_bytes
        response = await self._engine.get_bytes(url, headers=headers, max_bytes=limit)
        if response.status == 304 and cached:
            return cached[0]
        if response.status in (404, 410):
            raise ManifestNotFoundError(f"Could not find manifest at {url}")
        etag = response.headers.get("ETag", "")
        await anyio.to_thread.run_sync(self._write_cached, key, response.body, etag)
        return response.body

    def _fallback(
        self, source: Source, cached: tuple[bytes, str] | None, exc: Exception | None
    ) -> bytes:
        why = "offline mode" if exc is None else f"the network failed: {_cause(exc)}"
        if cached:
            _warn_once(
                f"cached {source.spec}",
                f"{why}; using the cached manifest of {source.spec}",
            )
            return cached[0]
        if source.trusted_by_default:
            _warn_once("shipped", f"{why}; using the manifest shipped with asynchub")
            return shipped_manifest_bytes()
        if exc is None:
            raise OfflineCacheMissError(
                f"no cached manifest for {source.spec} and {why}"
            )
        raise ManifestNotFoundError(
            f"{_cause(exc)}, so the manifest of {source.spec} could not be read, "
            "and no copy of it is cached",
            hint="check the repo name and ref, and your network and proxy "
            "settings; ASYNCHUB_OFFLINE=1 works from the cache alone",
        ) from exc

    async def _read_async(self, key: str) -> tuple[bytes, str] | None:
        return await anyio.to_thread.run_sync(self._read_cached, key)

    async def _write_async(self, key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._write_cached, key, data, "")

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        folder = self._config.resolved_cache_dir() / STATE_DIR / "manifests"
        return folder / f"{key}.json", folder / f"{key}.meta.json"

    def _read_cached(self, url: str) -> tuple[bytes, str] | None:
        data_path, meta_path = self._paths(url)
        try:
            meta = json.loads(read_regular(meta_path, 64 * 1024))
            limit = int(self._config.limits.max_manifest_bytes)
            return read_regular(data_path, limit), _usable_etag(meta.get("etag"))
        except (OSError, ValueError, AttributeError):
            return None

    def _write_cached(self, url: str, data: bytes, etag: str) -> None:
        data_path, meta_path = self._paths(url)
        try:
            if not etag and read_regular(data_path, len(data) + 1) == data:
                return  # a local folder's unchanged manifest: no write per call
        except OSError:
            pass
        try:
            root = self._config.resolved_cache_dir()
            write_atomic(data_path, data, root)
            meta = json.dumps({"url": url, "etag": etag}).encode()
            write_atomic(meta_path, meta, root)
        except OSError:  # caching the manifest is an optimisation
            _log.debug("could not cache manifest of %s", url, exc_info=True)


def _usable_etag(value: object) -> str:
    """A cached ETag to send back, or "" (fetch in full) when it is not a string or
    holds a control character: a meta file edited to carry CR LF must not become
    a header of the next request."""
    if not isinstance(value, str) or _CONTROL.search(value):
        return ""
    return value


def _cause(exc: Exception) -> str:
    """An error's message without its hint (the caller gives its own)."""
    return exc.message if isinstance(exc, TransferError) else str(exc)


async def _read_local(source: Source) -> bytes:
    path = Path(unquote(urlsplit(source.manifest_url).path))
    try:
        return await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        raise ManifestNotFoundError(f"Could not find manifest at {path}") from None
