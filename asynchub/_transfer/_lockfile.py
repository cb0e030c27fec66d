"""The lock file beside each destination: concurrent downloads of one file wait.

``flock`` on POSIX and ``msvcrt.locking`` on Windows, the primitives ``filelock``
uses. The holder removes the file when it leaves nothing else behind, so a cache
does not fill up with lock files, and a lock file found on arrival means a previous
owner kept a partial (or died): the cue to look for leftovers to resume. The
usual case (no lock file) therefore skips scanning the folder, which made many
small files in one folder cost O(n²).

Removing a lock file that others may be opening is safe because :meth:`acquire`
checks, once locked, that the path still names the file it locked; and correctness
never rests on the lock anyway (see :mod:`.state`).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

__all__ = ("TargetLock", "is_held")

_BINARY = getattr(os, "O_BINARY", 0)

if sys.platform == "win32":
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


class TargetLock:
    """A held lock file; :meth:`release` exactly once (later calls do nothing)."""

    def __init__(self, path: Path, fd: int, existed: bool) -> None:
        self.path, self.fd, self.existed = path, fd, existed

    @classmethod
    def acquire(cls, path: Path) -> TargetLock | None:
        """Take the lock without blocking; None while someone else holds it."""
        while True:
            opened = _open(path)
            if opened is None:
                continue  # removed between our two opens: try again
            fd, existed = opened
            if not _try_lock(fd):
                os.close(fd)
                return None
            if _still_names(path, fd):
                return cls(path, fd, existed)
            os.close(fd)  # its holder removed it after we opened it

    def release(self, *, remove: bool) -> None:
        """Unlock; ``remove`` deletes the file (nothing left here to resume)."""
        if self.fd < 0:
            return
        if remove and sys.platform != "win32":
            _unlink(self.path)  # while still locked: see _still_names
        os.close(self.fd)
        self.fd = -1
        if remove and sys.platform == "win32":
            with contextlib.suppress(OSError):  # Windows: open files stay
                _unlink(self.path)


def is_held(path: Path) -> bool:
    """True when a live process holds the lock file ``path`` (blocking)."""
    try:
        fd = os.open(path, os.O_RDWR | _BINARY)
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def _open(path: Path) -> tuple[int, bool] | None:
    """Open or create ``path``: (fd, whether it existed); None if it just vanished."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY, 0o644), False
    except FileExistsError:
        pass
    try:
        return os.open(path, os.O_RDWR | _BINARY), True
    except FileNotFoundError:
        return None


def _still_names(path: Path, fd: int) -> bool:
    if sys.platform == "win32":
        return True  # nobody removes a lock file another process has open there
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
