"""Any static web server whose base URL holds ``ONNX_HUB_MANIFEST.json``."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import RepoSpecError
from ._source import MANIFEST_NAME, Source

__all__ = ("source",)


def source(url: str) -> Source:
    """The Source for an ``http(s)://`` base URL (a trailing manifest name is cut)."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise RepoSpecError(f"{url!r} has no host")
    if parts.query or parts.fragment:
        raise RepoSpecError(f"{url!r} must not have a query or fragment")
    base = url[: -len(MANIFEST_NAME)] if url.endswith(MANIFEST_NAME) else url
    base = base if base.endswith("/") else base + "/"
    return Source(
        spec=base, kind="http", manifest_url=base + MANIFEST_NAME, file_bases=(base,)
    )
