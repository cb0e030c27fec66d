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
import time
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import anyio

from ._cache import STATE_DIR, write_atomic
from ._transfer import Engine
from .config import HubConfig
from .errors import (
    ManifestNotFoundError,
    OfflineCacheMissError,
    TransferError,
)
from .manifest import Manifest
from .sources import Source

__all__ = ("ManifestStore", "shipped_manifest_bytes")

_log = logging.getLogger("asynchub")


def shipped_manifest_bytes() -> bytes:
    """The official zoo's manifest as shipped inside the package."""
    return (
        resources.files("asynchub") / "data" / "ONNX_HUB_MANIFEST.json"
    ).read_bytes()


class ManifestStore:
    """Manifests for one client, memoised for ``MEMO_SECONDS``."""

    MEMO_SECONDS = 60.0

    def __init__(self, config: HubConfig, engine: Engine) -> None:
        self._config = config
        self._engine = engine
        self._memo: dict[str, tuple[float, Manifest]] = {}

    async def get(self, source: Source) -> Manifest:
        """The parsed manifest of ``source``; raises ManifestNotFoundError if none."""
        hit = self._memo.get(source.manifest_url)
        if hit and time.monotonic() - hit[0] < self.MEMO_SECONDS:
            return hit[1]
        data = await self._load(source)
        manifest = Manifest.parse(data, source=source.manifest_url)
        self._memo[source.manifest_url] = (time.monotonic(), manifest)
        return manifest

    async def _load(self, source: Source) -> bytes:
        if source.kind == "local":
            return await _read_local(source)
        return await self._load_remote(source)

    async def _load_remote(self, source: Source) -> bytes:
        cached = await anyio.to_thread.run_sync(self._read_cached, source.manifest_url)
        if self._config.offline:
            return self._fallback(source, cached, None)
        try:
            return await self._fetch(source, cached)
        except TransferError as exc:
            return self._fallback(source, cached, exc)

    async def _fetch(self, source: Source, cached: tuple[bytes, str] | None) -> bytes:
        url = source.manifest_url
        headers = {"If-None-Match": cached[1]} if cached and cached[1] else None
        limit = self._config.limits.max_manifest_bytes
        response = await self._engine.get_bytes(url, headers=headers, max_bytes=limit)
        if response.status == 304 and cached:
            return cached[0]
        if response.status in (404, 410):
            raise ManifestNotFoundError(f"Could not find manifest at {url}")
        etag = response.headers.get("ETag", "")
        await anyio.to_thread.run_sync(self._write_cached, url, response.body, etag)
        return response.body

    def _fallback(
        self, source: Source, cached: tuple[bytes, str] | None, exc: Exception | None
    ) -> bytes:
        why = "offline mode" if exc is None else f"the network failed ({exc})"
        if cached:
            _log.warning("%s: using the cached manifest of %s", why, source.spec)
            return cached[0]
        if source.trusted_by_default:
            _log.warning("%s: using the manifest shipped with asynchub", why)
            return shipped_manifest_bytes()
        message = f"no cached manifest for {source.spec} and {why}"
        if exc is None:
            raise OfflineCacheMissError(message)
        raise ManifestNotFoundError(
            f"Could not find manifest at {source.manifest_url}: {message}"
        ) from exc

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        folder = self._config.resolved_cache_dir() / STATE_DIR / "manifests"
        return folder / f"{key}.json", folder / f"{key}.meta.json"

    def _read_cached(self, url: str) -> tuple[bytes, str] | None:
        data_path, meta_path = self._paths(url)
        try:
            meta = json.loads(meta_path.read_text())
            return data_path.read_bytes(), str(meta.get("etag", ""))
        except (OSError, ValueError):
            return None

    def _write_cached(self, url: str, data: bytes, etag: str) -> None:
        data_path, meta_path = self._paths(url)
        try:
            write_atomic(data_path, data)
            write_atomic(meta_path, json.dumps({"url": url, "etag": etag}).encode())
        except OSError:  # caching the manifest is an optimisation
            _log.debug("could not cache manifest of %s", url, exc_info=True)


async def _read_local(source: Source) -> bytes:
    path = Path(unquote(urlsplit(source.manifest_url).path))
    try:
        return await anyio.Path(path).read_bytes()
    except FileNotFoundError:
        raise ManifestNotFoundError(f"Could not find manifest at {path}") from None
