"""asynchub: fast, verified, resumable ONNX model downloads; onnx.hub's successor.

``from asynchub import hub`` is a drop-in for the removed ``onnx.hub``; the clients
:class:`AsyncHub` and :class:`Hub` are for services that want their own instance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .config import ArchiveLimits, HubConfig, Limits, RetryPolicy, Timeouts
from .errors import (
    ArchiveError,
    ArchiveUnavailableError,
    AsyncHubError,
    CacheError,
    CompositeError,
    CompositeLoadError,
    CompositeMergeError,
    ConfigError,
    DiskFullError,
    HostNotFoundError,
    HTTPStatusError,
    HubAuthError,
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
    RetryableStatusError,
    TLSError,
    TransferError,
    TransferTimeoutError,
    UnexpectedContentError,
    UnsafePathError,
    UntrustedRepoError,
)

if TYPE_CHECKING:
    from . import hub
    from ._transfer import (
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
    from .manifest import IoPort, IoPorts, Manifest, ManifestEntry, Metadata, ModelInfo
    from .mirror import (
        FileFailure,
        FileOutcome,
        MirrorPlan,
        MirrorReport,
        Selection,
        Switches,
    )

# Imported on first use (PEP 562): the engine alone (``asynchub._transfer``) then
# does not pay for the clients, the manifest model and the mirror at start-up.
_LAZY = {
    "hub": ".hub",
    **dict.fromkeys(
        (
            "FileFailed",
            "FileProgress",
            "FileResult",
            "FileSpec",
            "FileStarted",
            "FileVerified",
            "ProgressCallback",
            "ProgressEvent",
        ),
        "._transfer.spec",
    ),
    **dict.fromkeys(("AsyncHub", "Hub"), ".client"),
    **dict.fromkeys(
        ("IoPort", "IoPorts", "Manifest", "ManifestEntry", "Metadata", "ModelInfo"),
        ".manifest",
    ),
    **dict.fromkeys(
        (
            "FileFailure",
            "FileOutcome",
            "MirrorPlan",
            "MirrorReport",
            "Selection",
            "Switches",
        ),
        ".mirror",
    ),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__version__ = "0.1.0"

__all__ = (
    "ArchiveError",
    "ArchiveLimits",
    "ArchiveUnavailableError",
    "AsyncHub",
    "AsyncHubError",
    "CacheError",
    "CompositeError",
    "CompositeLoadError",
    "CompositeMergeError",
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
    "HostNotFoundError",
    "Hub",
    "HubAuthError",
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
    "RetryableStatusError",
    "Selection",
    "Switches",
    "TLSError",
    "Timeouts",
    "TransferError",
    "TransferTimeoutError",
    "UnexpectedContentError",
    "UnsafePathError",
    "UntrustedRepoError",
    "__version__",
    "hub",
)
