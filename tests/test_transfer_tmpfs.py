"""Small files on a memory file system: opened and sealed on the loop thread.

The rule (``Context.run_step``): on tmpfs a small file's open and seal take
microseconds, so they skip the worker-thread hops; on a disk they keep them
(``test_transfer_scheduling.py``). The
file system is read from ``/proc/self/mountinfo`` (``asynchub/_fs/mounts.py``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from asynchub._fs.mounts import _fs_type, _mount_types, is_memory_fs, write_cost
from asynchub._transfer import Engine, FileSpec
from asynchub._transfer.context import Context
from asynchub.errors import IntegrityError

from .harness import Server, fast_config, file_server

__all__ = ("file_server",)  # fixtures used here

SHM = Path("/dev/shm")
needs_tmpfs = pytest.mark.skipif(
    not (SHM.is_dir() and os.access(SHM, os.W_OK) and is_memory_fs(SHM)),
    reason="needs a writable tmpfs at /dev/shm",
)

MOUNTINFO = """\
22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw
25 22 0:21 / /dev/shm rw,nosuid,nodev shared:2 - tmpfs tmpfs rw
26 22 0:22 / /mnt/my\\040disk rw - xfs /dev/sdb1 rw
27 26 0:23 / /mnt/my\\040disk/ram rw master:3 - ramfs none rw
28 22 0:24 / /mnt/tmpfs-like rw - ext4 /dev/sdc1 rw
"""


def test_mountinfo_is_read_with_escapes_and_the_deepest_mount_wins() -> None:
    mounts = _mount_types(MOUNTINFO)
    assert _fs_type("/dev/shm/a/b", mounts) == "tmpfs"
    assert _fs_type("/mnt/my disk/x", mounts) == "xfs"
    assert _fs_type("/mnt/my disk/ram/x", mounts) == "ramfs"
    assert _fs_type("/mnt/tmpfs-like/x", mounts) == "ext4"  # a prefix is not a mount
    assert _fs_type("/mnt/my diskette", mounts) == "ext4"  # nor a longer name
    assert _fs_type("/home/u", mounts) == "ext4"


def test_no_mountinfo_means_disk(tmp_path: Path) -> None:
    assert is_memory_fs(SHM, mountinfo=str(tmp_path / "missing")) is False
    assert write_cost(SHM, mountinfo=str(tmp_path / "missing")) == "other"


def test_network_and_fuse_file_systems_are_never_written_on_the_loop(
    tmp_path: Path,
) -> None:
    """Only memory and local disk file systems run small-file steps on the loop
    thread; NFS, SMB and FUSE can block a system call for seconds."""
    here = tmp_path / "mnt"
    lines = [
        "22 1 259:1 / / rw - ext4 /dev/root rw",
        f"30 22 0:30 / {here}/nfs rw - nfs4 server:/export rw",
        f"31 22 0:31 / {here}/smb rw - cifs //srv/share rw",
        f"32 22 0:32 / {here}/fuse rw - fuse.sshfs host: rw",
        f"33 22 0:33 / {here}/box rw - overlay overlay rw",
        f"34 22 0:34 / {here}/ram rw - tmpfs tmpfs rw",
    ]
    for name in ("nfs", "smb", "fuse", "box", "ram"):
        (here / name).mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text("\n".join(lines) + "\n")
    costs = {
        name: write_cost(here / name / "model.onnx", mountinfo=str(mountinfo))
        for name in ("nfs", "smb", "fuse", "box", "ram")
    }
    assert costs == {
        "nfs": "other",
        "smb": "other",
        "fuse": "other",
        "box": "disk",
        "ram": "memory",
    }
    assert write_cost(tmp_path, mountinfo=str(mountinfo)) == "disk"


@needs_tmpfs
def test_a_folder_not_yet_created_is_judged_by_its_parent() -> None:
    assert is_memory_fs(SHM / "asynchub-not-there" / "deeper")


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the functions the engine hands to worker threads."""
    seen: list[str] = []
    submit = Context.submit

    def counting(
        self: Context, fn: Callable[..., Any], *args: Any
    ) -> concurrent.futures.Future[Any]:
        seen.append(getattr(getattr(fn, "func", fn), "__name__", repr(fn)))
        return submit(self, fn, *args)

    monkeypatch.setattr(Context, "submit", counting)
    yield seen


@pytest.fixture
def shm_dir() -> Iterator[Path]:
    folder = SHM / f"asynchub-test-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        yield folder
    finally:
        for path in sorted(folder.rglob("*"), reverse=True) if folder.exists() else []:
            path.rmdir() if path.is_dir() else path.unlink()
        if folder.exists():
            folder.rmdir()


async def _fetch(
    server: Server, dest: Path, data: bytes, sha: str | None = None
) -> None:
    url = server.add(f"/{dest.name}", data)
    digest = sha or hashlib.sha256(data).hexdigest()
    async with Engine(fast_config(fsync=True)) as engine:
        await engine.fetch(FileSpec((url,), dest, digest, len(data)))


@pytest.mark.anyio
@needs_tmpfs
async def test_small_file_on_tmpfs_takes_no_thread_hop(
    file_server: Server, shm_dir: Path, hops: list[str]
) -> None:
    data = os.urandom(64 * 1024)
    await _fetch(file_server, shm_dir / "d" / "f.onnx", data)
    assert (shm_dir / "d" / "f.onnx").read_bytes() == data
    assert [h for h in hops if h in ("begin", "_seal", "_sealed", "sync_all")] == []
    assert sorted(p.name for p in (shm_dir / "d").iterdir()) == ["f.onnx"]


@pytest.mark.anyio
@needs_tmpfs
async def test_a_wrong_hash_on_tmpfs_still_leaves_nothing(
    file_server: Server, shm_dir: Path
) -> None:
    with pytest.raises(IntegrityError):
        await _fetch(file_server, shm_dir / "f.onnx", b"x" * 1000, sha="0" * 64)
    assert list(shm_dir.iterdir()) == []


@pytest.mark.anyio
@needs_tmpfs
async def test_a_big_last_batch_on_tmpfs_is_sealed_in_a_thread(
    file_server: Server, shm_dir: Path, hops: list[str]
) -> None:
    """Hashing up to 1 MiB on the loop would hold up every other transfer."""
    from asynchub._transfer.job import INLINE_TAIL

    data = os.urandom(INLINE_TAIL + 1)
    await _fetch(file_server, shm_dir / "f.onnx", data)
    assert (shm_dir / "f.onnx").read_bytes() == data
    assert [h for h in hops if h in ("begin", "_sealed")] == ["_sealed"]
