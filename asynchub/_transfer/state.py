"""Temporary files beside the destination, and the resume sidecar that explains them.

For a destination ``<dir>/<name>`` the engine uses, in ``<dir>``:

- ``<name>.<token>.asynchub-part``  the bytes received so far (unique per owner);
- ``<name>.<token>.asynchub-state`` JSON: URL, size, validator, ranges on disk,
  first written about a second into the download (a small file never has one);
- ``<name>.asynchub-lock``          the cross-process lock (:mod:`._lockfile`),
  removed again unless a partial is left behind.

A later run finds a previous partial through its state file and *claims* it by
renaming state and part to a fresh token: only one process wins a rename, so two
processes never write the same temporary file even where file locks silently do
nothing. It looks only when it finds a lock file (a previous owner kept a partial
or died), or when it has no lock. Correctness never rests on the lock: it rests on
unique names, SHA-256 verification and ``os.replace``. ``cache prune`` finds
leftovers by :data:`TEMP_SUFFIXES`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import string
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._fs import Folder, NotRegularFileError, write_in
from ..errors import CacheError
from .hashing import Assembler, Intervals
from .lockfile import TargetLock

__all__ = (
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "STATE_SUFFIX",
    "STATE_TMP_SUFFIX",
    "TEMP_SUFFIXES",
    "Partial",
    "ResumeState",
    "activity",
    "fsync_dir",
    "lock_path",
    "may_be_owned",
)

PART_SUFFIX = ".asynchub-part"
STATE_SUFFIX = ".asynchub-state"
STATE_TMP_SUFFIX = ".asynchub-state-tmp"
LOCK_SUFFIX = ".asynchub-lock"
TEMP_SUFFIXES = (PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX, LOCK_SUFFIX)
"""Every suffix the engine leaves beside a destination (for ``cache prune``)."""

ORPHAN_GRACE = 60.0
"""Seconds before a part without a sidecar, whose owner cannot be checked (another
host, or named by an older version), is taken for an orphan."""

STALE_FOREIGN_SECONDS = 600.0
"""A partial owned by another host is claimed only after this long untouched."""

MAX_STATE_BYTES = 1024 * 1024
"""A sidecar larger than this is damaged (or planted): never read into memory."""

_HOST = socket.gethostname()
_HOST_TAG = hashlib.sha256(_HOST.encode()).hexdigest()[:6]
_LIVE_TOKENS: set[str] = set()


@dataclass
class ResumeState:
    """The sidecar's content (JSON); ``done`` lists ranges already on disk."""

    url: str
    sha256: str | None
    total: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    done: list[tuple[int, int]] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    host: str = _HOST
    version: int = 1


def lock_path(dest: Path) -> Path:
    return dest.with_name(dest.name + LOCK_SUFFIX)


def _part(dest: Path, token: str) -> str:
    return f"{dest.name}.{token}{PART_SUFFIX}"


