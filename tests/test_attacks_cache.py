"""Attacks on the cache by a local user and by hostile repos (issue 9, items 1, 2, 7,
10, 11, 12), and the attacks on the fixes themselves.

A local attacker who can write into a cache folder plants links, hard links, FIFOs,
folders and lying sidecars where asynchub expects its own files; a hostile repo
names files so that they collide with another repo's verified entries. Every test
runs the real client against a :class:`~tests.harness.Server` on
127.0.0.1 and checks that nothing outside the cache changed and that the final
name holds a regular, verified file (or that the call failed clearly).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from asynchub import AsyncHub
from asynchub._transfer import job as job_module
from asynchub._transfer import state as state_module
from asynchub._transfer.state import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX
from asynchub.cache._archive import extract_tarball
from asynchub.cache._layout import STATE_DIR, _marker_path, cache_path
from asynchub.config import ArchiveLimits
from asynchub.errors import (
    ArchiveError,
    CacheError,
    DiskFullError,
    ManifestParseError,
    UnsafePathError,
)

from .harness import Server, entry, fast_config, serve, sha

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MiB = 1024 * 1024
PATH = "vision/big/big.onnx"
DATA = bytes(range(256)) * (2 * MiB // 256)  # 2 MiB: split into ranged parts
SECRET = b"the attacker's target: must never be written"
TOKEN = "0badc0-1-00000000beef"


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        srv.hub({PATH: DATA})
        yield srv


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def load(server: Server, cache: Path, **config: Any) -> Path:
    async with AsyncHub(fast_config(cache, **config)) as hub:
        with anyio.fail_after(30):
            path = await hub.download_model("big", repo=server.hub_url, silent=True)
    assert path is not None
    return path


def final(cache: Path) -> Path:
    return cache_path(cache, PATH, sha(DATA))


def assert_regular_verified(path: Path) -> None:
    assert not path.is_symlink() and path.is_file()
    assert os.lstat(path).st_nlink == 1
    assert path.read_bytes() == DATA


def sidecar(server: Server, **fields: Any) -> bytes:
    record: dict[str, Any] = {
        "url": f"{server.hub_url}{PATH}",
        "sha256": sha(DATA),
        "total": len(DATA),
        "etag": None,
        "last_modified": None,
        "done": [[0, 64 * 1024]],
        "pid": dead_pid(),
        "host": socket.gethostname(),
        "version": 1,
    }
    record.update(fields)
    return json.dumps(record).encode()


def plant_partial(server: Server, cache: Path, kind: str, outside: Path) -> Path:
    """A previous owner's partial (sidecar, lock) whose part is ``kind``."""
    dest = final(cache)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f"{dest.name}.{TOKEN}{PART_SUFFIX}")
    if kind == "symlink":
        part.symlink_to(outside)
    elif kind == "hardlink":
        os.link(outside, part)
    elif kind == "fifo":
        os.mkfifo(part)
    dest.with_name(f"{dest.name}.{TOKEN}{STATE_SUFFIX}").write_bytes(sidecar(server))
    dest.with_name(dest.name + LOCK_SUFFIX).write_bytes(b"")
    return part


# Item 1: planted partials, sidecars, locks, markers, final names --------------------


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
async def test_planted_partial_is_never_written_through(
    server: Server, cache_dir: Path, tmp_path: Path, kind: str
) -> None:
    outside = tmp_path / "victim.bin"
    outside.write_bytes(SECRET)
    part = plant_partial(server, cache_dir, kind, outside)
    path = await load(server, cache_dir)
    assert outside.read_bytes() == SECRET
    assert_regular_verified(path)
    assert not os.path.lexists(part)


async def test_fifo_sidecar_does_not_hang_a_load(
    server: Server, cache_dir: Path
) -> None:
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    dest.with_name(f"{dest.name}.{TOKEN}{PART_SUFFIX}").write_bytes(b"x" * 100)
    os.mkfifo(dest.with_name(f"{dest.name}.{TOKEN}{STATE_SUFFIX}"))
    dest.with_name(dest.name + LOCK_SUFFIX).write_bytes(b"")
    assert_regular_verified(await load(server, cache_dir))


