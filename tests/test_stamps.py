"""A verified file's stamp: the extended attribute that saves re-hashing it.

The stamp replaces a marker file per model; these tests try to make it vouch for
a file it did not see (changed, planted, linked) and check that without extended
attributes the marker files still do the job.
"""

from __future__ import annotations

import errno
import hashlib
import os
import struct
from pathlib import Path

import onnx
import pytest

from asynchub import HubConfig, hub
from asynchub._fs import stamp as stamp_module
from asynchub._fs.stamp import NAME, is_stamped, stamp_fd, stamp_path
from asynchub.cache import _layout
from asynchub.cache._layout import STATE_DIR, cache_path
from asynchub.manifest import Manifest
from asynchub.mirror import amirror

from .hub_server import HubServer

pytestmark = pytest.mark.usefixtures("stamps")

DATA = b"weights " * 1000
SHA = hashlib.sha256(DATA).hexdigest()


def _file(tmp_path: Path, data: bytes = DATA) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return path


def _entry(example_hub: Path):  # type: ignore[no-untyped-def]
    raw = (example_hub / "ONNX_HUB_MANIFEST.json").read_bytes()
    return Manifest.parse(raw).find("TinyNet")


def _bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def _hash_counter(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    hashed: list[Path] = []
    real = _layout.sha256_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(_layout, "sha256_file", counting)
    return hashed


def test_a_stamp_vouches_only_for_its_digest_size_and_mtime(tmp_path: Path) -> None:
    path = _file(tmp_path)
    assert not is_stamped(path, SHA)
    assert stamp_path(path, SHA)
    assert is_stamped(path, SHA) and is_stamped(path, SHA.upper())
    assert is_stamped(path, None)  # an entry without an expected hash
    assert not is_stamped(path, hashlib.sha256(b"other").hexdigest())
    _bump_mtime(path)
    assert not is_stamped(path, SHA)  # written again since (same size)
    assert stamp_path(path, SHA)
    with path.open("ab") as file:
        file.write(b"!")
    assert not is_stamped(path, SHA)  # grew


def test_stamping_an_open_file_records_its_state_now(tmp_path: Path) -> None:
    path = _file(tmp_path)
    fd = os.open(path, os.O_RDWR)
    try:
        assert stamp_fd(fd, SHA)
        assert is_stamped(path, SHA)
        os.pwrite(fd, b"x", 0)
        _bump_mtime(path)
    finally:
        os.close(fd)
    assert not is_stamped(path, SHA)


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"x" * 49,  # right length, wrong version
        struct.pack("<B32sQQ", 2, bytes.fromhex(SHA), len(DATA), 0),  # later version
        struct.pack("<B32sQQ", 1, bytes.fromhex(SHA), len(DATA), 0) + b"\0",  # longer
        struct.pack("<B32sQQ", 1, bytes.fromhex(SHA), len(DATA), 12345),  # old mtime
        struct.pack("<B32sQQ", 1, bytes.fromhex(SHA), 2**64 - 1, 0),  # claimed size
    ],
)
def test_a_planted_or_foreign_stamp_never_matches(tmp_path: Path, value: bytes) -> None:
    path = _file(tmp_path)
    os.setxattr(path, NAME, value)
    assert not is_stamped(path, SHA)
    assert not is_stamped(path, None)


def test_a_link_is_neither_stamped_nor_read_through(tmp_path: Path) -> None:
    target = _file(tmp_path)
    assert stamp_path(target, SHA)
    link = tmp_path / "link.onnx"
    link.symlink_to(target)
    assert not is_stamped(link, SHA)  # the target's stamp does not count
    fake = hashlib.sha256(b"other").hexdigest()
    assert not stamp_path(link, fake)
    assert is_stamped(target, SHA)  # and the target was not restamped


def test_a_bad_digest_is_refused_not_raised(tmp_path: Path) -> None:
    path = _file(tmp_path)
    assert not stamp_path(path, "not hex")
    assert not is_stamped(path, "not hex")


def test_a_download_arrives_stamped_and_is_never_hashed_again(
    hub_server: HubServer,
    example_hub: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hashed = _hash_counter(monkeypatch)
    model = hub.load("TinyNet")
    entry = _entry(example_hub)
    cached = cache_path(cache_dir, entry.model_path, entry.model_sha)
    assert is_stamped(cached, entry.model_sha)
    assert not list((cache_dir / STATE_DIR / "verified").glob("*.json"))
    assert hub.load("TinyNet") == model
    assert hashed == [] and len(hub_server.file_requests()) == 2


def test_a_file_changed_after_its_stamp_is_hashed_and_fetched_again(
    hub_server: HubServer,
    example_hub: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = _entry(example_hub)
    hub.load("TinyNet")
    cached = cache_path(cache_dir, entry.model_path, entry.model_sha)
    size = cached.stat().st_size
    cached.write_bytes(b"\0" * size)  # same size: only the mtime tells
    _bump_mtime(cached)
    hashed = _hash_counter(monkeypatch)
    model = hub.load("TinyNet")
    assert model == onnx.load(str(example_hub / entry.model_path))
    assert hashed == [cached]  # hashed, found wrong, fetched again
    assert len(hub_server.file_requests()) == 4
    assert is_stamped(cached, entry.model_sha)


def test_without_extended_attributes_marker_files_vouch_instead(
    hub_server: HubServer,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As on a file system that answers ENOTSUP (FAT, some network mounts)."""

    def unsupported(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOTSUP, "Operation not supported")

    monkeypatch.setattr(os, "setxattr", unsupported)
    model = hub.load("TinyNet")
    markers = list((cache_dir / STATE_DIR / "verified").glob("*.json"))
    assert len(markers) == 1
    hashed = _hash_counter(monkeypatch)
    assert hub.load("TinyNet") == model
    assert hashed == [] and len(hub_server.file_requests()) == 2


@pytest.mark.anyio
async def test_a_second_mirror_hashes_nothing_and_writes_no_marker_files(
    example_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "mirror"
    first = await amirror(dest, str(example_hub), config=_config(tmp_path))
    assert first.ok and first.files_done == 12
    files = [p for p in dest.rglob("*") if p.is_file() and STATE_DIR not in p.parts]
    stamped = [p for p in files if is_stamped(p, None)]
    assert len(stamped) == 12  # every fetched file; the manifest is not one
    assert not list((dest / STATE_DIR).rglob("*.json"))
    hashed = _hash_counter(monkeypatch)
    again = await amirror(dest, str(example_hub), config=_config(tmp_path))
    assert again.ok and again.files_done == 0 and hashed == []


def _config(tmp_path: Path) -> HubConfig:
    return HubConfig(cache_dir=tmp_path / "cache")


def test_the_stamp_module_reports_no_support_where_python_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stamp_module, "_AVAILABLE", False)
    path = _file(tmp_path)
    assert not stamp_path(path, SHA) and not is_stamped(path, SHA)
    assert NAME not in os.listxattr(path)
