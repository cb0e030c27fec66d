"""The one translation of an ``OSError`` on the disk into asynchub's errors.

The engine (writing a download), the cache (extracting a tarball) and the mirror
(placing a file) all report a full disk, a read-only or forbidden folder, or any
other failure the same way: one errno table, one message shape, a hint per class.
"""

from __future__ import annotations

import errno
from pathlib import Path

from ..errors import CacheError, DiskFullError, ReadOnlyCacheError

__all__ = ("os_error",)

_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_FORBIDDEN = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def os_error(exc: OSError, path: Path | str, action: str = "write") -> CacheError:
    """The asynchub error for ``exc``, raised while trying to ``action`` ``path``.

    A full disk or quota is a :class:`DiskFullError`, a read-only or forbidden
    folder a :class:`ReadOnlyCacheError`, anything else a :class:`CacheError`;
    each carries its class's hint.
    """
    why = exc.strerror or str(exc)
    if exc.errno in _FULL:
        where = f"no space left on the device while writing {path}"
        return DiskFullError(f"{where} ({why})")
    if exc.errno in _FORBIDDEN:
        return ReadOnlyCacheError(f"cannot {action} {path}: {why}")
    return CacheError(f"cannot {action} {path}: {why}")
