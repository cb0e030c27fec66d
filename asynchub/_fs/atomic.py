"""Small files written whole or not at all: a temp file beside them, then a rename.

One writer for every small file asynchub replaces (cache markers and manifests, the
trust list, resume sidecars, a built or mirrored hub manifest), so every one of them
gets the same guarantees: the temp file is opened without following a link and
with ``O_EXCL`` (:mod:`.safe`), a reader sees the old or the new content and never
half of it, and a failed write leaves no temp file behind.

What differs between callers is explicit: ``fsync`` (flush the data to the disk
before the rename, for files that are the product: a hub's manifest) and ``mode``
(exact permission bits, for files other users read: a served hub; ``None`` keeps the
creation default, ``0o644`` less the umask, for files in the user's own cache).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .safe import Folder, read_regular

__all__ = ("write_atomic", "write_if_changed", "write_in")

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def write_atomic(
    path: Path,
    data: bytes,
    *,
    fsync: bool,
    mode: int | None,
    root: Path | None = None,
) -> None:
    """Replace ``path`` by ``data`` atomically (blocking).

    The folder is opened from ``root`` (default: ``path``'s folder) without following
    a link below it, and created as needed (:class:`~.safe.Folder`).
    """
    with Folder.open(root or path.parent, path.parent) as folder:
        write_in(folder, path.name, data, fsync=fsync, mode=mode)


def write_in(
    folder: Folder,
    name: str,
    data: bytes,
    *,
    fsync: bool,
    mode: int | None,
    temp: str | None = None,
) -> None:
    """Replace ``name`` in ``folder`` by ``data`` through a temp file and a rename.

    ``temp`` names the temp file when it must be recognisable (a resume sidecar's,
    which ``cache prune`` knows by its suffix); a leftover of that name, ours or
    planted, is removed first, never opened. By default the name is fresh.
    """
    if temp is None:
        temp = f".{name}.{secrets.token_hex(6)}.tmp"
    else:
        folder.unlink(temp)
    fd = folder.open_file(temp, _CREATE, 0o644)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            if mode is not None:
                _chmod(folder, temp, file.fileno(), mode)
            if fsync:
                os.fsync(file.fileno())
        folder.rename(temp, name)
    except BaseException:
        folder.unlink(temp)
        raise


def write_if_changed(path: Path, data: bytes, *, fsync: bool, mode: int | None) -> None:
    """:func:`write_atomic`, unless ``path`` already holds exactly ``data``.

    An unchanged file keeps its mtime (a web server's caches stay valid); the check
    reads at most ``len(data)`` bytes and never blocks on a FIFO.
    """
    try:
        if read_regular(path, len(data)) == data:
            return
    except (OSError, ValueError):
        pass
    write_atomic(path, data, fsync=fsync, mode=mode)


def _chmod(folder: Folder, name: str, fd: int, mode: int) -> None:
    """Set exact permission bits (the umask does not apply), on the open file where
    the platform can."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:  # Windows before 3.13: by path (no dir_fd there, see .safe)
        os.chmod(folder.path / name, mode)
