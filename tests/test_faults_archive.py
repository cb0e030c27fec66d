"""Hostile tarballs through ``download_model_with_test_data`` (rows A1-A7).

The attacker here controls a repo: the manifest's ``model_with_data_sha`` matches the
hostile tarball, so the download verifies and only the extractor stands between the
archive and the disk (CVE-2024-5187). Each test serves the archive from a local hub,
calls the public API, and then lists the whole ``$ONNX_HOME`` tree: no file may exist
outside the cache's expected entries, no temporary extraction folder may remain,
and the extraction folder must not exist after a refusal.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from asynchub import AsyncHub
from asynchub.cache._archive import TEMP_SUFFIX
from asynchub.cache._layout import cache_path
from asynchub.config import ArchiveLimits
from asynchub.errors import ArchiveError

from .harness import Server, entry, fast_config, sha, tree

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MODEL = b"\x08\x07tiny model bytes"
MODEL_PATH = "vision/m/model.onnx"
TAR_PATH = "vision/m/m.tar.gz"
Member = tuple[tarfile.TarInfo, bytes]


def member(
    name: str,
    data: bytes = b"data",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    link: str = "",
) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname = kind, mode, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.mtime = 1_700_000_000
    return info, data


GOOD: list[Member] = [
    member("m", kind=tarfile.DIRTYPE, mode=0o755),
    member("m/model.onnx", MODEL),
    member("m/test_data_set_0", kind=tarfile.DIRTYPE, mode=0o755),
    member("m/test_data_set_0/input_0.pb", b"in"),
    member("m/test_data_set_0/output_0.pb", b"out"),
]


def tarball(members: Sequence[Member], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


def publish(server: Server, archive: bytes) -> str:
    meta = {
        "model_with_data_path": TAR_PATH,
        "model_with_data_sha": sha(archive),
        "model_with_data_bytes": len(archive),
    }
    item = entry("m", MODEL_PATH, MODEL, metadata=meta)
    return server.hub({MODEL_PATH: MODEL, TAR_PATH: archive}, [item])


async def extract(
    server: Server, cache: Path, *, force: bool = False, **config: object
) -> Path:
    async with AsyncHub(fast_config(cache, **config)) as hub:
        folder = await hub.download_model_with_test_data(
            "m", repo=server.hub_url, silent=True, force_reload=force
        )
    assert folder is not None
    return Path(folder)


def dest_of(cache: Path, archive: bytes) -> Path:
    """The extraction folder: the cached tarball's name without ``.tar.gz``."""
    cached = cache_path(cache, TAR_PATH, sha(archive))
    return cached.with_name(cached.name[: -len(".tar.gz")])


def expected_after_refusal(cache: Path, archive: bytes) -> list[str]:
    """What $ONNX_HOME may hold after a refused archive: the verified tarball,
    asynchub's bookkeeping, and the folders leading to them (no lock file)."""
    cached = cache_path(cache, TAR_PATH, sha(archive))
    home = cache.parent
    rel = cached.relative_to(home)
    allowed = {str(rel)}
    allowed |= {str(p) for p in rel.parents if str(p) != "."}
    return sorted(allowed)


def assert_refused_cleanly(cache: Path, archive: bytes) -> None:
    home = cache.parent
    found = [p for p in tree(home) if not p.startswith("hub/.asynchub")]
    assert found == expected_after_refusal(cache, archive)
    assert not any(TEMP_SUFFIX in p for p in tree(home))
    assert not dest_of(cache, archive).exists()


# A good archive, as the baseline that shows the checks can pass -------------------


