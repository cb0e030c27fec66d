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

from .._fs import Folder, NotRegularFileError
from ..errors import CacheError

__all__ = ("TargetLock", "is_held")

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


LOCK_TRIES = 8
"""Opens of one lock file before giving up (it keeps vanishing or is not a file)."""


class TargetLock:
    """A held lock file; :meth:`release` exactly once (later calls do nothing)."""

    def __init__(self, folder: Folder, name: str, fd: int, existed: bool) -> None:
        self.folder, self.name, self.fd, self.existed = folder, name, fd, existed

    @property
    def path(self) -> Path:
        return self.folder.path / self.name

    @classmethod
    def acquire(cls, path: Path) -> TargetLock | None:
        """:meth:`acquire_in` the folder of ``path``, used by path."""
        return cls.acquire_in(Folder.by_path(path.parent), path.name)

    @classmethod
    def acquire_in(cls, folder: Folder, name: str) -> TargetLock | None:
        """Take the lock without blocking; None while someone else holds it.

        Bounded: a lock file that vanishes between our opens, or a planted link,
        FIFO or hard link in its place (removed: asynchub never makes one), is
        tried again at most :data:`LOCK_TRIES` times.
        """
        for _ in range(LOCK_TRIES):
            opened = _open(folder, name)
            if opened is None:
                continue  # removed between our two opens, or not a file: again
            fd, existed = opened
            if not _try_lock(fd):
                os.close(fd)
                return None
            if _still_names(folder, name, fd):
                return cls(folder, name, fd, existed)
            os.close(fd)  # its holder removed it after we opened it
        raise CacheError(
            f"cannot lock {folder.path / name}: it keeps vanishing or is not a "
            "regular file",
            hint="remove it and check who else writes into the cache folder",
        )

    def release(self, *, remove: bool) -> None:
        """Unlock; ``remove`` deletes the file (nothing left here to resume)."""
        if self.fd < 0:
            return
        if remove and sys.platform != "win32":
            self.folder.unlink(self.name)  # while still locked: see _still_names
        os.close(self.fd)
        self.fd = -1
        if remove and sys.platform == "win32":
            with contextlib.suppress(OSError):  # Windows: open files stay
                self.folder.unlink(self.name)


def is_held(path: Path) -> bool:
    """True when a live process holds the lock file ``path`` (blocking)."""
    try:
        fd = Folder.by_path(path.parent).open_file(path.name, os.O_RDWR)
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def _open(folder: Folder, name: str) -> tuple[int, bool] | None:
    """Open or create the lock: (fd, whether it existed); None to try again."""
    try:
        return folder.open_file(name, os.O_RDWR | os.O_CREAT | os.O_EXCL), False
    except FileExistsError:
        pass
    try:
        return folder.open_file(name, os.O_RDWR), True
    except FileNotFoundError:
        return None
    except NotRegularFileError:
        folder.unlink(name)  # a planted link or FIFO (a folder: unlink raises)
        return None


def _still_names(folder: Folder, name: str, fd: int) -> bool:
    if sys.platform == "win32":
        return True  # nobody removes a lock file another process has open there
    try:
        return folder.lstat(name).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