async def test_fifo_marker_does_not_hang_a_load(
    server: Server, cache_dir: Path, no_stamps: None
) -> None:
    path = await load(server, cache_dir)
    marker = _marker_path(cache_dir, path)
    marker.unlink()
    os.mkfifo(marker)
    assert_regular_verified(await load(server, cache_dir))
    assert len(server.log(f"/hub/{PATH}")) == 1  # re-hashed, not fetched again


@pytest.mark.parametrize(
    "lie",
    [
        {"pid": "not a pid"},
        {"pid": -1},
        {"pid": True},
        {"total": "huge"},
        {"done": [[0, 10**15]]},
        {"done": [[5, 1]]},
        {"done": "everything"},
        {"url": 12},
        {"host": ["x"]},
        {"extra_field": 1},
    ],
    ids=lambda lie: "-".join(f"{k}={v!r}" for k, v in lie.items())[:30],
)
async def test_sidecar_fields_that_lie_are_treated_as_damage(
    server: Server, cache_dir: Path, lie: dict[str, Any]
) -> None:
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    part = dest.with_name(f"{dest.name}.{TOKEN}{PART_SUFFIX}")
    part.write_bytes(b"\xff" * (256 * 1024))  # wrong bytes, whatever the sidecar says
    state = dest.with_name(f"{dest.name}.{TOKEN}{STATE_SUFFIX}")
    state.write_bytes(sidecar(server, **lie))
    dest.with_name(dest.name + LOCK_SUFFIX).write_bytes(b"")
    assert_regular_verified(await load(server, cache_dir))
    assert not os.path.lexists(part) and not os.path.lexists(state)


async def test_oversized_sidecar_is_not_read_into_memory(
    server: Server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state_module, "MAX_STATE_BYTES", 4096, raising=False)
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    dest.with_name(f"{dest.name}.{TOKEN}{PART_SUFFIX}").write_bytes(DATA[:1000])
    padded = sidecar(server) + b" " * 8192  # valid JSON, larger than the cap
    dest.with_name(f"{dest.name}.{TOKEN}{STATE_SUFFIX}").write_bytes(padded)
    dest.with_name(dest.name + LOCK_SUFFIX).write_bytes(b"")
    assert_regular_verified(await load(server, cache_dir))


