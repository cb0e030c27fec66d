"""Safe tarball extraction: good archives, hostile members, bombs, races.

Every hostile archive is built by hand with TarInfo. After each failure the whole
tmp tree is listed: nothing may exist outside the archive's own folder, no
temporary extraction folder may remain, and the destination must not exist.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from asynchub.cache import _archive
from asynchub.cache._archive import TEMP_SUFFIX, extract_tarball, find_model_folder
from asynchub.config import ArchiveLimits
from asynchub.errors import ArchiveError

MiB = 1024 * 1024
LIMITS = ArchiveLimits()
Member = tuple[tarfile.TarInfo, bytes]


def info(
    name: str,
    kind: bytes = tarfile.REGTYPE,
    *,
    size: int = 0,
    mode: int = 0o644,
    linkname: str = "",
) -> tarfile.TarInfo:
    member = tarfile.TarInfo(name)
    member.type, member.size, member.mode, member.linkname = kind, size, mode, linkname
    return member


def file(name: str, data: bytes = b"data", mode: int = 0o644) -> Member:
    return info(name, size=len(data), mode=mode), data


def folder(name: str, mode: int = 0o755) -> Member:
    return info(name, tarfile.DIRTYPE, mode=mode), b""


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    return info(name, kind, linkname=linkname), b""


def make_tar(path: Path, members: Sequence[Member], compression: str = "gz") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, f"w:{compression}", format=tarfile.GNU_FORMAT) as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if member.isreg() else None)
    return path


GOOD: list[Member] = [
    folder("mnist"),
    file("mnist/model.onnx", b"model bytes"),
    folder("mnist/test_data_set_0"),
    file("mnist/test_data_set_0/input_0.pb", b"in"),
    file("mnist/test_data_set_0/output_0.pb", b"out"),
]


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones too), relative, POSIX."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "in"


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "vision" / "mnist-8"


@pytest.fixture(autouse=True)
def no_leftovers(tmp_path: Path) -> Iterator[None]:
    """After every test: no temp folder anywhere, nothing beside the expected ones."""
    yield
    paths = tree(tmp_path)
    assert not [p for p in paths if TEMP_SUFFIX in p]
    allowed = ("in", "cache/vision/mnist-8", "cache/vision/zeros", "root", "elsewhere")
    for path in paths - {"cache", "cache/vision"}:
        assert path in allowed or path.startswith(tuple(a + "/" for a in allowed))


def assert_nothing_written(tmp_path: Path, archive: Path, dest: Path) -> None:
    """Only the archive and dest's (pre-created, empty) parents may exist."""
    parents = {
        dest.parent.relative_to(tmp_path).parents[i].as_posix()
        for i in range(len(dest.parent.relative_to(tmp_path).parts) - 1)
    } | {dest.parent.relative_to(tmp_path).as_posix()}
    expected = {"in", archive.relative_to(tmp_path).as_posix()} | parents
    assert tree(tmp_path) == expected


# good archives ------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz", ""])
def test_good_archive_extracts(
    tmp_path: Path, archive_dir: Path, dest: Path, compression: str
) -> None:
    archive = make_tar(archive_dir / "mnist-8.tar", GOOD, compression)
    assert extract_tarball(archive, dest, LIMITS) == dest
    assert (dest / "mnist/model.onnx").read_bytes() == b"model bytes"
    assert (dest / "mnist/test_data_set_0/input_0.pb").read_bytes() == b"in"
    assert (dest / "mnist/test_data_set_0/output_0.pb").read_bytes() == b"out"
    assert tree(dest) == {
        "mnist",
        "mnist/model.onnx",
        "mnist/test_data_set_0",
        "mnist/test_data_set_0/input_0.pb",
        "mnist/test_data_set_0/output_0.pb",
    }
    assert find_model_folder(dest) == dest / "mnist"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mnist-8"]


def test_modes_are_normalised(archive_dir: Path, dest: Path) -> None:
    archive = make_tar(
        archive_dir / "m.tar.gz",
        [
            folder("m", mode=0o3777),  # setgid + sticky + world-writable
            file("m/setuid", mode=0o4755),
            file("m/setgid", mode=0o2711),
            file("m/world", mode=0o666),
            file("m/private", mode=0o600),
        ],
    )
    extract_tarball(archive, dest, LIMITS)

    def mode(name: str) -> int:
        return stat.S_IMODE((dest / name).stat().st_mode)

    assert mode(".") == 0o755
    assert mode("m") == 0o755
    assert mode("m/setuid") == 0o755
    assert mode("m/setgid") == 0o755
    assert mode("m/world") == 0o644
    assert mode("m/private") == 0o644


