"""The transfer engine: concurrent, ranged, resumable, hashed while streaming, atomic.

Public to the rest of asynchub (not to users): :class:`Engine`, the value types of
:mod:`.spec`, and :func:`sha256_file` (the cache hashes its files with it).
Temporary-file suffixes for ``cache prune`` are in :mod:`.state`.

The face loads each name on first use (PEP 562): the cache imports
:func:`sha256_file` without loading the network stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from .assembler import sha256_file
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

_SPEC = (
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
_STATE = (
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "STATE_SUFFIX",
    "STATE_TMP_SUFFIX",
    "TEMP_SUFFIXES",
    "may_be_owned",
)
_LAZY = {
    "Engine": ".engine",
    "is_held": ".lockfile",
    "sha256_file": ".assembler",
    **dict.fromkeys(_SPEC, ".spec"),
    **dict.fromkeys(_STATE, ".state"),
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


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
    "sha256_file",
)