async def test_final_name_planted_as_a_link_to_the_genuine_bytes_is_replaced(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    """The link's target holds the right bytes, so hashing alone would accept it."""
    outside = tmp_path / "looks-right.onnx"
    outside.write_bytes(DATA)
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    dest.symlink_to(outside)
    path = await load(server, cache_dir)
    assert_regular_verified(path)
    assert outside.read_bytes() == DATA and not outside.is_symlink()


async def test_final_name_planted_as_a_fifo_is_replaced(
    server: Server, cache_dir: Path
) -> None:
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    os.mkfifo(dest)
    assert_regular_verified(await load(server, cache_dir))


async def test_final_name_swapped_for_a_link_at_the_rename_is_refused(
    server: Server,
    cache_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The part is swapped for a link between the last write and the rename."""
    from asynchub._fs import Folder

    outside = tmp_path / "victim.bin"
    outside.write_bytes(SECRET)
    real = Folder.rename

    def swap(self: Folder, src: str, dst: str) -> None:
        if src.endswith(PART_SUFFIX):
            os.unlink(self.path / src)
            os.symlink(outside, self.path / src)
        real(self, src, dst)

    monkeypatch.setattr(Folder, "rename", swap)
    with pytest.raises(CacheError, match="was replaced while it was being written"):
        await load(server, cache_dir)
    assert not os.path.lexists(final(cache_dir))
    assert outside.read_bytes() == SECRET


@pytest.mark.parametrize("etag", ['"v1"\r\nX-Injected: 1', '"v1"\x00', 7])
async def test_a_tampered_manifest_etag_never_becomes_a_header(
    server: Server, cache_dir: Path, etag: object
) -> None:
    """A local user edits the cached manifest's meta file so its ETag carries CR LF
    (or is not a string): the next load fetches the manifest in full, sends no
    injected header, and works."""
    await load(server, cache_dir)
    (meta,) = (cache_dir / STATE_DIR / "manifests").glob("*.meta.json")
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "etag": etag}))
    server.reset_stats()
    assert_regular_verified(await load(server, cache_dir))
    (asked,) = server.log("/hub/ONNX_HUB_MANIFEST.json")
    assert asked.header("if-none-match") is None
    assert asked.header("x-injected") is None


# Item 7: linked folders inside the cache --------------------------------------------


async def test_model_folder_linked_outside_the_cache_receives_nothing(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (cache_dir / "vision").mkdir(parents=True)
    (cache_dir / "vision" / "big").symlink_to(outside)
    with pytest.raises(CacheError, match="symbolic link or not a folder"):
        await load(server, cache_dir)
    assert list(outside.iterdir()) == []


async def test_top_folder_linked_outside_the_cache_receives_nothing(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    cache_dir.mkdir(parents=True)
    (cache_dir / "vision").symlink_to(outside)
    with pytest.raises(CacheError, match="vision is a symbolic link"):
        await load(server, cache_dir)
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize("linked", ["verified", "manifests", ""])
async def test_state_folders_linked_outside_receive_nothing(
    server: Server, cache_dir: Path, tmp_path: Path, linked: str
) -> None:
    """Markers and cached manifests are an optimisation: the load still works."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    state = cache_dir / STATE_DIR
    state.parent.mkdir(parents=True)
    if linked:
        state.mkdir()
    (state / linked if linked else state).symlink_to(outside)
    assert_regular_verified(await load(server, cache_dir))
    assert list(outside.iterdir()) == []


def test_a_folder_swapped_for_a_link_after_it_was_opened_is_not_followed(
    tmp_path: Path,
) -> None:
    """openat semantics: names resolve in the folder that was opened and checked."""
    from asynchub._fs import Folder

    root, outside = tmp_path / "cache", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    with Folder.open(root, root / "a" / "b") as folder:
        os.rename(root / "a", root / "moved")
        (root / "a").symlink_to(outside)
        os.close(folder.open_file("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    assert list(outside.iterdir()) == []
    assert (root / "moved" / "b" / "f").is_file()


# Item 10: every retry loop has a bound ----------------------------------------------


async def test_dangling_lock_symlink_does_not_spin(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    target = tmp_path / "never-created"
    dest.with_name(dest.name + LOCK_SUFFIX).symlink_to(target)
    assert_regular_verified(await load(server, cache_dir))
    assert not os.path.lexists(target)


@pytest.mark.parametrize("kind", ["fifo", "folder"])
async def test_lock_that_is_no_file_is_bounded(
    server: Server, cache_dir: Path, kind: str
) -> None:
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    lock = dest.with_name(dest.name + LOCK_SUFFIX)
    if kind == "fifo":
        os.mkfifo(lock)
        assert_regular_verified(await load(server, cache_dir))
    else:
        (lock / "inside").mkdir(parents=True)
        with pytest.raises(CacheError):
            await load(server, cache_dir)


async def test_lock_that_keeps_vanishing_gives_up(
    server: Server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asynchub._transfer import lockfile as _lockfile

    monkeypatch.setattr(_lockfile, "_open", lambda *_: None)
    with pytest.raises(CacheError, match="keeps vanishing"):
        await load(server, cache_dir)


async def test_waiting_on_a_lock_holder_that_makes_no_progress_is_bounded(
    server: Server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hung holder (here: this test, holding the flock) is not waited for forever."""
    monkeypatch.setattr(job_module, "LOCK_STALL", 0.5, raising=False)
    dest = final(cache_dir)
    dest.parent.mkdir(parents=True)
    with open(dest.with_name(dest.name + LOCK_SUFFIX), "wb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert_regular_verified(await load(server, cache_dir))


# Item 2: cross-repo poisoning ---------------------------------------------------------

MODEL = b"\x08\x07genuine model bytes"
EVIL = b"\x08\x07attacker's model"
Member = tuple[tarfile.TarInfo, bytes]


def member(name: str, data: bytes = b"", *, folder: bool = False) -> Member:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if folder else tarfile.REGTYPE
    info.mode = 0o755 if folder else 0o644
    info.size = 0 if folder else len(data)
    return info, data


def tarball(members: Sequence[Member]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


GENUINE = tarball([member("victim", folder=True), member("victim/model.onnx", MODEL)])
HOSTILE = tarball([member("victim", folder=True), member("victim/model.onnx", EVIL)])
TAR = "vision/victim/victim-12.tar.gz"


def with_data(name: str, path: str, archive: bytes | None, **meta: Any) -> dict:  # type: ignore[type-arg]
    metadata: dict[str, Any] = {"model_with_data_path": path}
    if archive is not None:
        metadata.update(
            model_with_data_sha=sha(archive), model_with_data_bytes=len(archive)
        )
    metadata.update(meta)
    return entry(name, f"vision/{name}/{name}.onnx", MODEL, metadata=metadata)


async def with_test_data(server: Server, cache: Path, name: str) -> Path:
    async with AsyncHub(fast_config(cache)) as hub:
        folder = await hub.download_model_with_test_data(
            name, repo=server.hub_url, silent=True
        )
    assert folder is not None
    return Path(folder)


@pytest.fixture
def genuine() -> Iterator[Server]:
    with Server() as srv:
        srv.hub(
            {"vision/victim/victim.onnx": MODEL, TAR: GENUINE},
            [with_data("victim", TAR, GENUINE)],
        )
        yield srv


def hostile_repo(srv: Server, path: str, data: bytes, **meta: Any) -> None:
    srv.route(f"/hub/{path}", serve(data))
    item = with_data("evil", path, None, **meta)
    srv.route("/hub/vision/evil/evil.onnx", serve(MODEL))
    srv.route("/hub/ONNX_HUB_MANIFEST.json", serve(json.dumps([item]).encode()))


async def test_sha_less_tarball_cannot_take_a_hashed_cache_name(
    genuine: Server, cache_dir: Path
) -> None:
    forged = f"vision/victim/{sha(GENUINE)}_victim-12.tar.gz"
    with Server() as evil:
        hostile_repo(evil, forged, HOSTILE)
        with pytest.raises(UnsafePathError, match="form of a hashed cache name"):
            await with_test_data(evil, cache_dir, "evil")
        assert evil.log(f"/hub/{forged}") == []
    folder = await with_test_data(genuine, cache_dir, "victim")
    assert (folder / "model.onnx").read_bytes() == MODEL


async def test_entry_inside_another_entrys_extracted_folder_is_refused(
    genuine: Server, cache_dir: Path
) -> None:
    inside = f"vision/victim/{sha(GENUINE)}_victim-12/victim/model.onnx"
    with Server() as evil:
        evil.hub({inside: EVIL}, [entry("evil", inside, None)])
        async with AsyncHub(fast_config(cache_dir)) as hub:
            with pytest.raises(UnsafePathError, match="hashed cache name"):
                await hub.download_model("evil", repo=evil.hub_url, silent=True)
        evil.hub({inside: EVIL}, [entry("evil", inside, EVIL)])  # hashed: also
        async with AsyncHub(fast_config(cache_dir)) as hub:
            with pytest.raises(UnsafePathError, match="hashed cache name"):
                await hub.download_model("evil", repo=evil.hub_url, silent=True)
    folder = await with_test_data(genuine, cache_dir, "victim")
    assert (folder / "model.onnx").read_bytes() == MODEL


async def test_planted_extraction_folder_is_not_reused(
    genuine: Server, cache_dir: Path
) -> None:
    """A folder at the extraction name without a marker naming the tarball's
    SHA-256 (planted, or older than the marker) is extracted again."""
    tar = cache_path(cache_dir, TAR, sha(GENUINE))
    planted = tar.with_name(tar.name[: -len(".tar.gz")]) / "victim"
    planted.mkdir(parents=True)
    (planted / "model.onnx").write_bytes(EVIL)
    folder = await with_test_data(genuine, cache_dir, "victim")
    assert (folder / "model.onnx").read_bytes() == MODEL
    marker = json.loads((folder.parent / ".asynchub-tarball.json").read_text())
    assert marker == {"tarball_sha256": sha(GENUINE)}


async def test_marker_naming_another_tarball_is_not_trusted(
    genuine: Server, cache_dir: Path
) -> None:
    folder = await with_test_data(genuine, cache_dir, "victim")
    (folder / "model.onnx").write_bytes(EVIL)
    marker = folder.parent / ".asynchub-tarball.json"
    marker.write_text(json.dumps({"tarball_sha256": sha(HOSTILE)}))
    again = await with_test_data(genuine, cache_dir, "victim")
    assert (again / "model.onnx").read_bytes() == MODEL


def test_tar_member_cannot_forge_the_extraction_marker(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(
        tarball(
            [member("m/model.onnx", MODEL), member(".asynchub-tarball.json", b"{}")]
        )
    )
    with pytest.raises(ArchiveError, match="reserved"):
        extract_tarball(
            archive, tmp_path / "out", ArchiveLimits(), archive_sha256=sha(MODEL)
        )
    assert not (tmp_path / "out").exists()


# Item 11: archives ----------------------------------------------------------------


def test_member_count_is_refused_before_any_member_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asynchub.cache import _archive

    written: list[str] = []
    real = _archive._write_file

    def counting(tar: Any, member: tarfile.TarInfo, target: Path) -> None:
        written.append(member.name)
        real(tar, member, target)

    monkeypatch.setattr(_archive, "_write_file", counting)
    archive = tmp_path / "many.tar.gz"
    archive.write_bytes(tarball([member(f"m/{i}.pb", b"x") for i in range(60)]))
    with pytest.raises(ArchiveError, match="max_members"):
        extract_tarball(archive, tmp_path / "out", ArchiveLimits(max_members=50))
    assert written == []


@pytest.mark.parametrize(
    "bad",
    [
        member("m/../../escape.pb", b"x"),
        member("m/Model.onnx", b"x"),  # collides with m/model.onnx
    ],
    ids=["traversal", "case-collision"],
)
def test_a_refused_member_at_the_end_writes_nothing_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: Member
) -> None:
    from asynchub.cache import _archive

    written: list[str] = []
    monkeypatch.setattr(
        _archive, "_write_file", lambda tar, m, target: written.append(m.name)
    )
    archive = tmp_path / "late.tar.gz"
    archive.write_bytes(tarball([member("m/model.onnx", MODEL), bad]))
    with pytest.raises(ArchiveError):
        extract_tarball(archive, tmp_path / "out", ArchiveLimits())
    assert written == []


async def test_disk_full_during_extraction_is_a_disk_full_error(
    genuine: Server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asynchub.cache import _archive

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_archive, "_write_file", full)
    with pytest.raises(DiskFullError, match="No space left"):
        await with_test_data(genuine, cache_dir, "victim")
    tar = cache_path(cache_dir, TAR, sha(GENUINE))
    assert not tar.with_name(tar.name[: -len(".tar.gz")]).exists()


@pytest.mark.parametrize("has_model", [True, False])
async def test_returned_folder_holds_model_onnx_or_the_call_fails(
    cache_dir: Path, has_model: bool
) -> None:
    members = [
        member("model", folder=True),
        member("model/model_quantized.onnx", EVIL),
        member("par-12", folder=True),
        member("par-12/test_data_set_0/input_0.pb", b"in"),
        member("par-12.tar.gz", b"nested"),
    ]
    if has_model:
        members.append(member("par-12/model.onnx", MODEL))
    archive = tarball(members)
    with Server() as srv:
        srv.hub(
            {"vision/victim/victim.onnx": MODEL, TAR: archive},
            [with_data("victim", TAR, archive)],
        )
        if has_model:
            folder = await with_test_data(srv, cache_dir, "victim")
            assert folder.name == "par-12"
            assert (folder / "model.onnx").read_bytes() == MODEL
        else:
            with pytest.raises(ArchiveError, match="no model.onnx"):
                await with_test_data(srv, cache_dir, "victim")


# Item 12: names a case-insensitive file system confuses ----------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [("ı", "i"), ("ſ", "s"), ("K", "k"), ("ǅ", "ǆ"), ("ß", "ss")],
    ids=["dotless-i", "long-s", "kelvin", "titlecase-dz", "sharp-s"],
)
def test_manifest_paths_that_fold_together_on_windows_are_refused(
    first: str, second: str
) -> None:
    from asynchub.manifest import Manifest

    entries = [
        entry("a", f"vision/{first}/x.onnx", MODEL),
        entry("b", f"vision/{second}/x.onnx", MODEL),
    ]
    with pytest.raises(ManifestParseError, match="case-insensitively"):
        Manifest.parse(json.dumps(entries).encode())


@pytest.mark.parametrize(("first", "second"), [("ı", "i"), ("ſ", "s")])
def test_tar_members_that_fold_together_on_windows_are_refused(
    tmp_path: Path, first: str, second: str
) -> None:
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(
        tarball([member(f"m/{first}.pb", b"1"), member(f"m/{second}.pb", b"2")])
    )
    with pytest.raises(ArchiveError, match="same name"):
        extract_tarball(archive, tmp_path / "out", ArchiveLimits())
    assert not (tmp_path / "out").exists()


async def test_redirected_part_failing_after_its_headers_is_bounded(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each failure at a redirect's target asks the URL again: only so often."""
    from asynchub._transfer import stream as _stream
    from asynchub.errors import TransferError

    from .harness import redirect

    async def broken(self: Any, response: Any, seg: Any, skip: int) -> None:
        raise TransferError("the body broke in a way that is not retried")

    monkeypatch.setattr(_stream.BodyWriter, "stream", broken)
    with Server() as srv:
        srv.hub({PATH: DATA})
        srv.route(f"/hub/{PATH}", redirect(f"/cdn/{PATH}"))
        srv.route(f"/cdn/{PATH}", serve(DATA))
        with pytest.raises(TransferError, match="not retried"):
            await load(srv, cache_dir)
        assert 1 < len(srv.log(f"/hub/{PATH}")) <= 10


@pytest.mark.parametrize("linked", [False, True], ids=["plain", "verified-linked"])
def test_a_batch_of_markers_opens_its_folder_safely_once(
    tmp_path: Path, linked: bool, no_stamps: None
) -> None:
    """The mirror writes markers 64 at a time through one opened folder: they must
    match their files, and a markers folder planted as a link receives nothing."""
    from asynchub.cache._layout import _marker_matches, write_markers

    root, outside = tmp_path / "hub", tmp_path / "elsewhere"
    files = []
    for i in range(5):
        path = root / f"d{i % 2}" / f"m{i}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * i)
        files.append((path, hashlib.sha256(b"x" * i).hexdigest()))
    if linked:
        outside.mkdir()
        (root / STATE_DIR).mkdir()
        (root / STATE_DIR / "verified").symlink_to(outside)
    write_markers(root, files)
    if linked:
        assert list(outside.iterdir()) == []
        assert not any(_marker_matches(root, f, sha) for f, sha in files)
    else:
        assert all(_marker_matches(root, f, sha) for f, sha in files)
        assert len(list((root / STATE_DIR / "verified").iterdir())) == 5