def test_dot_prefixed_names_and_implicit_folders(archive_dir: Path, dest: Path) -> None:
    archive = make_tar(
        archive_dir / "a.tar.gz",
        [folder("."), file("./m/deep/model.onnx"), folder("./m"), file("m//x.pb")],
    )
    extract_tarball(archive, dest, LIMITS)
    assert tree(dest) == {"m", "m/deep", "m/deep/model.onnx", "m/x.pb"}
    assert stat.S_IMODE((dest / "m/deep").stat().st_mode) == 0o755


def test_small_archives_are_not_ratio_bombs(archive_dir: Path, dest: Path) -> None:
    # below RATIO_FLOOR the ratio is not checked: an empty tar is 10 KiB of zeros
    archive = make_tar(archive_dir / "empty.tar.gz", [])
    assert archive.stat().st_size * LIMITS.max_ratio < 20 * 1024
    assert extract_tarball(archive, dest, LIMITS) == dest
    assert tree(dest) == set()
    zeros = make_tar(archive_dir / "zeros.tar.gz", [file("m/z", bytes(900_000))])
    assert zeros.stat().st_size * LIMITS.max_ratio < 900_000
    extract_tarball(zeros, dest.with_name("zeros"), LIMITS)
    assert (dest.with_name("zeros") / "m/z").stat().st_size == 900_000


def test_large_member_streams(archive_dir: Path, dest: Path) -> None:
    data = os.urandom(3 * MiB + 17)
    archive = make_tar(archive_dir / "big.tar.gz", [file("m/model.onnx", data)])
    extract_tarball(archive, dest, LIMITS)
    assert (dest / "m/model.onnx").read_bytes() == data


# hostile members ------------------------------------------------------------------

