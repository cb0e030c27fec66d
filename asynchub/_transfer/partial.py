"""The temporary file of one download job, from its lock to its final rename.

A :class:`Partial` locks the destination, claims a previous partial that fits (or
starts an empty one), records its progress in the resume sidecar, and ends in
exactly one of commit (the verified file under its final name), keep (for a later
run) or discard. The names, the sidecar and the rules of ownership are in
:mod:`.state`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from .._fs import Folder, NotRegularFileError, stamp_fd
from ..errors import CacheError
from .assembler import Assembler, Intervals, sha256_fd
from .lockfile import TargetLock
from .state import (
    ResumeState,
    claim_previous,
    lock_name,
    mark_done,
    mark_live,
    new_token,
    part_name,
    state_name,
    write_state,
)

__all__ = ("Partial", "fsync_dir")


class Partial:
    """The temporary file and sidecar of one destination, owned by one job.

    Open with :meth:`begin` (lock, then :meth:`open`); then exactly one of
    :meth:`commit`, :meth:`keep` or :meth:`discard`, which also release the lock.
    All methods do blocking I/O and run in worker threads. Every name is used
    relative to ``folder``, opened from the cache root without following links
    (:mod:`asynchub._fs.safe`).
    """

    def __init__(
        self,
        dest: Path,
        token: str,
        state: ResumeState,
        fd: int,
        lock: TargetLock | None = None,
        folder: Folder | None = None,
    ) -> None:
        self.dest, self.token, self.state, self.fd = dest, token, state, fd
        self.lock = lock
        self.folder = folder if folder is not None else Folder.by_path(dest.parent)
        self.assembler = Assembler(fd, Intervals(state.done))
        self.resumed = self.assembler.covered()
        self.small = False  # no lock and no leftovers: see begin(small=True)
        self.sha256: str | None = None  # the verified digest, set by prepare()
        self.stamped = False  # prepare() recorded it on the file (an xattr)
        self.others_left = False  # leftovers of live owners: keep the lock file
        self.saved = False  # the sidecar exists (first written by save())
        self._save_lock = threading.Lock()
        mark_live(token)

    @property
    def part_path(self) -> Path:
        return self.dest.with_name(part_name(self.dest, self.token))

    @property
    def state_path(self) -> Path:
        return self.dest.with_name(state_name(self.dest, self.token))

    @classmethod
    def begin(
        cls,
        dest: Path,
        urls: tuple[str, ...],
        sha256: str | None,
        size: int | None,
        root: Path | None = None,
        *,
        locked: bool = True,
        small: bool = False,
    ) -> Partial | None:
        """Lock ``dest`` and open its partial; None while another holds the lock.

        The folder is opened from ``root`` (default: ``dest``'s folder) without
        following links, created as needed. ``locked=False`` skips the lock (a
        waiter that gave up on a holder that makes no progress).

        ``small=True`` (a file too small to split, with a known SHA-256) takes
        no lock when there is no lock file: then no earlier run kept a partial
        to resume (:meth:`keep` creates the lock file), and two processes that
        fetch the file at once each download it into their own temporary file
        (at most one part's worth twice) and both end with the same verified
        file. The lock file cost a creation and a removal per file, as much as
        the download itself for small files on a busy disk. A small file whose
        owner was killed leaves an orphan part there that only ``cache prune``
        (or a later look for leftovers) removes.
        """
        folder = Folder.open(root or dest.parent, dest.parent)
        if small and not _exists(folder, lock_name(dest)):
            try:
                partial = cls._fresh(dest, urls[0], sha256, folder)
            except BaseException:
                folder.close()
                raise
            partial.small = True
            return partial
        try:
            name = lock_name(dest)
            lock = TargetLock.acquire_in(folder, name) if locked else None
            if lock is None and locked:
                folder.close()
                return None
            try:
                return cls.open(dest, urls, sha256, size, lock=lock, folder=folder)
            except BaseException:
                if lock is not None:
                    lock.release(remove=False)
                raise
        except BaseException:
            folder.close()
            raise

    @classmethod
    def open(
        cls,
        dest: Path,
        urls: tuple[str, ...],
        sha256: str | None,
        size: int | None,
        lock: TargetLock | None = None,
        folder: Folder | None = None,
    ) -> Partial:
        """Claim the best previous partial for ``dest`` that fits, else start empty.

        With a ``lock`` that was just created, nobody left a partial: no scan. A
        claimed part that is not a regular file with one link (a planted link,
        hard link or FIFO) is removed, never opened.
        """
        if folder is None:
            folder = Folder.open(dest.parent, dest.parent)
        scan = lock is None or lock.existed
        claimed, others = (None, False)
        if scan:
            claimed, others = claim_previous(folder, dest, urls, sha256, size)
        fd = -1
        if claimed is not None:
            token, state = claimed
            try:
                fd = folder.open_file(part_name(dest, token), os.O_RDWR)
            except (NotRegularFileError, FileNotFoundError):
                folder.unlink(part_name(dest, token))
                folder.unlink(state_name(dest, token))
                claimed = None
            else:
                size_now = os.fstat(fd).st_size
                state.done = Intervals(state.done).clip(size_now).as_list()
        if claimed is None:
            partial = cls._fresh(dest, urls[0], sha256, folder, lock)
        else:
            partial = cls(dest, token, state, fd, lock, folder)
            partial.saved = True
        partial.others_left = others
        return partial

    @classmethod
    def _fresh(
        cls,
        dest: Path,
        url: str,
        sha256: str | None,
        folder: Folder,
        lock: TargetLock | None = None,
    ) -> Partial:
        """An empty partial under a new token (created with ``O_EXCL``)."""
        token, flags = new_token(), os.O_RDWR | os.O_CREAT | os.O_EXCL
        fd = folder.open_file(part_name(dest, token), flags, 0o644)
        return cls(dest, token, ResumeState(url, sha256), fd, lock, folder)

    def restart(self, url: str) -> None:
        """Drop every byte: the remote changed, or another URL is tried."""
        self.assembler.reset()
        self.state = ResumeState(url, self.state.sha256)
        self.resumed = 0
        self.save()

    def save(self) -> None:
        """Record the ranges on disk (atomically; cheap, called about once a second)."""
        with self._save_lock:
            self.state.done = self.assembler.snapshot()
            write_state(self.folder, self.dest, self.token, self.state)
            self.saved = True

    def sync_data(self) -> None:
        """Write the bytes received so far to disk (no metadata: fdatasync)."""
        if self.fd >= 0:
            getattr(os, "fdatasync", os.fsync)(self.fd)

    def prepare(self, size: int, sha256: str) -> None:
        """Trim the verified file to ``size`` and stamp it with ``sha256``, the
        digest just checked (:mod:`asynchub._fs.stamp`), so that it arrives under
        its final name already vouched for. Then :meth:`sync_all` if wanted, and
        :meth:`commit`."""
        self.sha256 = sha256
        os.ftruncate(self.fd, size)  # nothing beyond the verified bytes
        self.stamped = stamp_fd(self.fd, sha256)  # after the last change to the data

    def sync_all(self) -> None:
        """Write the file's data and metadata to disk (fsync; may take a while)."""
        os.fsync(self.fd)

    def commit(self, fsync: bool) -> None:
        """Move the :meth:`prepare`-d file to ``dest`` (fsynced first when asked).

        The folder is not fsynced here: a crash may then forget the rename (the
        file is fetched again), never expose a partial; the engine fsyncs each
        folder it wrote to once, when it closes (:func:`fsync_dir`).
        """
        if fsync:
            self.sync_all()
        ours = os.fstat(self.fd)
        if os.name == "nt":  # Windows renames no open file; elsewhere the open fd
            self._close()  # keeps our inode (and its number) from being reused
        try:
            self.folder.rename(part_name(self.dest, self.token), self.dest.name)
            self._check_final(ours, self.sha256)
        finally:
            self._close()
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def _check_final(self, ours: os.stat_result, sha256: str | None) -> None:
        """The final name must hold the very file we wrote (not a swapped-in link),
        or, for a small file fetched without the lock, another downloader's
        verified copy (a race between two renames: both files are the same)."""
        try:
            now = self.folder.lstat(self.dest.name)
        except FileNotFoundError:
            now = None
        identity = None if now is None else (now.st_ino, now.st_dev, now.st_mode)
        if identity == (ours.st_ino, ours.st_dev, ours.st_mode):
            return
        if self.small and sha256 is not None and self._holds(sha256):
            return
        if now is not None:
            self.folder.unlink(self.dest.name)
        raise CacheError(
            f"{self.dest} was replaced while it was being written",
            hint="another process writes into the cache folder; keep it private",
        )

    def _holds(self, sha256: str) -> bool:
        """Whether the final name is a regular file with this SHA-256 (hashed: a
        small file; a stamp alone is not trusted here, as anyone may write one)."""
        try:
            fd = self.folder.open_file(self.dest.name, os.O_RDONLY, writing=False)
        except OSError:
            return False
        return sha256_fd(fd) == sha256.lower()

    def keep(self) -> None:
        """Leave the partial, its sidecar and the lock file for a later run."""
        with contextlib.suppress(OSError):
            self.save()
        if self.small:  # the lock file is the next run's cue to look
            with contextlib.suppress(OSError):
                flags = os.O_RDWR | os.O_CREAT
                os.close(self.folder.open_file(lock_name(self.dest), flags))
        self._close()
        self._unlock(remove=False)

    def discard(self) -> None:
        """Remove the partial and its sidecar."""
        self._close()
        self.folder.unlink(part_name(self.dest, self.token))
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def _close(self) -> None:
        mark_done(self.token)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _remove_state(self) -> None:
        if self.saved:
            self.folder.unlink(state_name(self.dest, self.token))

    def _unlock(self, *, remove: bool) -> None:
        try:
            if self.lock is not None:
                self.lock.release(remove=remove)
        finally:
            self.folder.close()


def _exists(folder: Folder, name: str) -> bool:
    try:
        folder.lstat(name)
    except FileNotFoundError:
        return False
    return True


def fsync_dir(folder: Path) -> None:
    """Make the renames into ``folder`` durable (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