async def test_good_archive_extracts_with_normal_modes(
    server: Server, cache_dir: Path
) -> None:
    archive = tarball(GOOD)
    publish(server, archive)
    folder = await extract(server, cache_dir)
    dest = dest_of(cache_dir, archive)
    assert folder == dest / "m"
    assert (folder / "model.onnx").read_bytes() == MODEL
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        ".asynchub-tarball.json",  # names the tarball's SHA-256 (issue 9, item 2)
        "m",
        "m/model.onnx",
        "m/test_data_set_0",
        "m/test_data_set_0/input_0.pb",
        "m/test_data_set_0/output_0.pb",
    ]
    assert not any(TEMP_SUFFIX in p for p in tree(cache_dir.parent))


# A1-A4 hostile members -------------------------------------------------------------


def _escapes(home: Path) -> dict[str, list[Member]]:
    absolute = str(home / "abs_escaped.txt")
    return {
        "dotdot": [member("../../../../escaped.txt")],
        "nested-dotdot": [member("m/a/../../../../../../escaped.txt")],
        "sibling-prefix": [member("../m_evil/escaped.txt")],
        "absolute": [member(absolute)],
        "symlink-out": [member("m/link", kind=tarfile.SYMTYPE, link="/etc/passwd")],
        "symlink-then-write": [
            member("m/up", kind=tarfile.SYMTYPE, link="../../../.."),
            member("m/up/escaped.txt"),
        ],
        "empty-named-symlink-chain": [
            member("m/a", kind=tarfile.SYMTYPE, link=""),
            member("m/a/escaped.txt"),
        ],
        "hardlink-out": [member("m/hl", kind=tarfile.LNKTYPE, link="../../etc/passwd")],
        "hardlink-inside": [
            member("m/copy.onnx", kind=tarfile.LNKTYPE, link="m/model.onnx")
        ],
        "char-device": [member("m/tty", kind=tarfile.CHRTYPE)],
        "block-device": [member("m/sda", kind=tarfile.BLKTYPE)],
        "fifo": [member("m/pipe", kind=tarfile.FIFOTYPE)],
        "duplicate-name": [member("m/model.onnx", b"second copy")],
        "case-twin": [member("m/MODEL.onnx", b"twin")],
        "nfd-twin": [
            member("m/caf\u00e9.pb"),
            member("m/cafe\u0301.pb"),
        ],
        "file-then-folder": [member("m/model.onnx/x.pb")],
        "backslash": [member("m\\..\\..\\escaped.txt")],
        "drive": [member("C:/escaped.txt")],
        "control-char": [member("m/a\x1b[2J.pb")],
        "windows-device": [member("m/test_data_set_0/CON.pb")],
        "windows-trailing-dot": [member("m/data./input_0.pb")],
    }


REASONS = {
    "dotdot": "'..' segment",
    "nested-dotdot": "'..' segment",
    "sibling-prefix": "'..' segment",
    "absolute": "its name is absolute",
    "symlink-out": "it is a symbolic link",
    "symlink-then-write": "it is a symbolic link",
    "empty-named-symlink-chain": "it is a symbolic link",
    "hardlink-out": "it is a hard link",
    "hardlink-inside": "it is a hard link",
    "char-device": "it is a character device",
    "block-device": "it is a block device",
    "fifo": "it is a FIFO",
    "duplicate-name": "another member has the same name",
    "case-twin": "another member has the same name",
    "nfd-twin": "another member has the same name",
    "file-then-folder": "is a file",
    "backslash": "backslash",
    "drive": "its name is absolute",
    "control-char": "control character",
    "windows-device": "names a Windows device",
    "windows-trailing-dot": "ends with a dot or a space",
}


@pytest.mark.parametrize("case", sorted(REASONS))
async def test_hostile_member_is_refused_nothing_escapes(
    server: Server, cache_dir: Path, case: str
) -> None:
    hostile = _escapes(cache_dir.parent)[case]
    archive = tarball([*GOOD, *hostile])
    publish(server, archive)
    with pytest.raises(ArchiveError, match="refused tar member") as exc:
        await extract(server, cache_dir)
    assert repr(hostile[0][0].name) in str(exc.value) or case.endswith("twin")
    assert REASONS[case] in str(exc.value)
    assert "nothing was extracted" in str(exc.value).lower() or exc.value.hint
    assert_refused_cleanly(cache_dir, archive)
    assert not Path("/etc/passwd").is_symlink()


