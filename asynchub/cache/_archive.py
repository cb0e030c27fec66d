"""Safe extraction of model tarballs (``model_with_data_path``).

The old ``onnx.hub`` extracted straight into the cache with ``tarfile.extractall``,
which let a hostile ``.tar.gz`` write outside it (CVE-2024-5187, and the sibling-prefix
bypass of its fallback filter). Here every member passes an allow-list before a byte
is written:

* only regular files and directories; links, devices, FIFOs and sparse files are
  refused, so nothing can later point ``onnx.load`` outside the folder;
* names must be relative, without ``..``, backslashes, drive letters, control
  characters or names Windows cannot hold (``CON``, ``nul.pb``, ``a?``), and
  unique (also across case and Unicode normalisation, and a file may not also be
  used as a folder);
* files are written 0o644 (0o755 if executable) and folders 0o755: no setuid,
  setgid or sticky bits, no owners from the archive;
* the decompressed stream is counted as it is read, so a bomb stops at the limit of
  :class:`~asynchub.config.ArchiveLimits` (total bytes, members, ratio) instead of
  filling the disk; a member whose header announces too much is refused unread.

Extraction goes into a fresh folder beside ``dest`` that is renamed into place only
when everything succeeded: a failure leaves nothing under ``dest`` and no temporary
folder behind. These functions block: call them in a worker thread.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import logging
import lzma
import os
import re
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .._fs import fold_key, read_regular, windows_name_problem
from ..config import ArchiveLimits
from ..errors import ArchiveError

__all__ = ("TEMP_SUFFIX", "extract_tarball", "find_model_folder", "member_digests")

TEMP_SUFFIX = ".asynchub-extract"
_log = logging.getLogger("asynchub")
_CHUNK = 1024 * 1024
#: Archives that expand to at most this many bytes are never refused for their
#: ratio: an empty tar is 10 KiB of zeros, which gzip shrinks over 200 times.
RATIO_FLOOR = 1024 * 1024
_MAX_SEGMENT = 255
_MAX_NAME = 4096
_CORRUPT_HINT = (
    "download it again (force_reload=True); if it stays corrupt, report it to the "
    "repo. Nothing was extracted"
)
_DRIVE = re.compile(r"^[A-Za-z]:")
_FILE_TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE)
_REFUSED_TYPES = {
    tarfile.SYMTYPE: "it is a symbolic link",
    tarfile.LNKTYPE: "it is a hard link",
    tarfile.CHRTYPE: "it is a character device",
    tarfile.BLKTYPE: "it is a block device",
    tarfile.FIFOTYPE: "it is a FIFO",
    tarfile.GNUTYPE_SPARSE: "it is a sparse file",
}


def extract_tarball(
    archive: Path,
    dest: Path,
    limits: ArchiveLimits,
    *,
    archive_sha256: str | None = None,
) -> Path:
    """Extract ``archive`` into the new folder ``dest`` atomically; return ``dest``.

    Every member header is checked (names, types, count, sizes) in a first pass
    that writes nothing; then members are written into
    ``.<dest.name>.<token>.asynchub-extract`` beside ``dest`` and that folder is
    renamed to ``dest``; if another process renamed its copy first, ours is removed
    and theirs returned. Raises ArchiveError, with the member and the reason, for a
    refused member, an exceeded limit or a corrupt archive; nothing is left behind.

    With ``archive_sha256`` (the verified tarball's digest), the folder gets a
    marker naming it (:data:`MARKER`, written before the rename, so folder and
    marker appear together), and an existing ``dest`` is reused only when its
    marker names that digest; any other folder there (planted, or from an older
    version) is set aside and the archive extracted again. Without it an existing
    ``dest`` is returned untouched.
    """
    if _existing(dest):
        if archive_sha256 is None or _marker_names(dest, archive_sha256):
            return dest
        _log.warning("%s was not extracted from %s: extracting again", dest, archive)
        _set_aside(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_members(archive, limits)
    prefix = f".{dest.name}."
    temp = Path(tempfile.mkdtemp(suffix=TEMP_SUFFIX, prefix=prefix, dir=dest.parent))
    try:
        _extract_into(archive, temp, limits)
        if archive_sha256 is not None:
            _write_marker(temp, archive_sha256)
        os.chmod(temp, 0o755)
        return _rename_into_place(temp, dest)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


MARKER = ".asynchub-tarball.json"
"""In an extracted folder: JSON naming the SHA-256 of the tarball it came from. A
hidden name, so no manifest path can write it (hidden segments are refused)."""


def _marker_names(dest: Path, sha: str) -> bool:
    try:
        record = json.loads(read_regular(dest / MARKER, 4096))
        return isinstance(record, dict) and record.get("tarball_sha256") == sha.lower()
    except (OSError, ValueError):
        return False


def _write_marker(temp: Path, sha: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(temp / MARKER, flags, 0o644)
    except FileExistsError:
        _refuse(MARKER, "the name is reserved for asynchub's extraction marker")
    with os.fdopen(fd, "wb") as out:
        out.write(json.dumps({"tarball_sha256": sha.lower()}).encode())


def _set_aside(dest: Path) -> None:
    """Remove an unproven folder: renamed aside first, so it is never half-used."""
    doomed = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.asynchub-old")
    os.rename(dest, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def member_digests(archive: Path, limits: ArchiveLimits) -> dict[str, str]:
    """SHA-256 of every regular file in ``archive``, by its path in the extracted
    folder; what ``cache verify`` compares an extracted folder with. The archive is
    read under the same rules and limits as :func:`extract_tarball`; nothing is
    written."""
    digests: dict[str, str] = {}
    with _tar_stream(archive, limits) as (tar, _):
        for member in tar:
            parts = _safe_parts(member)
            if parts and not member.isdir():
                digests["/".join(parts)] = _digest(tar, member)
    return digests


def _digest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    sha = hashlib.sha256()
    source = tar.extractfile(member)
    if source is not None:
        with source:
            while block := source.read(_CHUNK):
                sha.update(block)
    return sha.hexdigest()


def find_model_folder(root: Path) -> Path:
    """The folder of an extracted tarball that holds the model, chosen determinately.

    The folder that directly holds ``model.onnx`` (``root`` first, then the first
    in sorted order of relative path); failing that, ``root`` itself if it directly
    holds a ``.onnx`` file; else its only top-level folder if it has exactly one
    (hidden names ignored); else the first folder, in sorted order of relative
    path, that directly holds a ``.onnx`` file; else ``root``. (onnx.hub returned
    ``os.listdir(root)[0]``, an arbitrary entry.) The hub then requires
    ``model.onnx`` in it.
    """
    holders = sorted(_onnx_folders(root), key=lambda d: d.relative_to(root).as_posix())
    with_model = [d for d in holders if (d / "model.onnx").is_file()]
    if with_model:  # a folder holding model.onnx wins over any other choice
        return root if root in with_model else with_model[0]
    if _holds_onnx(root):
        return root
    top = sorted(p for p in root.iterdir() if _visible(p) and _is_real_dir(p))
    if len(top) == 1:
        return top[0]
    return holders[0] if holders else root


def _onnx_folders(root: Path) -> list[Path]:
    """Folders under ``root`` (hidden ones skipped) that directly hold a .onnx file."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        if any(_is_onnx(name) for name in files):
            found.append(Path(folder))
    return found


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _is_real_dir(path: Path) -> bool:
    return path.is_dir() and not path.is_symlink()


def _is_onnx(name: str) -> bool:
    return name.endswith(".onnx") and not name.startswith(".")


def _holds_onnx(folder: Path) -> bool:
    return any(_is_onnx(p.name) and p.is_file() for p in folder.iterdir())


def _existing(dest: Path) -> bool:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ArchiveError(
            f"cannot extract into {dest}: it exists and is not a folder",
            hint="remove it (or clear the cache entry) and try again",
        )
    return dest.is_dir()


def _rename_into_place(temp: Path, dest: Path) -> Path:
    try:
        os.rename(temp, dest)
    except OSError:
        if not dest.is_dir() or dest.is_symlink():
            raise
        _log.debug("another process extracted %s first; using its copy", dest)
        shutil.rmtree(temp, ignore_errors=True)
    return dest


class _CountingReader:
    """The decompressed tar stream, counted against the limits on every read."""

    def __init__(self, raw: IO[bytes], archive: Path, limits: ArchiveLimits) -> None:
        self._stream = _decompressor(raw)
        self._archive = archive
        self.count = 0
        self.max_total = limits.max_total_bytes
        compressed = archive.stat().st_size
        self.max_ratio_bytes = max(limits.max_ratio * compressed, RATIO_FLOOR)
        self._ratio = limits.max_ratio

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size if 0 <= size <= _CHUNK else _CHUNK)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise ArchiveError(
                f"{self._archive.name} is corrupt: {exc}", hint=_CORRUPT_HINT
            ) from exc
        self.count += len(data)
        self.check(self.count, None)
        return data

    def check(self, total: int, member: str | None) -> None:
        """Raise ArchiveError if a stream of ``total`` bytes breaks a limit."""
        what = self._archive.name
        if member is not None:
            what = f"member {member!r} of {what}"
        if total > self.max_total:
            raise ArchiveError(
                f"{what} expands to more than {self.max_total} bytes "
                "(limit max_total_bytes)",
                hint=_limit_hint("max_total_bytes"),
            )
        if total > self.max_ratio_bytes:
            raise ArchiveError(
                f"{what} expands more than {self._ratio:g} times its compressed size "
                "(limit max_ratio): a decompression bomb?",
                hint=_limit_hint("max_ratio"),
            )

    def drain(self) -> None:
        """Read to the end, so that a corrupt or bloated tail is noticed too."""
        while self.read(_CHUNK):
            pass


