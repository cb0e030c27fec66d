"""The file-system helpers every package writes through (asynchub._fs)."""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path

import pytest

from asynchub import _fs
from asynchub.errors import CacheError, DiskFullError, ReadOnlyCacheError

PACKAGE = Path(__file__).resolve().parents[1] / "asynchub"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_replaces_the_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "f.json"
    _fs.write_atomic(target, b"one", fsync=False, mode=None, root=tmp_path)
    _fs.write_atomic(target, b"two", fsync=False, mode=None, root=tmp_path)
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["f.json"]


@pytest.mark.skipif(os.name == "nt", reason="POSIX permission bits")
def test_an_explicit_mode_ignores_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        _fs.write_atomic(tmp_path / "served", b"x", fsync=False, mode=0o644)
        _fs.write_atomic(tmp_path / "private", b"x", fsync=False, mode=None)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "served") == 0o644
    assert _mode(tmp_path / "private") == 0o600  # 0o644 less the umask


@pytest.mark.parametrize("fsync", [True, False])
def test_fsync_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    _fs.write_atomic(tmp_path / "f", b"x", fsync=fsync, mode=None)
    assert bool(synced) is fsync


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError, match="Input/output"):
        _fs.write_atomic(target, b"new", fsync=True, mode=None)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]


@pytest.mark.skipif(os.name == "nt", reason="symbolic links need privileges")
def test_a_planted_fixed_temp_name_is_removed_not_written_through(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "f.tmp").symlink_to(outside)
    with _fs.Folder.open(folder, folder) as opened:
        _fs.write_in(opened, "f", b"new", fsync=False, mode=None, temp="f.tmp")
    assert (folder / "f").read_bytes() == b"new" and outside.read_bytes() == b"keep"
    assert sorted(os.listdir(folder)) == ["f"]


def test_write_if_changed_keeps_an_identical_file_untouched(tmp_path: Path) -> None:
    target = tmp_path / "m.json"
    _fs.write_if_changed(target, b"same", fsync=True, mode=0o644)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    _fs.write_if_changed(target, b"same", fsync=True, mode=0o644)
    assert target.stat().st_mtime_ns == 1_000_000_000
    _fs.write_if_changed(target, b"different", fsync=True, mode=0o644)
    assert target.read_bytes() == b"different"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (errno.ENOSPC, DiskFullError),
        (getattr(errno, "EDQUOT", errno.ENOSPC), DiskFullError),
        (errno.EROFS, ReadOnlyCacheError),
        (errno.EACCES, ReadOnlyCacheError),
        (errno.EPERM, ReadOnlyCacheError),
        (errno.EIO, CacheError),
    ],
)
def test_one_os_error_table(code: int, cls: type[CacheError]) -> None:
    err = _fs.os_error(OSError(code, os.strerror(code)), "/c/f", "extract into")
    assert type(err) is cls and err.hint
    assert os.strerror(code) in str(err) and "/c/f" in str(err)


def test_the_engine_and_the_cache_translate_through_the_same_mapper() -> None:
    from asynchub import cache
    from asynchub._transfer import failures, job

    assert cache.os_error is _fs.os_error and job.os_error is _fs.os_error
    assert not hasattr(failures, "disk_error")


def test_manifest_name_is_defined_once() -> None:
    pattern = re.compile(r"^_?MANIFEST_NAME\s*=", re.MULTILINE)
    defined = [
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert defined == ["sources/_source.py"]
