"""The on-disk cache: onnx.hub's layout, plus small markers of verified files.

Layout (exactly onnx.hub's, so old caches are reused): a model lives at the folders of
its ``model_path`` with its file name prefixed by its SHA-256 and ``_``; a tarball
likewise, extracted beside it into the same name without ``.tar.gz``.

A file that was hashed when written carries a stamp, an extended attribute with
its SHA-256, size and mtime (:mod:`asynchub._fs.stamp`), so a cached model is not
re-hashed on every load. Where the file system has no user extended attributes,
asynchub's own bookkeeping under ``<root>/.asynchub/`` holds the same record instead:
``verified/`` one small JSON marker per file (size, mtime, inode, SHA-256);
``manifests/`` holds fetched manifests with their ETags. A stamp or marker only
vouches for the exact file it saw: if the file's size or mtime (or, for a marker,
its inode) changes, it is hashed again. ``asynchub cache verify``
re-hashes everything regardless of markers, to catch later corruption.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

import anyio

from .. import _fs
from .._fs import is_stamped, os_error, read_regular, stamp_path
from .._transfer import sha256_file
from ..errors import CacheError, ReadOnlyCacheError, UnsafePathError

__all__ = (
    "STATE_DIR",
    "cache_path",
    "check_writable_root",
    "ensure_verified",
    "mark_verified",
    "os_error",
    "sha256_file",
    "write_atomic",
)

STATE_DIR = ".asynchub"
_log = logging.getLogger("asynchub")
_MAX_MARKER = 64 * 1024
#: The shape of a hashed cache name: ``<sha256>_``. Only a file's own name may have
#: it, and only when its entry has that SHA-256 (see :func:`cache_path`).
_HASHED_NAME = re.compile(r"^[0-9a-f]{64}_", re.IGNORECASE)


def cache_path(root: Path, path: str, sha: str | None) -> Path:
    """Where a manifest path is cached: ``<root>/<dirs>/<sha>_<name>``.

    Names of the form ``<64 hex>_...`` belong to hashed entries (files, and the
    folders tarballs extract into), so a path is refused (UnsafePathError) when a
    *folder* segment has that form, or when an entry without a SHA-256 has a file
    name of that form: otherwise an entry without a hash could name, or write
    inside, the cache entry of a verified file of another repo.
    """
    *dirs, name = path.split("/")
    forged = [d for d in dirs if _HASHED_NAME.match(d)]
    if sha is None and _HASHED_NAME.match(name):
        forged.append(name)
    if forged:
        raise UnsafePathError(
            f"unsafe path {path!r}: {forged[0]!r} has the form of a hashed cache "
            "name ('<sha256>_...') but the entry does not own that hash",
            hint="a manifest entry may not name another entry's cache files; "
            "rename the path in the manifest",
        )
    return root.joinpath(*dirs, f"{sha}_{name}" if sha else name)


def _marker_path(root: Path, file: Path) -> Path:
    return _markers_dir(root) / _marker_name(root, file)


def _markers_dir(root: Path) -> Path:
    return root / STATE_DIR / "verified"


def _marker_name(root: Path, file: Path) -> str:
    key = hashlib.sha256(str(file.relative_to(root)).encode()).hexdigest()[:32]
    return f"{key}.json"


def _fingerprint(file: Path) -> dict[str, int]:
    st = file.lstat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _marker_matches(root: Path, file: Path, sha: str | None) -> bool:
    """Whether ``file`` is vouched for: by its own stamp, else by a marker file."""
    if is_stamped(file, sha):
        return True
    try:
        marker = json.loads(read_regular(_marker_path(root, file), _MAX_MARKER))
        return bool(
            marker.get("fingerprint") == _fingerprint(file)
            and (sha is None or marker.get("sha256") == sha)
        )
    except (OSError, ValueError, AttributeError, RecursionError):
        return False


def _marker(root: Path, file: Path, sha: str) -> bytes:
    record = {"path": str(file.relative_to(root)), "sha256": sha}
    record["fingerprint"] = _fingerprint(file)  # type: ignore[assignment]
    return json.dumps(record).encode()


def is_regular(file: Path) -> bool:
    """Whether ``file`` itself (not what a link names) is a regular file."""
    try:
        return stat.S_ISREG(file.lstat().st_mode)
    except OSError:
        return False


def _check(root: Path, file: Path, sha: str | None, rehash: bool = True) -> bool:
    if not is_regular(file):  # a link at the final name is never "cached"
        return False
    if _marker_matches(root, file, sha):
        return True
    if not rehash:
        return False
    actual = sha256_file(file)
    if sha is not None and actual != sha:
        _log.warning(
            "cached file %s has SHA-256 %s, expected %s: downloading it again",
            file,
            actual,
            sha,
        )
        return False
    write_markers(root, [(file, actual)])
    return True


def _stamp(file: Path, sha: str) -> bool:
    """Stamped already (the engine stamps what it downloads), or stamped now."""
    return is_stamped(file, sha) or stamp_path(file, sha)


def write_markers(root: Path, verified: list[tuple[Path, str]]) -> None:
    """Record just-verified files (blocking: one thread hop, or none on tmpfs).

    A file is stamped (:mod:`asynchub._fs.stamp`) where the file system allows
    it; a marker file in ``.asynchub/verified/`` is written only where not.

    The markers' folder is opened once for the batch, not once per marker: with
    the walk from the root each time, markers were a third of a 2,000-file
    mirror's CPU on tmpfs. A marker is an optimisation: one that cannot be
    written (a read-only cache, a planted link) is skipped, and its file is
    hashed again when next used.
    """
    verified = [(f, sha) for f, sha in verified if not _stamp(f, sha)]
    if not verified:
        return
    try:
        folder = _fs.Folder.open(root, _markers_dir(root))
    except OSError:
        _log.debug("could not open the verified markers' folder", exc_info=True)
        return
    with folder:
        for file, sha in verified:
            try:
                data = _marker(root, file, sha)
                name = _marker_name(root, file)
                _fs.write_in(folder, name, data, fsync=False, mode=None)
            except OSError:
                _log.debug(
                    "could not write verified marker for %s", file, exc_info=True
                )


async def ensure_verified(
    root: Path, file: Path, sha: str | None, *, rehash: bool = True
) -> bool:
    """True when ``file`` exists and is known (stamp or marker) or found (hash) to
    match; ``rehash=False`` skips the hash (a file just found wrong, looked at
    again only in case another task replaced it: that one is stamped)."""
    return await anyio.to_thread.run_sync(_check, root, file, sha, rehash)


async def mark_verified(root: Path, file: Path, sha: str) -> None:
    """Record that ``file`` was just verified to have SHA-256 ``sha``."""
    await anyio.to_thread.run_sync(write_markers, root, [(file, sha)])


def write_atomic(path: Path, data: bytes, root: Path | None = None) -> None:
    """Write a small cache file atomically (blocking), by the cache's rules.

    No fsync: a cache file lost in a crash is fetched or re-verified again; the
    creation mode (``0o644`` less the umask): the cache is the user's own. The
    folder is opened from ``root`` (default: ``path``'s folder) without following a
    link below it, and created as needed (:func:`asynchub._fs.write_atomic`).
    """
    _fs.write_atomic(path, data, fsync=False, mode=None, root=root)


def check_writable_root(root: Path) -> None:
    """Make sure ``root`` exists (creating it) and a file can be created in it.

    Run before the first download so an impossible folder (``/dev/null/hub``, a
    read-only mount, ``/proc/…``) is one clear error, not a failure per file.
    Raises ReadOnlyCacheError or CacheError naming the folder and the cause.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".asynchub-probe.")
    except OSError as exc:
        raise _root_error(exc, root) from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)


def _root_error(exc: OSError, root: Path) -> CacheError:
    blocker = next((p for p in root.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        why = f"{blocker} is not a folder"
    else:
        why = exc.strerror or str(exc)
    message = f"the folder {root} cannot be used for downloads: {why}"
    hint = "choose a writable folder with hub.set_dir() or ONNX_HOME"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyCacheError(message, hint=hint)
    return CacheError(message, hint=hint)
