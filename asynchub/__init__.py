"""asynchub: fast, verified, resumable ONNX model downloads; onnx.hub's successor.

``from asynchub import hub`` is a drop-in for the removed ``onnx.hub``; the clients
:class:`AsyncHub` and :class:`Hub` are for services that want their own instance.
"""

from __future__ import annotations

from . import hub
from ._transfer.spec import (
    FileFailed,
    FileProgress,
    FileResult,
    FileSpec,
    FileStarted,
    FileVerified,
    ProgressCallback,
    ProgressEvent,
)
from .client import AsyncHub, Hub
from .config import ArchiveLimits, HubConfig, Limits, RetryPolicy, Timeouts
from .errors import (
    ArchiveError,
    AsyncHubError,
    CacheError,
    ConfigError,
    DiskFullError,
    HTTPStatusError,
    IncompleteTransferError,
    IntegrityError,
    ManifestError,
    ManifestNotFoundError,
    ManifestParseError,
    MirrorError,
    ModelNotFoundError,
    NetworkError,
    OfflineCacheMissError,
    OpsetNotFoundError,
    ReadOnlyCacheError,
    RedirectError,
    RemoteFileNotFoundError,
    RepoSpecError,
    TransferError,
    TransferTimeoutError,
    UnexpectedContentError,
    UnsafePathError,
    UntrustedRepoError,
)
from .manifest import IoPort, IoPorts, Manifest, ManifestEntry, Metadata, ModelInfo
from .mirror import FileFailure, FileOutcome, MirrorPlan, MirrorReport

__version__ = "0.1.0"

__all__ = (
    "ArchiveError",
    "ArchiveLimits",
    "AsyncHub",
    "AsyncHubError",
    "CacheError",
    "ConfigError",
    "DiskFullError",
    "FileFailed",
    "FileFailure",
    "FileOutcome",
    "FileProgress",
    "FileResult",
    "FileSpec",
    "FileStarted",
    "FileVerified",
    "HTTPStatusError",
    "Hub",
    "HubConfig",
    "IncompleteTransferError",
    "IntegrityError",
    "IoPort",
    "IoPorts",
    "Limits",
    "Manifest",
    "ManifestEntry",
    "ManifestError",
    "ManifestNotFoundError",
    "ManifestParseError",
    "Metadata",
    "MirrorError",
    "MirrorPlan",
    "MirrorReport",
    "ModelInfo",
    "ModelNotFoundError",
    "NetworkError",
    "OfflineCacheMissError",
    "OpsetNotFoundError",
    "ProgressCallback",
    "ProgressEvent",
    "ReadOnlyCacheError",
    "RedirectError",
    "RemoteFileNotFoundError",
    "RepoSpecError",
    "RetryPolicy",
    "Timeouts",
    "TransferError",
    "TransferTimeoutError",
    "UnexpectedContentError",
    "UnsafePathError",
    "UntrustedRepoError",
    "__version__",
    "hub",
)