def _state(dest: Path, token: str) -> str:
    return f"{dest.name}.{token}{STATE_SUFFIX}"


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
        self.others_left = False  # leftovers of live owners: keep the lock file
        self.saved = False  # the sidecar exists (first written by save())
        self._save_lock = threading.Lock()
        _LIVE_TOKENS.add(token)

    @property
    def part_path(self) -> Path:
        return self.dest.with_name(_part(self.dest, self.token))

    @property
    def state_path(self) -> Path:
        return self.dest.with_name(_state(self.dest, self.token))

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
    ) -> Partial | None:
        """Lock ``dest`` and open its partial; None while another holds the lock.

        The folder is opened from ``root`` (default: ``dest``'s folder) without
        following links, created as needed. ``locked=False`` skips the lock (a
        waiter that gave up on a holder that makes no progress).
        """
        folder = Folder.open(root or dest.parent, dest.parent)
        try:
            name = lock_path(dest).name
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
            claimed, others = _claim_previous(folder, dest, urls, sha256, size)
        fd = -1
        if claimed is not None:
            token, state = claimed
            try:
                fd = folder.open_file(_part(dest, token), os.O_RDWR)
            except (NotRegularFileError, FileNotFoundError):
                folder.unlink(_part(dest, token))
                folder.unlink(_state(dest, token))
                claimed = None
            else:
                size_now = os.fstat(fd).st_size
                state.done = Intervals(state.done).clip(size_now).as_list()
        if claimed is None:
            token, state = _new_token(), ResumeState(urls[0], sha256)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL
            fd = folder.open_file(_part(dest, token), flags, 0o644)
        partial = cls(dest, token, state, fd, lock, folder)
        partial.others_left = others
        partial.saved = claimed is not None
        return partial

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
            self.state.pid, self.state.host = os.getpid(), _HOST
            _write_state(self.folder, _state(self.dest, self.token), self.state)
            self.saved = True

    def sync_data(self) -> None:
        """Write the bytes received so far to disk (no metadata: fdatasync)."""
        if self.fd >= 0:
            getattr(os, "fdatasync", os.fsync)(self.fd)

    def commit(self, size: int, fsync: bool) -> None:
        """Move the verified file to ``dest`` (its data fsynced first when asked).

        The folder is not fsynced here: a crash may then forget the rename (the
        file is fetched again), never expose a partial; the engine fsyncs each
        folder it wrote to once, when it closes (:func:`fsync_dir`).
        """
        os.ftruncate(self.fd, size)  # nothing beyond the verified bytes
        if fsync:
            os.fsync(self.fd)
        ours = os.fstat(self.fd)
        if os.name == "nt":  # Windows renames no open file; elsewhere the open fd
            self._close()  # keeps our inode (and its number) from being reused
        try:
            self.folder.rename(_part(self.dest, self.token), self.dest.name)
            self._check_final(ours)
        finally:
            self._close()
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def _check_final(self, ours: os.stat_result) -> None:
        """The final name must hold the very file we wrote (not a swapped-in link)."""
        try:
            now = self.folder.lstat(self.dest.name)
        except FileNotFoundError:
            now = None
        identity = None if now is None else (now.st_ino, now.st_dev, now.st_mode)
        if identity != (ours.st_ino, ours.st_dev, ours.st_mode):
            if now is not None:
                self.folder.unlink(self.dest.name)
            raise CacheError(
                f"{self.dest} was replaced while it was being written",
                hint="another process writes into the cache folder; keep it private",
            )

    def keep(self) -> None:
        """Leave the partial, its sidecar and the lock file for a later run."""
        with contextlib.suppress(OSError):
            self.save()
        self._close()
        self._unlock(remove=False)

    def discard(self) -> None:
        """Remove the partial and its sidecar."""
        self._close()
        self.folder.unlink(_part(self.dest, self.token))
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def _close(self) -> None:
        _LIVE_TOKENS.discard(self.token)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _remove_state(self) -> None:
        if self.saved:
            self.folder.unlink(_state(self.dest, self.token))

    def _unlock(self, *, remove: bool) -> None:
        try:
            if self.lock is not None:
                self.lock.release(remove=remove)
        finally:
            self.folder.close()


def _claim_previous(
    folder: Folder,
    dest: Path,
    urls: tuple[str, ...],
    sha256: str | None,
    size: int | None,
) -> tuple[tuple[str, ResumeState] | None, bool]:
    """Claim every dead partial of ``dest``; keep the one that fits, remove the rest.

    Also says whether partials of live owners remain (they are left alone). A part
    without a sidecar is from an owner that died before its first save (within
    about a second of starting): nothing to resume, so it goes once its owner,
    named in its token, is gone (a live owner matters where locks do nothing).
    """
    states, parts = _candidates(folder, dest)
    _remove_orphans(folder, dest, parts, set(states))
    best: tuple[str, ResumeState] | None = None
    others = False
    for old in states:  # a finite listing: every candidate is tried once
        claimed = _claim(folder, dest, old)
        if claimed is None:
            others = True
            continue
        token, state = claimed
        if best is None and _fits(state, urls, sha256, size):
            best = claimed
        else:
            folder.unlink(_part(dest, token))
            folder.unlink(_state(dest, token))
    return best, others


def _candidates(
    folder: Folder, dest: Path
) -> tuple[list[str], list[tuple[float, str]]]:
    """Tokens of ``dest``'s sidecars, newest first, and of its parts (with mtime)."""
    prefix = dest.name + "."
    states: list[tuple[float, str]] = []
    parts: list[tuple[float, str]] = []
    with contextlib.suppress(OSError):
        for name in folder.names():
            if not name.startswith(prefix):
                continue
            for suffix, found in ((STATE_SUFFIX, states), (PART_SUFFIX, parts)):
                token = name[len(prefix) : -len(suffix)]
                if name.endswith(suffix) and token and "." not in token:
                    found.append((folder.mtime(name), token))
    return [token for _, token in sorted(states, reverse=True)], parts


def _remove_orphans(
    folder: Folder, dest: Path, parts: list[tuple[float, str]], with_state: set[str]
) -> None:
    for mtime, token in parts:
        if token not in with_state and not _token_owner_alive(token, mtime):
            folder.unlink(_part(dest, token))


def _new_token() -> str:
    """``<host tag>-<pid>-<random>``: names the owner even before its sidecar."""
    return f"{_HOST_TAG}-{os.getpid():x}-{secrets.token_hex(6)}"


def _token_owner_alive(token: str, mtime: float) -> bool:
    """For a part without a sidecar: may its owner still be writing it?"""
    if token in _LIVE_TOKENS:
        return True
    pid = _token_pid(token)
    if pid is None:  # another host, or a name from an older version
        return time.time() - mtime < ORPHAN_GRACE
    return _pid_alive(pid)


def _token_pid(token: str) -> int | None:
    """The owner's pid, when the token names this host (``<tag>-<pid>-<random>``)."""
    host, _, rest = token.partition("-")
    pid = rest.partition("-")[0]
    if host != _HOST_TAG or not pid or pid.strip(string.hexdigits):
        return None
    return int(pid, 16)


