"""The on-disk cache: onnx.hub's layout, plus small markers of verified files.

Layout (exactly onnx.hub's, so old caches are reused): a model lives at the folders of
its ``model_path`` with its file name prefixed by its SHA-256 and ``_``; a tarball
likewise, extracted beside it into the same name without ``.tar.gz``.

asynchub's own bookkeeping lives under ``<root>/.asynchub/``: ``verified/`` holds one
small JSON marker per file that was hashed when written (size, mtime, inode, SHA-256),
so a cached model is not re-hashed on every load; ``manifests/`` holds fetched
manifests with their ETags. A marker only vouches for the exact file it saw: if the
file's size, mtime or inode changes, it is hashed again. ``asynchub cache verify``
re-hashes everything regardless of markers, to catch later corruption.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import anyio

from .errors import CacheError, DiskFullError, ReadOnlyCacheError

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
_HASH_BLOCK = 1024 * 1024


def cache_path(root: Path, path: str, sha: str | None) -> Path:
    """Where a manifest path is cached: ``<root>/<dirs>/<sha>_<name>``."""
    *dirs, name = path.split("/")
    return root.joinpath(*dirs, f"{sha}_{name}" if sha else name)


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB blocks (blocking: call it in a thread)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _marker_path(root: Path, file: Path) -> Path:
    key = hashlib.sha256(str(file.relative_to(root)).encode()).hexdigest()[:32]
    return root / STATE_DIR / "verified" / f"{key}.json"


def _fingerprint(file: Path) -> dict[str, int]:
    st = file.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def _marker_matches(root: Path, file: Path, sha: str | None) -> bool:
    try:
        marker = json.loads(_marker_path(root, file).read_text())
        return bool(
            marker.get("fingerprint") == _fingerprint(file)
            and (sha is None or marker.get("sha256") == sha)
        )
    except (OSError, ValueError):
        return False


def _write_marker(root: Path, file: Path, sha: str) -> None:
    record = {"path": str(file.relative_to(root)), "sha256": sha}
    record["fingerprint"] = _fingerprint(file)  # type: ignore[assignment]
    try:
        write_atomic(_marker_path(root, file), json.dumps(record).encode())
    except OSError:  # a marker is an optimisation; a read-only cache still loads
        _log.debug("could not write verified marker for %s", file, exc_info=True)


def _check(root: Path, file: Path, sha: str | None) -> bool:
    if not file.is_file():
        return False
    if _marker_matches(root, file, sha):
        return True
    actual = sha256_file(file)
    if sha is not None and actual != sha:
        _log.warning(
            "cached file %s has SHA-256 %s, expected %s: downloading it again",
            file,
            actual,
            sha,
        )
        return False
    _write_marker(root, file, actual)
    return True


def write_markers(root: Path, verified: list[tuple[Path, str]]) -> None:
    """Record many just-verified files at once (blocking; one thread hop)."""
    for file, sha in verified:
        _write_marker(root, file, sha)


async def ensure_verified(root: Path, file: Path, sha: str | None) -> bool:
    """True when ``file`` exists and is known (marker) or found (hash) to match."""
    return await anyio.to_thread.run_sync(_check, root, file, sha)


async def mark_verified(root: Path, file: Path, sha: str) -> None:
    """Record that ``file`` was just verified to have SHA-256 ``sha``."""
    await anyio.to_thread.run_sync(_write_marker, root, file, sha)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file and os.replace (blocking)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def os_error(exc: OSError, path: Path | str, action: str = "write") -> CacheError:
    """Translate an OSError about the cache into asynchub's error with a hint."""
    where = f"could not {action} {path}: {exc.strerror or exc}"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFullError(where)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return ReadOnlyCacheError(where)
    return CacheError(where, hint="check the folder's permissions and free space")


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