def _decompressor(raw: IO[bytes]) -> IO[bytes]:
    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw, mode="rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw, mode="rb")
    return raw


class _Names:
    """Names seen so far, keyed case- and normalisation-insensitively."""

    def __init__(self) -> None:
        self.explicit: set[str] = set()
        self.kinds: dict[str, str] = {}

    def claim(self, parts: list[str], kind: str, member: str) -> None:
        key = fold_key("/".join(parts))
        if self.kinds.get(key, kind) != kind:
            _refuse(member, "it is a file and a folder at once")
        if key in self.explicit:
            _refuse(member, "another member has the same name (ignoring case)")
        for i in range(1, len(parts)):
            parent = fold_key("/".join(parts[:i]))
            if self.kinds.setdefault(parent, "dir") != "dir":
                _refuse(member, f"its folder {'/'.join(parts[:i])!r} is a file")
        self.explicit.add(key)
        self.kinds[key] = kind


def _limit_hint(limit: str) -> str:
    return (
        f"nothing was extracted; if you trust this archive, raise "
        f"HubConfig.archive.{limit} (ArchiveLimits)"
    )


def _refuse(member: str, reason: str) -> None:
    raise ArchiveError(f"refused tar member {member!r}: {reason}")


def _check_members(archive: Path, limits: ArchiveLimits) -> None:
    """First pass: every refusal and limit that headers can show, nothing written.

    100,000 tiny members were refused only after all were written (38 s); this
    pass reads the stream once (decompressing, not writing) and refuses first.
    """
    with _tar_stream(archive, limits) as (tar, reader):
        names = _Names()
        for count, member in enumerate(tar, start=1):
            _check_count(count, member, limits)
            parts = _safe_parts(member)
            if parts:
                names.claim(parts, "dir" if member.isdir() else "file", member.name)
                reader.check(member.offset_data + member.size, member.name)
        reader.drain()


