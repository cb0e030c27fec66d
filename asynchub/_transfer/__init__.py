"""The transfer engine: concurrent, ranged, resumable, hashed while streaming, atomic.

Public to the rest of asynchub (not to users): :class:`Engine` and the value types
of :mod:`.spec`. Temporary-file suffixes for ``cache prune`` are in :mod:`.state`.
"""

from __future__ import annotations

from .engine import Engine
from .lockfile import is_held
from .spec import (
    BytesResponse,
    FileFailed,
    FileProgress,
    FileResult,
    FileSpec,
    FileStarted,
    FileVerified,
    ProgressCallback,
    ProgressEvent,
)
from .state import (
    LOCK_SUFFIX,
    PART_SUFFIX,
    STATE_SUFFIX,
    STATE_TMP_SUFFIX,
    TEMP_SUFFIXES,
    may_be_owned,
)

__all__ = (
    "BytesResponse",
    "Engine",
    "FileFailed",
    "FileProgress",
    "FileResult",
    "FileSpec",
    "FileStarted",
    "FileVerified",
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "ProgressCallback",
    "ProgressEvent",
    "STATE_SUFFIX",
    "STATE_TMP_SUFFIX",
    "TEMP_SUFFIXES",
    "is_held",
    "may_be_owned",
)