def _claim(folder: Folder, dest: Path, old: str) -> tuple[str, ResumeState] | None:
    """Atomically rename a dead owner's state and part to a fresh token."""
    state = _read_state(folder, _state(dest, old))
    if state is not None and _owner_alive(state, old, folder, _state(dest, old)):
        return None
    new = _new_token()
    try:
        folder.rename(_state(dest, old), _state(dest, new))
    except FileNotFoundError:
        return None  # another process won
    try:
        folder.rename(_part(dest, old), _part(dest, new))
    except FileNotFoundError:
        folder.unlink(_state(dest, new))
        return None
    state = _read_state(folder, _state(dest, new))
    return (new, state) if state is not None else (new, ResumeState("", None))


def _owner_alive(state: ResumeState, token: str, folder: Folder, name: str) -> bool:
    if state.host != _HOST:
        return time.time() - folder.mtime(name) < STALE_FOREIGN_SECONDS
    if state.pid == os.getpid():
        return token in _LIVE_TOKENS
    return _pid_alive(state.pid)


def _pid_alive(pid: int) -> bool:
    """Whether another local process ``pid`` runs (this one: False)."""
    if pid == os.getpid():
        return False  # our live partials are in _LIVE_TOKENS
    if os.name == "nt":  # os.kill(pid, 0) would send Ctrl-C there; the lock works
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def activity(dest: Path) -> tuple[tuple[str, int, int], ...]:
    """Sizes and mtimes of ``dest``'s temporary files: changes while a holder works."""
    prefix, seen = dest.name + ".", []
    with contextlib.suppress(OSError), os.scandir(dest.parent) as entries:
        for entry in entries:
            if entry.name.startswith(prefix) and entry.name.endswith(TEMP_SUFFIXES):
                with contextlib.suppress(OSError):
                    st = entry.stat(follow_symlinks=False)
                    seen.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(seen))


def may_be_owned(path: Path) -> bool:
    """Whether a live process may still own the part or sidecar ``path``.

    For ``cache prune``: the same rules by which a later download decides whether
    it may claim a partial or remove an orphan part, except that anything of this
    process counts as owned (prune never races a download of its own process).
    """
    name = path.name
    suffix = PART_SUFFIX if name.endswith(PART_SUFFIX) else STATE_SUFFIX
    stem = name[: -len(suffix)]
    token = stem.rpartition(".")[2]
    folder = Folder.by_path(path.parent)
    state_name = stem + STATE_SUFFIX
    state = _read_state(folder, state_name)
    if state is not None:
        ours = state.host == _HOST and state.pid == os.getpid()
        return ours or _owner_alive(state, token, folder, state_name)
    if os.path.lexists(path.with_name(state_name)):  # being written, or damaged
        return time.time() - folder.mtime(state_name) < ORPHAN_GRACE
    ours = _token_pid(token) == os.getpid()
    return ours or _token_owner_alive(token, folder.mtime(name))


def _fits(
    state: ResumeState, urls: tuple[str, ...], sha256: str | None, size: int | None
) -> bool:
    if state.url not in urls or state.sha256 != sha256 or state.total is None:
        return False
    return size is None or state.total == size


def _read_state(folder: Folder, name: str) -> ResumeState | None:
    """The sidecar ``name``, or None when it is missing, not a regular file, too
    large, or any field has the wrong type (a damaged or planted sidecar)."""
    try:
        fd = folder.open_file(name, os.O_RDONLY, writing=False)
        with os.fdopen(fd, "rb") as file:
            data = file.read(MAX_STATE_BYTES + 1)
        if len(data) > MAX_STATE_BYTES:
            return None
        raw = json.loads(data.decode("utf-8"))
        raw["done"] = [(int(a), int(b)) for a, b in raw.get("done", [])]
        state = ResumeState(**raw)
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    return state if _well_typed(state) else None


def _well_typed(state: ResumeState) -> bool:
    """Every field has the type it is used as (a pid must be a positive int...)."""
    optional_str = (state.sha256, state.etag, state.last_modified)
    return (
        isinstance(state.url, str)
        and isinstance(state.host, str)
        and all(v is None or isinstance(v, str) for v in optional_str)
        and _is_int(state.pid)
        and state.pid > 0
        and (state.total is None or (_is_int(state.total) and state.total >= 0))
        and all(0 <= a <= b for a, b in state.done)
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _write_state(folder: Folder, name: str, state: ResumeState) -> None:
    """Replace the sidecar atomically: no fsync (it is rewritten about once a
    second, and a stale one only resumes less), the creation mode; its temp file
    has a fixed name, with a suffix ``cache prune`` knows."""
    temp = name[: -len(STATE_SUFFIX)] + STATE_TMP_SUFFIX
    data = json.dumps(asdict(state)).encode("utf-8")
    write_in(folder, name, data, fsync=False, mode=None, temp=temp)


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
