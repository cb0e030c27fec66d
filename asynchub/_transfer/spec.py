"""What the engine is asked to do and what it reports back.

The engine moves bytes from URLs to a verified file; it knows nothing about ONNX or
manifests. These value types are the whole contract between it and its callers
(hub, mirror, CLI).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import AsyncHubError

__all__ = (
    "BytesResponse",
    "FileFailed",
    "FileProgress",
    "FileResult",
    "FileSpec",
    "FileStarted",
    "FileVerified",
    "ProgressCallback",
    "ProgressEvent",
)


@dataclass(frozen=True)
class FileSpec:
    """One file to fetch.

    Attributes:
        urls: Candidate URLs in order of preference; the first that serves the file
            wins (``http``, ``https``, or ``file`` for local repos).
        dest: Final path. Nothing is ever left under it unless it is verified.
        sha256: Expected lowercase hex digest, or None when the manifest has none
            (the digest of what arrived is then reported in the result).
        size: Expected size in bytes, or None when unknown.
        label: Human name for progress and errors (usually the ``model_path``).
        root: The cache (or mirror) root ``dest`` lies in: no folder between it
            and ``dest`` may be a link (checked as the folder is opened). None:
            only ``dest``'s own folder is trusted as given.
    """

    urls: tuple[str, ...]
    dest: Path
    sha256: str | None = None
    size: int | None = None
    label: str = ""
    root: Path | None = None


@dataclass(frozen=True)
class FileResult:
    """A file that now sits verified at ``path``."""

    path: Path
    sha256: str
    size: int
    url: str
    bytes_downloaded: int
    bytes_resumed: int = 0
    stamped: bool = False  # the engine recorded its SHA-256 on it (_fs.stamp)


@dataclass(frozen=True)
class FileStarted:
    label: str
    dest: Path
    total: int | None


@dataclass(frozen=True)
class FileProgress:
    label: str
    done: int
    total: int | None


@dataclass(frozen=True)
class FileVerified:
    label: str
    result: FileResult


@dataclass(frozen=True)
class FileFailed:
    label: str
    error: AsyncHubError


ProgressEvent = FileStarted | FileProgress | FileVerified | FileFailed
ProgressCallback = Callable[[ProgressEvent], None]


@dataclass(frozen=True)
class BytesResponse:
    """The whole body of a small GET (a manifest), read into memory.

    Attributes:
        status: 200, 206, 304, 404 or 410 (other statuses raise).
        headers: Response headers (case-insensitive mapping).
        body: The body bytes, at most the ``max_bytes`` the caller allowed.
        url: The URL that answered, after redirects.
    """

    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str
