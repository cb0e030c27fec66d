"""A verified file's own record of its SHA-256: an extended attribute on the file.

When the engine has checked a download's SHA-256 it writes, on the temporary file
and before the rename, the attribute :data:`NAME`: the digest, the size and the
modification time it saw. Whoever later finds the file under its final name and an
attribute that still matches its size and mtime knows it is the file that was
verified, without hashing it again. The attribute belongs to the inode, so it
appears with the file in one rename, goes with it, and vanishes with it: a new
file that reuses the inode number has none.

It replaces a small marker file per model in ``.asynchub/verified/``, which cost
one more file creation per model (on ext4 after many deletions, 130 µs or more of
kernel time each). Where user extended attributes are missing (macOS and Windows
in Python, FAT, some network file systems, tmpfs before Linux 6.6) every function
here reports failure and callers keep the marker files.

The value is 49 bytes (version, SHA-256, size, mtime in ns) so that it fits in an
ext4 inode and needs no block of its own. A value of any other shape, planted or
from a later version, is simply not a match.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

__all__ = ("NAME", "is_stamped", "stamp_fd", "stamp_path")

NAME = "user.asynchub.verified"
_VERSION = 1
_FORMAT = struct.Struct("<B32sQQ")
_AVAILABLE = hasattr(os, "setxattr")


def _value(sha256: str, st: os.stat_result) -> bytes:
    return _FORMAT.pack(_VERSION, bytes.fromhex(sha256), st.st_size, st.st_mtime_ns)


def stamp_fd(fd: int, sha256: str) -> bool:
    """Stamp the open file ``fd`` as having ``sha256`` now; False if unsupported.

    Call it after the file's last write or truncation: a later write changes the
    mtime and so voids the stamp.
    """
    if not _AVAILABLE:
        return False
    try:
        os.setxattr(fd, NAME, _value(sha256, os.fstat(fd)))
    except (OSError, ValueError):
        return False
    return True


def stamp_path(path: Path, sha256: str) -> bool:
    """Stamp the regular file at ``path`` (never a link's target); False if not."""
    if not _AVAILABLE:
        return False
    try:
        st = os.lstat(path)
        os.setxattr(path, NAME, _value(sha256, st), follow_symlinks=False)
    except (OSError, ValueError):
        return False
    return True


def is_stamped(path: Path, sha256: str | None) -> bool:
    """True when ``path`` carries a stamp matching its size, mtime and ``sha256``.

    ``sha256`` None accepts any digest (an entry without an expected hash).
    """
    if not _AVAILABLE:
        return False
    try:
        raw = os.getxattr(path, NAME, follow_symlinks=False)
        st = os.lstat(path)
    except OSError:
        return False
    if len(raw) != _FORMAT.size:
        return False
    version, digest, size, mtime_ns = _FORMAT.unpack(raw)
    if (version, size, mtime_ns) != (_VERSION, st.st_size, st.st_mtime_ns):
        return False
    return sha256 is None or digest.hex() == sha256.lower()