async def test_hostile_member_first_leaves_nothing(
    server: Server, cache_dir: Path
) -> None:
    archive = tarball([member("../../../../escaped.txt"), *GOOD])
    publish(server, archive)
    with pytest.raises(ArchiveError, match="'..' segment"):
        await extract(server, cache_dir)
    assert_refused_cleanly(cache_dir, archive)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (0o4755, 0o755),
        (0o2755, 0o755),
        (0o6777, 0o755),
        (0o666, 0o644),
        (0o1644, 0o644),
    ],
)
async def test_special_mode_bits_are_normalised(
    server: Server, cache_dir: Path, mode: int, expected: int
) -> None:
    archive = tarball([*GOOD, member("m/tool.bin", b"#!", mode=mode)])
    publish(server, archive)
    folder = await extract(server, cache_dir)
    assert stat.S_IMODE((folder / "tool.bin").stat().st_mode) == expected
    for path in dest_of(cache_dir, archive).rglob("*"):
        bits = stat.S_IMODE(path.stat().st_mode)
        assert not bits & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH)


async def test_pax_header_cannot_smuggle_a_path(
    server: Server, cache_dir: Path
) -> None:
    """A PAX ``path`` record overrides the header name: it is checked the same."""
    info, data = member("m/innocent.pb")
    info.pax_headers = {"path": "../../../../escaped.txt"}
    archive = tarball([*GOOD, (info, data)], fmt=tarfile.PAX_FORMAT)
    publish(server, archive)
    with pytest.raises(ArchiveError, match="'..' segment"):
        await extract(server, cache_dir)
    assert_refused_cleanly(cache_dir, archive)


# A5 decompression bombs ------------------------------------------------------------


async def test_bomb_over_total_size_limit(server: Server, cache_dir: Path) -> None:
    archive = tarball([*GOOD, member("m/big.pb", os.urandom(3 * 1024 * 1024))])
    publish(server, archive)
    limits = ArchiveLimits(max_total_bytes=2 * 1024 * 1024)
    with pytest.raises(
        ArchiveError, match=r"expands to more than 2097152 bytes"
    ) as exc:
        await extract(server, cache_dir, archive=limits)
    assert "max_total_bytes" in str(exc.value)
    assert_refused_cleanly(cache_dir, archive)


async def test_bomb_by_compression_ratio(server: Server, cache_dir: Path) -> None:
    archive = tarball([*GOOD, member("m/zeros.pb", bytes(16 * 1024 * 1024))])
    assert len(archive) < 64 * 1024  # 16 MiB of zeros in a few KiB
    publish(server, archive)
    with pytest.raises(ArchiveError, match="times its compressed size") as exc:
        await extract(server, cache_dir)
    assert "max_ratio" in str(exc.value) and "decompression bomb" in str(exc.value)
    assert_refused_cleanly(cache_dir, archive)


async def test_bomb_by_member_count(server: Server, cache_dir: Path) -> None:
    many = [member(f"m/f{i}.pb", b"") for i in range(300)]
    archive = tarball([*GOOD, *many])
    publish(server, archive)
    with pytest.raises(ArchiveError, match="more than 100 members") as exc:
        await extract(server, cache_dir, archive=ArchiveLimits(max_members=100))
    assert "max_members" in str(exc.value)
    assert_refused_cleanly(cache_dir, archive)


