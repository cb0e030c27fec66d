"""Which file system a folder is on, as far as the cost of writing there matters.

On a memory file system (tmpfs, ramfs) opening, writing, fsync and rename take
microseconds, less than handing the work to a worker thread and back; the engine
then runs a small file's steps on the event loop thread (``_transfer/context.py``).
On a local disk file system (:data:`LOCAL_DISK_FILE_SYSTEMS`) it does too, all but
the fsync. Elsewhere (network and FUSE file systems, which can block for seconds,
and any system without ``/proc/self/mountinfo``) the work stays in worker threads.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = (
    "LOCAL_DISK_FILE_SYSTEMS",
    "MEMORY_FILE_SYSTEMS",
    "is_memory_fs",
    "write_cost",
)

MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
LOCAL_DISK_FILE_SYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "bcachefs", "zfs", "overlay"}
)
"""Block-device file systems (and overlay, a container's root over one)."""

_MOUNTINFO = "/proc/self/mountinfo"


def is_memory_fs(path: Path, mountinfo: str = _MOUNTINFO) -> bool:
    """Whether ``path`` (or, while it does not exist, its nearest existing
    ancestor) is on a memory file system. Blocking (reads ``/proc``): cache it."""
    return write_cost(path, mountinfo) == "memory"


def write_cost(path: Path, mountinfo: str = _MOUNTINFO) -> str:
    """``"memory"``, ``"disk"`` (a local disk file system) or ``"other"`` for the
    file system of ``path`` (or its nearest existing ancestor). Blocking."""
    try:
        with open(mountinfo, encoding="utf-8", errors="replace") as file:
            mounts = _mount_types(file.read())
    except OSError:
        return "other"
    kind = _fs_type(_existing(path), mounts)
    if kind in MEMORY_FILE_SYSTEMS:
        return "memory"
    return "disk" if kind in LOCAL_DISK_FILE_SYSTEMS else "other"


def _existing(path: Path) -> str:
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    return os.path.realpath(current)


def _mount_types(text: str) -> dict[str, str]:
    """Mount point → file-system type, from ``mountinfo`` lines (proc(5)):
    ``ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - TYPE SOURCE SUPER``."""
    mounts: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        after = fields[fields.index("-") + 1 :]
        if after:
            mounts[_unescape(fields[4])] = after[0]  # later mounts hide earlier ones
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n")):
        field = field.replace(code, char)
    return field.replace("\\134", "\\")


def _fs_type(path: str, mounts: dict[str, str]) -> str | None:
    best, found = -1, None
    for point, kind in mounts.items():
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, found = len(point), kind
    return found
