"""A hub in a local folder (or ``file://`` URL): a mirror, a shared drive, a test zoo.

Local folders are trusted in ``compat`` trust mode (they are already on this machine,
under the user's control); in ``strict`` mode they must be allow-listed like any repo.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ..errors import RepoSpecError
from ._source import MANIFEST_NAME, Source

__all__ = ("looks_local", "source")


def looks_local(repo: str) -> bool:
    """True for file:// URLs, explicit paths, and existing non-GitHub-shaped dirs."""
    if repo.startswith(("file://", "/", "./", "../", "~")) or repo in (".", ".."):
        return True
    return os.path.isdir(repo) and repo.count("/") != 1


def source(repo: str) -> Source:
    """The Source for a folder; it must exist."""
    try:
        root = _to_path(repo).expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # ~nosuchuser, a loop of symlinks
        raise RepoSpecError(f"{repo!r} is not a usable folder: {exc}") from exc
    if not root.is_dir():
        raise RepoSpecError(f"{repo!r} is not an existing folder")
    base = root.as_uri().rstrip("/") + "/"
    return Source(
        spec=str(root),
        kind="local",
        manifest_url=base + MANIFEST_NAME,
        file_bases=(base,),
        trusted_by_default=True,
    )


def _to_path(repo: str) -> Path:
    if not repo.startswith("file://"):
        return Path(repo)
    parts = urlsplit(repo)
    if parts.netloc not in ("", "localhost"):
        raise RepoSpecError(f"{repo!r}: file:// URLs on another host are not supported")
    return Path(unquote(parts.path))