async def test_member_header_lying_about_size_is_refused_before_writing(
    server: Server, cache_dir: Path
) -> None:
    """A header announcing 3 GiB for a member is refused unread."""
    info, _ = member("m/huge.pb")
    info.size = 3 * 1024**3
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for good, data in GOOD:
            tar.addfile(good, io.BytesIO(data) if good.isreg() else None)
        members = buffer.getvalue()[: tar.offset]
    # The lying header is written by hand: tarfile (3.13+) refuses to write a
    # non-empty member without its data, which is exactly what this attack sends.
    header = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    archive = gzip.compress(members + header + bytes(2 * tarfile.BLOCKSIZE))
    publish(server, archive)
    limits = ArchiveLimits(max_total_bytes=1024**3)
    with pytest.raises(ArchiveError, match="expands to more than"):
        await extract(server, cache_dir, archive=limits)
    assert_refused_cleanly(cache_dir, archive)


# A6 layout ---------------------------------------------------------------------------


async def test_two_top_level_folders_give_a_deterministic_model_folder(
    server: Server, cache_dir: Path
) -> None:
    layout = [
        member("zz_extra", kind=tarfile.DIRTYPE, mode=0o755),
        member("zz_extra/readme.txt"),
        *GOOD,
        member("aa_notes", kind=tarfile.DIRTYPE, mode=0o755),
    ]
    archive = tarball(layout)
    publish(server, archive)
    folder = await extract(server, cache_dir)
    assert folder == dest_of(cache_dir, archive) / "m"  # the one holding a .onnx


# A7 pre-existing destination -------------------------------------------------------


async def test_existing_file_at_destination_is_refused(
    server: Server, cache_dir: Path
) -> None:
    archive = tarball(GOOD)
    publish(server, archive)
    dest = dest_of(cache_dir, archive)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"planted")
    with pytest.raises(ArchiveError, match="exists and is not a folder"):
        await extract(server, cache_dir)
    assert dest.read_bytes() == b"planted"
    assert not any(TEMP_SUFFIX in p for p in tree(cache_dir.parent))


async def test_planted_symlink_at_destination_is_never_followed(
    server: Server, cache_dir: Path, tmp_path: Path
) -> None:
    """GNU tar CVE-2025-45582 analogue: a symlink where the folder will go."""
    outside = tmp_path / "outside"
    outside.mkdir()
    archive = tarball(GOOD)
    publish(server, archive)
    dest = dest_of(cache_dir, archive)
    dest.parent.mkdir(parents=True)
    dest.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ArchiveError, match="exists and is not a folder"):
        await extract(server, cache_dir)
    assert list(outside.iterdir()) == []
    fresh = await extract(server, cache_dir, force=True)  # the link is moved aside
    assert not dest.is_symlink() and (fresh / "model.onnx").read_bytes() == MODEL
    assert list(outside.iterdir()) == []  # never deleted or written through


async def test_leftover_extraction_is_reused_and_force_reload_replaces_it(
    server: Server, cache_dir: Path
) -> None:
    archive = tarball(GOOD)
    publish(server, archive)
    folder = await extract(server, cache_dir)
    (folder / "model.onnx").write_bytes(b"tampered")
    again = await extract(server, cache_dir)
    assert (again / "model.onnx").read_bytes() == b"tampered"  # documented reuse
    fresh = await extract(server, cache_dir, force=True)
    assert (fresh / "model.onnx").read_bytes() == MODEL
    assert not any(TEMP_SUFFIX in p or "asynchub-old" in p for p in tree(cache_dir))


async def test_stale_temp_folder_from_a_crash_does_not_interfere(
    server: Server, cache_dir: Path
) -> None:
    archive = tarball(GOOD)
    publish(server, archive)
    dest = dest_of(cache_dir, archive)
    stale = dest.with_name(f".{dest.name}.deadbeef{TEMP_SUFFIX}")
    (stale / "m").mkdir(parents=True)
    (stale / "m" / "model.onnx").write_bytes(b"half")
    folder = await extract(server, cache_dir)
    assert (folder / "model.onnx").read_bytes() == MODEL
    assert (stale / "m" / "model.onnx").read_bytes() == b"half"  # left for prune
