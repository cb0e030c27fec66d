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

from ._lockfile import TargetLock
from .hashing import Assembler, Intervals

__all__ = (
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "STATE_SUFFIX",
    "STATE_TMP_SUFFIX",
    "TEMP_SUFFIXES",
    "Partial",
    "ResumeState",
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

_HOST = socket.gethostname()
_HOST_TAG = hashlib.sha256(_HOST.encode()).hexdigest()[:6]
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
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


def _part(dest: Path, token: str) -> Path:
    return dest.with_name(f"{dest.name}.{token}{PART_SUFFIX}")


def _state(dest: Path, token: str) -> Path:
    return dest.with_name(f"{dest.name}.{token}{STATE_SUFFIX}")


class Partial:
    """The temporary file and sidecar of one destination, owned by one job.

    Open with :meth:`begin` (lock, then :meth:`open`); then exactly one of
    :meth:`commit`, :meth:`keep` or :meth:`discard`, which also release the lock.
    All methods do blocking I/O and run in worker threads.
    """

    def __init__(
        self,
        dest: Path,
        token: str,
        state: ResumeState,
        fd: int,
        lock: TargetLock | None = None,
    ) -> None:
        self.dest, self.token, self.state, self.fd = dest, token, state, fd
        self.lock = lock
        self.assembler = Assembler(fd, Intervals(state.done))
        self.resumed = self.assembler.covered()
        self.others_left = False  # leftovers of live owners: keep the lock file
        self.saved = False  # the sidecar exists (first written by save())
        self._save_lock = threading.Lock()
        _LIVE_TOKENS.add(token)

    @property
    def part_path(self) -> Path:
        return _part(self.dest, self.token)

    @property
    def state_path(self) -> Path:
        return _state(self.dest, self.token)

    @classmethod
    def begin(
        cls, dest: Path, urls: tuple[str, ...], sha256: str | None, size: int | None
    ) -> Partial | None:
        """Lock ``dest`` and open its partial; None while another holds the lock."""
        try:
            lock = TargetLock.acquire(lock_path(dest))
        except FileNotFoundError:  # cheaper than a mkdir per file when it exists
            dest.parent.mkdir(parents=True, exist_ok=True)
            lock = TargetLock.acquire(lock_path(dest))
        if lock is None:
            return None
        try:
            return cls.open(dest, urls, sha256, size, lock=lock)
        except BaseException:
            lock.release(remove=False)
            raise

    @classmethod
    def open(
        cls,
        dest: Path,
        urls: tuple[str, ...],
        sha256: str | None,
        size: int | None,
        lock: TargetLock | None = None,
    ) -> Partial:
        """Claim the best previous partial for ``dest`` that fits, else start empty.

        With a ``lock`` that was just created, nobody left a partial: no scan.
        """
        if lock is None:
            dest.parent.mkdir(parents=True, exist_ok=True)
        scan = lock is None or lock.existed
        claimed, others = (None, False)
        if scan:
            claimed, others = _claim_previous(dest, urls, sha256, size)
        if claimed is None:
            token, state = _new_token(), ResumeState(urls[0], sha256)
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | _BINARY
            fd = os.open(_part(dest, token), flags, 0o644)
        else:
            token, state = claimed
            fd = os.open(_part(dest, token), os.O_RDWR | _BINARY)
            state.done = Intervals(state.done).clip(os.fstat(fd).st_size).as_list()
        partial = cls(dest, token, state, fd, lock)
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
            _write_state(self.state_path, self.state)
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
        self._close()
        os.replace(self.part_path, self.dest)
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def keep(self) -> None:
        """Leave the partial, its sidecar and the lock file for a later run."""
        with contextlib.suppress(OSError):
            self.save()
        self._close()
        self._unlock(remove=False)

    def discard(self) -> None:
        """Remove the partial and its sidecar."""
        self._close()
        _unlink(self.part_path)
        self._remove_state()
        self._unlock(remove=not self.others_left)

    def _close(self) -> None:
        _LIVE_TOKENS.discard(self.token)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _remove_state(self) -> None:
        if self.saved:
            _unlink(self.state_path)

    def _unlock(self, *, remove: bool) -> None:
        if self.lock is not None:
            self.lock.release(remove=remove)


def _claim_previous(
    dest: Path, urls: tuple[str, ...], sha256: str | None, size: int | None
) -> tuple[tuple[str, ResumeState] | None, bool]:
    """Claim every dead partial of ``dest``; keep the one that fits, remove the rest.

    Also says whether partials of live owners remain (they are left alone). A part
    without a sidecar is from an owner that died before its first save (within
    about a second of starting): nothing to resume, so it goes once its owner,
    named in its token, is gone (a live owner matters where locks do nothing).
    """
    states, parts = _candidates(dest)
    _remove_orphans(dest, parts, set(states))
    best: tuple[str, ResumeState] | None = None
    others = False
    for old in states:
        claimed = _claim(dest, old)
        if claimed is None:
            others = True
            continue
        token, state = claimed
        if best is None and _fits(state, urls, sha256, size):
            best = claimed
        else:
            _unlink(_part(dest, token))
            _unlink(_state(dest, token))
    return best, others


def _candidates(dest: Path) -> tuple[list[str], list[tuple[float, str]]]:
    """Tokens of ``dest``'s sidecars, newest first, and of its parts (with mtime)."""
    prefix = dest.name + "."
    states: list[tuple[float, str]] = []
    parts: list[tuple[float, str]] = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(dest.parent):
            name = entry.name
            if not name.startswith(prefix):
                continue
            for suffix, found in ((STATE_SUFFIX, states), (PART_SUFFIX, parts)):
                token = name[len(prefix) : -len(suffix)]
                if name.endswith(suffix) and token and "." not in token:
                    found.append((_mtime(entry.path), token))
    return [token for _, token in sorted(states, reverse=True)], parts


def _remove_orphans(
    dest: Path, parts: list[tuple[float, str]], with_state: set[str]
) -> None:
    for mtime, token in parts:
        if token not in with_state and not _token_owner_alive(token, mtime):
            _unlink(_part(dest, token))


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


def _claim(dest: Path, old: str) -> tuple[str, ResumeState] | None:
    """Atomically rename a dead owner's state and part to a fresh token."""
    state = _read_state(_state(dest, old))
    if state is not None and _owner_alive(state, old, _state(dest, old)):
        return None
    new = _new_token()
    try:
        os.rename(_state(dest, old), _state(dest, new))
    except FileNotFoundError:
        return None  # another process won
    try:
        os.rename(_part(dest, old), _part(dest, new))
    except FileNotFoundError:
        _unlink(_state(dest, new))
        return None
    state = _read_state(_state(dest, new))
    return (new, state) if state is not None else (new, ResumeState("", None))


def _owner_alive(state: ResumeState, token: str, path: Path) -> bool:
    if state.host != _HOST:
        return time.time() - _mtime(str(path)) < STALE_FOREIGN_SECONDS
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
    state_path = path.with_name(stem + STATE_SUFFIX)
    state = _read_state(state_path)
    if state is not None:
        ours = state.host == _HOST and state.pid == os.getpid()
        return ours or _owner_alive(state, token, state_path)
    if state_path.exists():  # unreadable: being written, or damaged
        return time.time() - _mtime(str(state_path)) < ORPHAN_GRACE
    ours = _token_pid(token) == os.getpid()
    return ours or _token_owner_alive(token, _mtime(str(path)))


def _fits(
    state: ResumeState, urls: tuple[str, ...], sha256: str | None, size: int | None
) -> bool:
    if state.url not in urls or state.sha256 != sha256 or state.total is None:
        return False
    return size is None or state.total == size


def _read_state(path: Path) -> ResumeState | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["done"] = [(int(a), int(b)) for a, b in raw.get("done", [])]
        return ResumeState(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_state(path: Path, state: ResumeState) -> None:
    tmp = path.with_name(path.name[: -len(STATE_SUFFIX)] + STATE_TMP_SUFFIX)
    tmp.write_text(json.dumps(asdict(state)), encoding="utf-8")
    os.replace(tmp, path)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


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