def _check_count(count: int, member: tarfile.TarInfo, limits: ArchiveLimits) -> None:
    if count > limits.max_members:
        raise ArchiveError(
            f"refused tar member {member.name!r}: more than {limits.max_members} "
            "members (limit max_members)",
            hint=_limit_hint("max_members"),
        )


def _extract_into(archive: Path, temp: Path, limits: ArchiveLimits) -> None:
    with _tar_stream(archive, limits) as (tar, reader):
        _extract_members(tar, reader, temp, limits)
        reader.drain()  # what follows the tar end must fit the limits too


@contextlib.contextmanager
def _tar_stream(
    archive: Path, limits: ArchiveLimits
) -> Iterator[tuple[tarfile.TarFile, _CountingReader]]:
    """The archive as a tar stream, counted against ``limits``; tar errors become
    ArchiveError."""
    with open(archive, "rb") as raw:
        reader = _CountingReader(raw, archive, limits)
        try:
            with tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK) as tar:  # type: ignore[call-overload]
                yield tar, reader
        except tarfile.TarError as exc:
            raise ArchiveError(
                f"{archive.name} is not a valid tar archive: {exc}", hint=_CORRUPT_HINT
            ) from exc


def _extract_members(
    tar: tarfile.TarFile, reader: _CountingReader, temp: Path, limits: ArchiveLimits
) -> None:
    names = _Names()
    for count, member in enumerate(tar, start=1):
        _check_count(count, member, limits)
        parts = _safe_parts(member)
        if not parts:
            continue  # the archive's own root, "." or "./"
        names.claim(parts, "dir" if member.isdir() else "file", member.name)
        _data_filter(member, temp)
        target = temp.joinpath(*parts)
        if member.isdir():
            _make_dirs(temp, parts)
        else:
            reader.check(member.offset_data + member.size, member.name)
            _make_dirs(temp, parts[:-1])
            _write_file(tar, member, target)


