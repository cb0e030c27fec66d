"""What a mirror or cache fill will fetch: selection, files, shards (no I/O here).

Selection applies the filters in a fixed order (names, opsets, tags, then
``latest_only``), so the same arguments always select the same entries. Each entry
gives one or two files (the model, and with ``with_data`` its tarball); files are
deduplicated by path.

Sharding splits *files*, not entries: a file belongs to shard
``int(sha256(path)[:8]) % N``. A file's shard depends on its path alone, so shards
agree even when they read the manifest at slightly different times, and the N
shards cover the selection exactly once (each file is in exactly one shard).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .._suggest import did_you_mean
from ..errors import (
    ConfigError,
    ManifestParseError,
    ModelNotFoundError,
    OpsetNotFoundError,
    UnsafePathError,
)
from ..manifest import Manifest, ManifestEntry, check_relative_path
from ..sources import MANIFEST_NAME as _MANIFEST_NAME

__all__ = (
    "PlannedFile",
    "check_mirror_path",
    "entry_files",
    "format_bytes",
    "parse_shard",
    "select_entries",
    "shard_of",
    "unique_files",
)

Shard = tuple[int, int]
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class PlannedFile:
    """One file of the selection: its manifest path, digest and size."""

    path: str
    sha256: str | None
    size: int | None


def parse_shard(shard: Shard | str | None) -> Shard | None:
    """``"I/N"`` or ``(I, N)`` → ``(I, N)`` with ``0 <= I < N``; None stays None.

    Raises:
        ConfigError: The value is not two integers with ``0 <= I < N``.
    """
    if shard is None:
        return None
    if isinstance(shard, str):
        match = _SHARD.match(shard)
        if not match:
            raise ConfigError(
                f"shard {shard!r} is not 'I/N'",
                hint="write the 0-based shard index and the count, e.g. 0/4",
            )
        shard = (int(match.group(1)), int(match.group(2)))
    index, count = shard
    if count < 1 or not 0 <= index < count:
        raise ConfigError(
            f"shard {index}/{count} is out of range",
            hint="the index is 0-based: use 0/N … (N-1)/N with N >= 1",
        )
    return index, count


def shard_of(path: str, count: int) -> int:
    """The shard (``0 … count-1``) a file path belongs to; stable across runs."""
    digest = hashlib.sha256(path.encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_entries(
    manifest: Manifest,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
) -> list[ManifestEntry]:
    """Entries matching every filter, in manifest order.

    Args:
        models: Names to keep (case-insensitive); each must exist.
        tags: Keep entries with any of these tags (case-insensitive).
        opsets: Keep entries at these opsets; a named model must have one of them.
        latest_only: Keep only the highest remaining opset of each model.

    Raises:
        ModelNotFoundError: A name in ``models`` is in no entry.
        OpsetNotFoundError: A named model has none of ``opsets``.
    """
    entries = list(manifest)
    if models is not None:
        entries = _by_name(entries, models)
    if opsets is not None:
        entries = _by_opset(entries, models, opsets)
    if tags is not None:
        wanted = {t.lower() for t in tags}
        entries = [e for e in entries if wanted & _tags(e)]
    return _latest(entries) if latest_only else entries


def _tags(entry: ManifestEntry) -> set[str]:
    return {t.lower() for t in entry.metadata.tags}


def _by_name(
    entries: list[ManifestEntry], models: Sequence[str]
) -> list[ManifestEntry]:
    present = {e.model.lower() for e in entries}
    missing = [m for m in models if m.lower() not in present]
    if missing:
        names = [e.model for e in entries]
        hints = "".join(did_you_mean(m, names) for m in missing[:1])
        raise ModelNotFoundError(
            f"No models found with name {', '.join(missing)}{hints}"
        )
    wanted = {m.lower() for m in models}
    return [e for e in entries if e.model.lower() in wanted]


def _by_opset(
    entries: list[ManifestEntry],
    models: Sequence[str] | None,
    opsets: Sequence[int],
) -> list[ManifestEntry]:
    kept = [e for e in entries if e.opset_version in set(opsets)]
    for name in models or ():
        if not any(e.model.lower() == name.lower() for e in kept):
            valid = sorted(e.opset_version for e in entries if _named(e, name))
            raise OpsetNotFoundError(
                f"{name} has no version with opset {list(opsets)}. "
                f"Valid opsets: {valid}",
                valid=valid,
            )
    return kept


def _named(entry: ManifestEntry, name: str) -> bool:
    return entry.model.lower() == name.lower()


def _latest(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    best: dict[str, ManifestEntry] = {}
    for entry in entries:
        key = entry.model.lower()
        if key not in best or entry.opset_version > best[key].opset_version:
            best[key] = entry
    chosen = {id(e) for e in best.values()}
    return [e for e in entries if id(e) in chosen]


def entry_files(entry: ManifestEntry, with_data: bool) -> list[PlannedFile]:
    """The model file of an entry, and its tarball when asked and listed."""
    meta = entry.metadata
    files = [PlannedFile(entry.model_path, meta.model_sha, meta.model_bytes)]
    if with_data and meta.model_with_data_path is not None:
        files.append(
            PlannedFile(
                meta.model_with_data_path,
                meta.model_with_data_sha,
                meta.model_with_data_bytes,
            )
        )
    return files


def unique_files(
    entries: Iterable[ManifestEntry], with_data: bool
) -> list[PlannedFile]:
    """Every file of ``entries`` once, in order.

    Raises:
        ManifestParseError: One path is listed with two different SHA-256 digests.
    """
    seen: dict[str, PlannedFile] = {}
    for entry in entries:
        for file in entry_files(entry, with_data):
            earlier = seen.setdefault(file.path, file)
            if earlier.sha256 != file.sha256:
                raise ManifestParseError(
                    f"{file.path} is listed twice with different SHA-256 digests "
                    f"({earlier.sha256} and {file.sha256})"
                )
    return list(seen.values())


def check_mirror_path(path: str) -> str:
    """Refuse paths that would land on the manifest or in a hidden folder.

    ``check_relative_path`` already refuses escapes; a mirror additionally keeps
    ``.asynchub/`` (its markers), temp files and the manifest itself out of reach
    of a hostile entry.

    Raises:
        UnsafePathError: The path is unsafe or reserved.
    """
    check_relative_path(path)
    if path == _MANIFEST_NAME or any(s.startswith(".") for s in path.split("/")):
        raise UnsafePathError(
            f"unsafe path {path!r}: it is the manifest or inside a hidden folder"
        )
    return path


def format_bytes(size: float) -> str:
    """``1536`` → ``'1.5 KiB'``: sizes for people (binary units)."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    index = 0
    while abs(size) >= 1024 and index < len(units) - 1:
        size /= 1024
        index += 1
    return f"{size:.0f} B" if index == 0 else f"{size:.1f} {units[index]}"
