"""Files and folders inside the cache, opened without following links.

Anyone who can write into a cache folder can plant a symbolic link, a hard link, a
FIFO or a folder where asynchub expects one of its own files, or replace a folder
below the cache root by a link to somewhere else. asynchub never writes through
such a plant:

* a :class:`Folder` is reached from the cache root one segment at a time, each
  opened with ``O_NOFOLLOW | O_DIRECTORY`` relative to the previous one (``openat``),
  and every later operation in it (open, rename, unlink, stat, list) is relative
  to that descriptor, so swapping a folder for a link after the walk changes
  nothing. The root itself is followed: it is the user's choice (``ONNX_HOME``).
* every file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and checked with ``fstat``:
  it must be a regular file, and one asynchub writes to must have no other hard
  link. A FIFO therefore never blocks a read and a device is never opened for
  writing.

Where the platform has no ``dir_fd`` support (Windows), the folder is checked
segment by segment with ``lstat`` when it is opened and used by path afterwards.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path

from ..errors import CacheError

__all__ = (
    "Folder",
    "NotRegularFileError",
    "open_regular",
    "read_regular",
)

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_BINARY = getattr(os, "O_BINARY", 0)
_AT = {os.open, os.rename, os.unlink, os.stat, os.mkdir} <= os.supports_dir_fd and (
    os.scandir in os.supports_fd
)
_LINK_ERRNOS = {errno.ELOOP, errno.ENOTDIR, getattr(errno, "EMLINK", errno.ELOOP)}
_NOT_REGULAR = _LINK_ERRNOS | {errno.EISDIR, errno.ENXIO}
_HINT = (
    "asynchub does not write through links inside the cache; remove the link (or "
    "point ONNX_HOME / hub.set_dir() at the real folder) and try again"
)


class NotRegularFileError(OSError):
    """A name asynchub owns is a link, FIFO, device, folder, or has other links."""


class Folder:
    """A folder inside the cache; ``fd`` is None where ``dir_fd`` is unsupported."""

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def open(cls, root: Path, path: Path, *, create: bool = True) -> Folder:
        """Open ``path`` (inside ``root``) without following a link below ``root``.

        Missing folders are created when ``create``. Raises CacheError naming the
        first segment that is a link or not a folder.
        """
        if not _AT:
            try:
                parts = path.relative_to(root).parts
            except ValueError:
                root, parts = path, ()
            return cls(_checked_path(root, parts, create), None)
        root_text, parts = _below(str(root), str(path))
        fd = _open_root(Path(root_text), create)
        try:
            for depth, part in enumerate(parts, 1):
                parent, fd = fd, -1  # _step closes the parent, whatever happens
                where = functools.partial(Path, root_text, *parts[:depth])
                fd = _step(parent, part, where, create)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        return cls(path, fd)

    @classmethod
    def by_path(cls, path: Path) -> Folder:
        """A folder used by path (files still opened without following links)."""
        return cls(path, None)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # names ------------------------------------------------------------
    def _name(self, name: str) -> str:
        return name if self.fd is not None else str(self.path / name)

    def open_file(
        self, name: str, flags: int, mode: int = 0o644, *, writing: bool = True
    ) -> int:
        """Open a regular file of this folder without following a link (see module)."""
        flags |= NOFOLLOW | NONBLOCK | _BINARY
        try:
            fd = os.open(self._name(name), flags, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno in _NOT_REGULAR:
                raise NotRegularFileError(
                    exc.errno, f"{self.path / name} is not a regular file"
                ) from exc
            raise
        return _checked_fd(fd, lambda: self.path / name, writing=writing)

    def lstat(self, name: str) -> os.stat_result:
        return os.stat(self._name(name), dir_fd=self.fd, follow_symlinks=False)

    def rename(self, src: str, dst: str) -> None:
        """Rename within this folder (replaces ``dst``; never follows a link)."""
        os.replace(
            self._name(src), self._name(dst), src_dir_fd=self.fd, dst_dir_fd=self.fd
        )

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(name), dir_fd=self.fd)

    def names(self) -> list[str]:
        with os.scandir(self.fd if self.fd is not None else self.path) as entries:
            return [entry.name for entry in entries]

    def mtime(self, name: str) -> float:
        try:
            return self.lstat(name).st_mtime
        except OSError:
            return 0.0


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` for reading; a link, FIFO or device as its last segment is
    refused (NotRegularFileError)."""
    try:
        fd = os.open(path, flags | NOFOLLOW | NONBLOCK | _BINARY)
    except OSError as exc:
        if exc.errno in _NOT_REGULAR:
            why = f"{path} is not a regular file"
            raise NotRegularFileError(exc.errno, why) from exc
        raise
    return _checked_fd(fd, lambda: path, writing=False)


def read_regular(path: Path, limit: int) -> bytes:
    """The content of a small regular file (more than ``limit`` bytes: ValueError)."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path} is larger than {limit} bytes")
    return data


def _below(root: str, path: str) -> tuple[str, tuple[str, ...]]:
    """``root`` and the segments of ``path`` below it (``path`` alone when it is
    not inside ``root``); lexical, as ``PurePath.relative_to``, without its cost
    (this runs for every file a mirror writes)."""
    if path == root:
        return root, ()
    prefix = root.rstrip(os.sep) + os.sep
    if not path.startswith(prefix):
        return path, ()
    return root, tuple(path[len(prefix) :].split(os.sep))


def _checked_fd(fd: int, path: Callable[[], Path], *, writing: bool) -> int:
    """``fd`` if it is a regular file (with one link when ``writing``), else closed
    and NotRegularFileError naming ``path()`` (built only then)."""
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif writing and st.st_nlink > 1:
        problem = "has another hard link"
    if problem is None:
        if NONBLOCK and os.name != "nt":
            os.set_blocking(fd, True)
        return fd
    os.close(fd)
    raise NotRegularFileError(errno.EPERM, f"{path()} {problem}")


def _open_root(root: Path, create: bool) -> int:
    flags = os.O_RDONLY | _DIRECTORY
    try:
        return os.open(root, flags)
    except FileNotFoundError:
        if not create:
            raise
    root.mkdir(parents=True, exist_ok=True)
    return os.open(root, flags)


def _step(fd: int, part: str, where: Callable[[], Path], create: bool) -> int:
    """Open the sub-folder ``part`` of ``fd`` (closing ``fd``), creating it if asked."""
    flags = os.O_RDONLY | _DIRECTORY | NOFOLLOW
    try:
        try:
            child = os.open(part, flags, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            child = os.open(part, flags, dir_fd=fd)
    except OSError as exc:
        if exc.errno in _LINK_ERRNOS:
            raise _linked(where()) from exc
        raise
    finally:
        os.close(fd)
    return child


def _checked_path(root: Path, parts: tuple[str, ...], create: bool) -> Path:
    """Without ``dir_fd``: lstat each segment below ``root`` (creating if asked)."""
    where = root
    if create:
        root.mkdir(parents=True, exist_ok=True)
    for part in parts:
        where = where / part
        try:
            st = os.lstat(where)
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                where.mkdir()
            st = os.lstat(where)
        reparse = getattr(st, "st_file_attributes", 0) & getattr(
            stat, "FILE_ATTRIBUTE_REPARSE_POINT", 0
        )
        if not stat.S_ISDIR(st.st_mode) or reparse:
            raise _linked(where)
    return where


def _linked(where: Path) -> CacheError:
    return CacheError(
        f"{where} is a symbolic link or not a folder, inside the cache", hint=_HINT
    )