def _safe_parts(member: tarfile.TarInfo) -> list[str]:
    """The member's path segments, or ArchiveError saying why it is refused."""
    name = member.name
    if member.type in _REFUSED_TYPES:
        _refuse(name, _REFUSED_TYPES[member.type])
    if member.type not in _FILE_TYPES and not member.isdir():
        _refuse(name, f"its type {member.type!r} is not a regular file or folder")
    if member.sparse is not None:
        _refuse(name, "it is a sparse file")
    problem = _name_problem(name)
    if problem:
        _refuse(name, problem)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts and not member.isdir():
        _refuse(name, "a file needs a name")
    return parts


def _name_problem(name: str) -> str | None:
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "its name contains a control character"
    if "\\" in name:
        return "its name contains a backslash"
    if name.startswith("/") or _DRIVE.match(name):
        return "its name is absolute"
    if ".." in name.split("/"):
        return "its name has a '..' segment"
    if len(name) > _MAX_NAME:
        return f"its name is longer than {_MAX_NAME} characters"
    try:
        segments = [s.encode("utf-8") for s in name.split("/")]
    except UnicodeEncodeError:
        return "its name is not valid UTF-8"
    if any(len(s) > _MAX_SEGMENT for s in segments):
        return f"a segment of its name is longer than {_MAX_SEGMENT} bytes"
    return _windows_problem(name)


def _windows_problem(name: str) -> str | None:
    for segment in name.split("/"):
        problem = segment not in ("", ".") and windows_name_problem(segment)
        if problem:
            return f"its name is not portable: {problem}"
    return None


def _data_filter(member: tarfile.TarInfo, temp: Path) -> None:
    """tarfile's ``data`` filter as a second layer (it refuses nothing we allow)."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return
    try:
        data_filter(member, str(temp))
    except tarfile.FilterError as exc:
        _refuse(member.name, f"tarfile's data filter refused it: {exc}")


def _make_dirs(temp: Path, parts: list[str]) -> None:
    folder = temp
    for part in parts:
        folder = folder / part
        if not folder.is_dir():
            folder.mkdir()
            os.chmod(folder, 0o755)


def _write_file(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - regular members always have data
        _refuse(member.name, "it has no data")
        return
    mode = 0o755 if member.mode & 0o111 else 0o644
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, 0o600)
    with os.fdopen(fd, "wb") as out, source:
        while block := source.read(_CHUNK):
            out.write(block)
    os.chmod(target, mode)