HOSTILE: dict[str, tuple[list[Member], str, str]] = {
    # id: (members, the refused member's name, reason in the message)
    "dotdot": ([file("../evil.txt")], "../evil.txt", "'..' segment"),
    "dotdot-inside": (
        [*GOOD, file("mnist/../../evil.txt")],
        "mnist/../../evil.txt",
        "'..' segment",
    ),
    "sibling-prefix": (
        [file("../mnist-8_evil/x")],
        "../mnist-8_evil/x",
        "'..' segment",
    ),
    "absolute": ([file("/tmp/evil.txt")], "/tmp/evil.txt", "absolute"),
    "drive-letter": ([file("C:/evil.txt")], "C:/evil.txt", "absolute"),
    "drive-relative": ([file("D:evil.txt")], "D:evil.txt", "absolute"),
    "backslash": ([file("m\\..\\..\\evil")], "m\\..\\..\\evil", "backslash"),
    "control-char": ([file("m/a\x1b[2Jb")], "m/a\x1b[2Jb", "control character"),
    "newline": ([file("m/a\nb")], "m/a\nb", "control character"),
    "not-utf8": ([file("m/\udcff.pb")], "m/\udcff.pb", "not valid UTF-8"),
    "long-segment": ([file("m/" + "a" * 256)], "m/" + "a" * 256, "255 bytes"),
    "symlink-absolute": (
        [special("m/passwd", tarfile.SYMTYPE, "/etc/passwd")],
        "m/passwd",
        "symbolic link",
    ),
    "symlink-relative": (
        [*GOOD, special("mnist/alias.onnx", tarfile.SYMTYPE, "model.onnx")],
        "mnist/alias.onnx",
        "symbolic link",
    ),
    "symlink-then-write-through": (
        [special("m/up", tarfile.SYMTYPE, "../.."), file("m/up/evil.txt")],
        "m/up",
        "symbolic link",
    ),
    "hardlink-inside": (
        [*GOOD, special("mnist/copy.onnx", tarfile.LNKTYPE, "mnist/model.onnx")],
        "mnist/copy.onnx",
        "hard link",
    ),
    "hardlink-outside": (
        [special("m/shadow", tarfile.LNKTYPE, "../../../../etc/shadow")],
        "m/shadow",
        "hard link",
    ),
    "char-device": ([special("m/null", tarfile.CHRTYPE)], "m/null", "character"),
    "block-device": ([special("m/sda", tarfile.BLKTYPE)], "m/sda", "block device"),
    "fifo": ([special("m/pipe", tarfile.FIFOTYPE)], "m/pipe", "FIFO"),
    "sparse": ([special("m/holes", tarfile.GNUTYPE_SPARSE)], "m/holes", "sparse"),
    "unknown-type": ([special("m/vol", b"V")], "m/vol", "not a regular file"),
    "duplicate-file": (
        [*GOOD, file("mnist/model.onnx", b"evil")],
        "mnist/model.onnx",
        "same name",
    ),
    "duplicate-case": (
        [*GOOD, file("mnist/Model.onnx")],
        "mnist/Model.onnx",
        "same name",
    ),
    "duplicate-unicode": (
        [file("m/\u00e9.pb"), file(unicodedata.normalize("NFD", "m/\u00e9.pb"))],
        unicodedata.normalize("NFD", "m/\u00e9.pb"),
        "same name",
    ),
    "duplicate-folder": ([folder("m"), folder("m")], "m", "same name"),
    "file-then-folder": (
        [file("m/x"), folder("m/x")],
        "m/x",
        "file and a folder",
    ),
    "folder-then-file": (
        [folder("m/x"), file("m/x")],
        "m/x",
        "file and a folder",
    ),
    "implicit-folder-then-file": (
        [file("m/x/y"), file("m/x")],
        "m/x",
        "file and a folder",
    ),
    "file-used-as-folder": ([file("m/x"), file("m/x/y")], "m/x/y", "is a file"),
    "nameless-file": ([file("./")], "./", "needs a name"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_member_is_refused(
    tmp_path: Path, archive_dir: Path, dest: Path, case: str
) -> None:
    members, culprit, reason = HOSTILE[case]
    archive = make_tar(archive_dir / "evil.tar.gz", members)
    with pytest.raises(ArchiveError) as caught:
        extract_tarball(archive, dest, LIMITS)
    assert caught.value.message.startswith(f"refused tar member {culprit!r}: ")
    assert reason in caught.value.message
    assert "nothing was extracted" in str(caught.value)
    assert_nothing_written(tmp_path, archive, dest)


def test_hostile_member_after_good_ones_leaves_nothing(
    tmp_path: Path, archive_dir: Path, dest: Path
) -> None:
    big = os.urandom(2 * MiB)
    members = [*GOOD, file("mnist/weights.bin", big), file("../x")]
    archive = make_tar(archive_dir / "late.tar.gz", members)
    with pytest.raises(ArchiveError, match=r"'\.\./x'"):
        extract_tarball(archive, dest, LIMITS)
    assert_nothing_written(tmp_path, archive, dest)


# limits ---------------------------------------------------------------------------


def test_bomb_by_total_size_is_refused_before_writing(
    tmp_path: Path, archive_dir: Path, dest: Path
) -> None:
    members = [file("m/small.pb", b"x" * 1000), file("m/huge.bin", bytes(2 * MiB))]
    archive = make_tar(archive_dir / "bomb.tar.gz", members)
    limits = ArchiveLimits(max_total_bytes=MiB, max_ratio=1e9)
    with pytest.raises(
        ArchiveError, match=r"'m/huge.bin'.*raise HubConfig.archive.max_total_bytes"
    ):
        extract_tarball(archive, dest, limits)
    assert_nothing_written(tmp_path, archive, dest)
    # the same archive passes when the limit allows it
    extract_tarball(
        archive, dest, ArchiveLimits(max_total_bytes=3 * MiB, max_ratio=1e9)
    )
    assert (dest / "m/huge.bin").stat().st_size == 2 * MiB


def test_bomb_in_a_header_is_stopped_while_streaming(
    tmp_path: Path, archive_dir: Path, dest: Path
) -> None:
    # a 16 MiB GNU long name: tarfile would read it all into memory
    members = [file("m/" + "a" * (16 * MiB))]
    archive = make_tar(archive_dir / "longname.tar.gz", members)
    limits = ArchiveLimits(max_total_bytes=2 * MiB, max_ratio=1e9)
    with pytest.raises(ArchiveError, match=r"^longname.tar.gz expands to more than"):
        extract_tarball(archive, dest, limits)
    assert_nothing_written(tmp_path, archive, dest)


def test_bomb_by_member_count(tmp_path: Path, archive_dir: Path, dest: Path) -> None:
    members = [file(f"m/{i}.pb") for i in range(11)]
    archive = make_tar(archive_dir / "many.tar.gz", members)
    with pytest.raises(
        ArchiveError, match=r"'m/10.pb'.*more than 10 members.*archive.max_members"
    ):
        extract_tarball(archive, dest, ArchiveLimits(max_members=10))
    assert_nothing_written(tmp_path, archive, dest)
    extract_tarball(archive, dest, ArchiveLimits(max_members=11))
    assert len(tree(dest)) == 12


def test_bomb_by_ratio(tmp_path: Path, archive_dir: Path, dest: Path) -> None:
    members = [file("m/zeros.bin", bytes(8 * MiB))]
    archive = make_tar(archive_dir / "zeros.tar.gz", members)
    assert archive.stat().st_size < 20 * 1024
    with pytest.raises(
        ArchiveError, match=r"'m/zeros.bin'.*more than 50 times.*archive.max_ratio"
    ):
        extract_tarball(archive, dest, ArchiveLimits(max_ratio=50))
    assert_nothing_written(tmp_path, archive, dest)
    extract_tarball(archive, dest, ArchiveLimits(max_ratio=10_000))
    assert (dest / "m/zeros.bin").stat().st_size == 8 * MiB


def test_trailing_garbage_counts_towards_the_limits(
    tmp_path: Path, archive_dir: Path, dest: Path
) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        member, data = file("m/model.onnx")
        tar.addfile(member, io.BytesIO(data))
    archive = archive_dir / "tail.tar.gz"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(gzip.compress(raw.getvalue() + bytes(4 * MiB)))
    with pytest.raises(ArchiveError, match="max_ratio"):
        extract_tarball(archive, dest, ArchiveLimits(max_ratio=50))
    assert_nothing_written(tmp_path, archive, dest)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_corrupt_archive(
    tmp_path: Path, archive_dir: Path, dest: Path, damage: str
) -> None:
    archive = make_tar(archive_dir / "bad.tar.gz", [file("m/x", os.urandom(50_000))])
    data = archive.read_bytes()
    archive.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "garbage": os.urandom(3000),
            "empty": b"",
        }[damage]
    )
    with pytest.raises(
        ArchiveError, match=r"bad.tar.gz (is corrupt|is not a valid).*force_reload=True"
    ):
        extract_tarball(archive, dest, LIMITS)
    assert_nothing_written(tmp_path, archive, dest)


