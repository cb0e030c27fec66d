"""The names of the temporary files beside a destination, their resume sidecars,
and who owns them: which leftovers a later run (or ``cache prune``) may claim.

For a destination ``<dir>/<name>`` the engine uses, in ``<dir>``:

- ``<name>.<token>.asynchub-part``  the bytes received so far (unique per owner);
- ``<name>.<token>.asynchub-state`` JSON: URL, size, validator, ranges on disk,
  first written about a second into the download (a small file never has one);
- ``<name>.asynchub-lock``          the cross-process lock (:mod:`.lockfile`),
  removed again unless a partial is left behind. A file too small to split, with
  a known SHA-256, takes no lock at all unless a lock file is already there; it
  creates one only when it keeps its partial (``Partial.begin(small=True)``).

A later run finds a previous partial through its state file and *claims* it by
renaming state and part to a fresh token: only one process wins a rename, so two
processes never write the same temporary file even where file locks silently do
nothing. It looks only when it finds a lock file (a previous owner kept a partial
or died), or when it has no lock. Correctness never rests on the lock: it rests on
unique names, SHA-256 verification and ``os.replace``. ``cache prune`` finds
leftovers by :data:`TEMP_SUFFIXES`. The temporary file of one job, opened and
closed, is :class:`~.partial.Partial`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import socket
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .._fs import Folder, write_in

__all__ = (
    "LOCK_SUFFIX",
    "PART_SUFFIX",
    "STATE_SUFFIX",
    "STATE_TMP_SUFFIX",
    "TEMP_SUFFIXES",
    "ResumeState",
    "activity",
    "claim_previous",
    "lock_path",
    "mark_done",
    "mark_live",
    "may_be_owned",
    "new_token",
    "part_name",
    "state_name",
    "write_state",
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
    """The cross-process lock file of ``dest``."""
    return dest.with_name(dest.name + LOCK_SUFFIX)


def lock_name(dest: Path) -> str:
    """The name of :func:`lock_path` in ``dest``'s folder."""
    return dest.name + LOCK_SUFFIX


def part_name(dest: Path, token: str) -> str:
    """The name of ``dest``'s temporary file owned by ``token``."""
    return f"{dest.name}.{token}{PART_SUFFIX}"


def state_name(dest: Path, token: str) -> str:
    """The name of the sidecar of ``dest``'s temporary file owned by ``token``."""
    return f"{dest.name}.{token}{STATE_SUFFIX}"


def claim_previous(
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
            folder.unlink(part_name(dest, token))
            folder.unlink(state_name(dest, token))
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
            folder.unlink(part_name(dest, token))


def new_token() -> str:
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
    state = _read_state(folder, state_name(dest, old))
    if state is not None and _owner_alive(state, old, folder, state_name(dest, old)):
        return None
    new = new_token()
    try:
        folder.rename(state_name(dest, old), state_name(dest, new))
    except FileNotFoundError:
        return None  # another process won
    try:
        folder.rename(part_name(dest, old), part_name(dest, new))
    except FileNotFoundError:
        folder.unlink(state_name(dest, new))
        return None
    state = _read_state(folder, state_name(dest, new))
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


def write_state(folder: Folder, dest: Path, token: str, state: ResumeState) -> None:
    """Replace the sidecar atomically, with this process as its owner.

    No fsync (it is rewritten about once a second, and a stale one only resumes
    less), the creation mode; its temp file has a fixed name, with a suffix
    ``cache prune`` knows.
    """
    state.pid, state.host = os.getpid(), _HOST
    name = state_name(dest, token)
    temp = name[: -len(STATE_SUFFIX)] + STATE_TMP_SUFFIX
    data = json.dumps(asdict(state)).encode("utf-8")
    write_in(folder, name, data, fsync=False, mode=None, temp=temp)


def mark_live(token: str) -> None:
    """Record that a partial of this process uses ``token`` (never claimed)."""
    _LIVE_TOKENS.add(token)


def mark_done(token: str) -> None:
    """Record that this process no longer writes the partial of ``token``."""
    _LIVE_TOKENS.discard(token)