# destination ----------------------------------------------------------------------


def test_existing_dest_is_returned_untouched(tmp_path: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    (dest / "marker").write_text("earlier extraction")
    missing = tmp_path / "no-such.tar.gz"  # never opened
    assert extract_tarball(missing, dest, LIMITS) == dest
    assert tree(dest) == {"marker"}


@pytest.mark.parametrize("kind", ["file", "symlink"])
def test_dest_that_is_not_a_folder_is_refused(
    tmp_path: Path, archive_dir: Path, dest: Path, kind: str
) -> None:
    archive = make_tar(archive_dir / "a.tar.gz", GOOD)
    dest.parent.mkdir(parents=True)
    if kind == "file":
        dest.write_text("x")
    else:
        (tmp_path / "elsewhere").mkdir()
        dest.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ArchiveError, match="exists and is not a folder"):
        extract_tarball(archive, dest, LIMITS)
    if kind == "symlink":
        assert not list((tmp_path / "elsewhere").iterdir())
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


def test_losing_a_race_returns_the_winners_folder(
    archive_dir: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar(archive_dir / "a.tar.gz", GOOD)
    real = _archive._extract_into
    seen: list[Path] = []

    def racing(archive: Path, temp: Path, limits: ArchiveLimits) -> None:
        real(archive, temp, limits)
        seen.append(temp)
        assert temp.parent == dest.parent
        assert temp.name.startswith(f".{dest.name}.") and temp.name.endswith(
            TEMP_SUFFIX
        )
        dest.mkdir()  # another process finished first
        (dest / "winner").write_text("theirs")

    monkeypatch.setattr(_archive, "_extract_into", racing)
    assert extract_tarball(archive, dest, LIMITS) == dest
    assert tree(dest) == {"winner"}
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]
    assert len(seen) == 1 and not seen[0].exists()


def test_interrupted_extraction_leaves_nothing(
    tmp_path: Path, archive_dir: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = make_tar(archive_dir / "a.tar.gz", GOOD)
    real_write = _archive._write_file
    calls = 0

    def interrupted(*args: object) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        real_write(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_archive, "_write_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_tarball(archive, dest, LIMITS)
    assert_nothing_written(tmp_path, archive, dest)


# find_model_folder ----------------------------------------------------------------


def _layout(root: Path, paths: Sequence[str]) -> Path:
    for path in paths:
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if not path.endswith("/"):
            target.write_bytes(b"")
    return root


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["mnist/model.onnx", "mnist/test_data_set_0/input_0.pb"], "mnist"),
        (["mnist/test_data_set_0/input_0.pb"], "mnist"),  # single folder wins
        (["model.onnx", "test_data_set_0/input_0.pb"], "."),  # model at the top
        (["b/model.onnx", "a/readme.txt", "c/model.onnx"], "b"),
        (["z/x/model.onnx", "a/y/model.onnx", "m/"], "a/y"),
        ([".hidden/model.onnx", "mnist/model.onnx"], "mnist"),
        (["._mnist", "mnist/model.onnx"], "mnist"),  # macOS resource file
        (["a/readme.txt", "b/readme.txt"], "."),
        ([], "."),
    ],
)
def test_find_model_folder(tmp_path: Path, paths: list[str], expected: str) -> None:
    root = _layout(tmp_path / "root", paths)
    root.mkdir(exist_ok=True)
    assert find_model_folder(root) == (root / expected if expected != "." else root)
