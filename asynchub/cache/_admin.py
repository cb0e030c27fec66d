"""Look after the cache: list it, re-verify it, prune it, measure it, remove a model.

These back ``asynchub cache ls | verify | prune | du | rm``. They walk the cache
folder (onnx.hub's layout, see :mod:`asynchub.cache._layout`; what each item is,
:mod:`._scan`, whose ``list_cache`` and ``known_manifests`` are here too) and
block: call them in a worker thread from async code.

What they recognise:

- ``<sha256>_<name>.onnx`` / ``.tar.gz`` — cached models and tarballs; the digest in
  the name is what ``verify`` checks the content against;
- ``<sha256>_<name>/`` beside a tarball — its extracted folder;
- the transfer engine's leftovers (``.asynchub-part``, ``-state``, ``-lock``),
  interrupted extractions (``.asynchub-extract``) and folders being deleted
  (``.asynchub-old``);
- ``.asynchub/`` — asynchub's own state (verified markers, manifests, trust list).

``prune`` never touches a partial download whose owner process is still alive, nor
a lock somebody holds: a download running in another process keeps going.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .._transfer import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX, is_held, may_be_owned
from ..config import ArchiveLimits
from ..errors import ArchiveError, ModelNotFoundError
from ..manifest import Manifest
from ._archive import member_digests
from ._layout import STATE_DIR, is_regular, sha256_file
from ._scan import (
    OLD_SUFFIX,
    CachedItem,
    Index,
    build_index,
    known_manifests,
    list_cache,
    scan,
    tree_size,
)

__all__ = (
    "CachedItem",
    "CorruptFile",
    "DiskUsage",
    "PruneResult",
    "RemoveResult",
    "VerifyResult",
    "disk_usage",
    "known_manifests",
    "list_cache",
    "prune",
    "remove_model",
    "verify",
)

_ORPHAN_GRACE = 60.0  # a temp file without a live owner is left alone this long


@dataclass(frozen=True)
class RemoveResult:
    """What ``remove_model`` removed: cache-relative paths and bytes freed."""

    removed: list[str]
    freed: int


@dataclass(frozen=True)
class CorruptFile:
    """A file whose content is not what its name (or its tarball) says.

    For an extracted folder, ``path`` is the folder and ``member`` the first file in
    it that differs from the tarball (``actual`` is ``"missing"`` if it is gone).
    """

    path: str
    expected: str
    actual: str
    member: str | None = None


@dataclass(frozen=True)
class VerifyResult:
    """What ``verify`` found: every hashed file, the corrupt ones, what it removed."""

    checked: int
    corrupt: list[CorruptFile]
    unverifiable: list[str]
    removed: list[str]

    @property
    def ok(self) -> bool:
        return not self.corrupt


@dataclass(frozen=True)
class PruneResult:
    """What ``prune`` removed (or would remove, with ``dry_run``) and kept."""

    removed: list[str]
    freed: int
    busy: list[str]
    dry_run: bool


@dataclass(frozen=True)
class DiskUsage:
    """Bytes per kind of item, and the total, under one cache root."""

    root: str
    by_kind: dict[str, int]
    state: int
    total: int
    files: int


def remove_model(root: Path, model: str, opset: int | None = None) -> RemoveResult:
    """Remove one model's cached files, tarballs, extracted folders and markers.

    Args:
        model: The name (case-insensitive), as ``cache ls`` shows it.
        opset: Only this opset; None removes every cached opset.

    Raises:
        ModelNotFoundError: Nothing cached is that model (at that opset).
    """
    items = [
        item
        for item in list_cache(root)
        if item.model is not None
        and item.model.casefold() == model.casefold()
        and (opset is None or item.opset == opset)
    ]
    if not items:
        from .._suggest import did_you_mean

        cached = {i.model for i in list_cache(root) if i.model}
        at = "" if opset is None else f" at opset {opset}"
        raise ModelNotFoundError(
            f"{model}{at} is not in the cache at {root}{did_you_mean(model, cached)}",
            hint="'asynchub cache ls' or hub.scan_cache() lists what is cached",
        )
    removed = [i for i in items if _remove(root / i.path)]
    _prune_markers(root)
    for item in removed:
        _remove_empty_parents(root, root / item.path)
    return RemoveResult(sorted(i.path for i in removed), sum(i.size for i in removed))


def verify(root: Path, *, fix: bool = False) -> VerifyResult:
    """Re-hash every cached file whose name carries a SHA-256, and compare every
    extracted folder with its tarball, ignoring verified markers.

    Args:
        fix: Remove what is corrupt, so the next ``load`` downloads (or extracts)
            it again.
    """
    checked, corrupt, unverifiable = 0, [], []
    for item in list_cache(root, manifests=[]):
        if item.kind not in ("model", "tarball", "extracted"):
            continue
        found = _verify_item(root, item)
        if found is None:
            unverifiable.append(item.path)
        else:
            checked += 1
            corrupt += found
    removed = [c.path for c in corrupt if fix and _remove(root / c.path)]
    return VerifyResult(checked, corrupt, unverifiable, removed)


def _verify_item(root: Path, item: CachedItem) -> list[CorruptFile] | None:
    """What is corrupt in one item; None when there is nothing to compare with."""
    if item.kind == "extracted":
        return _verify_extracted(root, item.path)
    if item.sha256 is None:
        return None
    actual = _digest_or(root / item.path, "not a regular file")
    return (
        [] if actual == item.sha256 else [CorruptFile(item.path, item.sha256, actual)]
    )


def _digest_or(path: Path, otherwise: str) -> str:
    """SHA-256 of a regular file; ``otherwise`` for a link, FIFO or nothing."""
    return sha256_file(path) if is_regular(path) else otherwise


def _verify_extracted(root: Path, relative: str) -> list[CorruptFile] | None:
    """Compare an extracted folder with its tarball (None: no tarball to compare).

    A folder with a missing or changed file is reported once, as a whole, so that
    ``fix`` removes it and the next load extracts it again from the tarball.
    """
    tarball = root / (relative + ".tar.gz")
    if not tarball.is_file():
        return None
    try:
        expected = member_digests(tarball, ArchiveLimits())
    except ArchiveError:
        return None
    folder = root / relative
    for name, digest in sorted(expected.items()):
        path = folder / name
        actual = _digest_or(path, "missing")
        if actual != digest:
            return [CorruptFile(relative, digest, actual, member=name)]
    return []


def prune(
    root: Path,
    *,
    manifests: Iterable[Manifest] | None = None,
    superseded: bool = True,
    unlisted: bool = False,
    dry_run: bool = False,
) -> PruneResult:
    """Remove temporary leftovers and cached files that no manifest wants.

    Args:
        manifests: The manifests whose files are kept; None means every manifest
            cached under ``root`` plus the shipped official one.
        superseded: Remove files (and extracted folders) whose path a manifest
            lists with another SHA-256: older versions of a model.
        unlisted: Also remove files whose path no manifest lists. Off by default:
            files fetched from a local-folder repo are in no cached manifest.
        dry_run: Report what would be removed, remove nothing.

    Files whose names carry no SHA-256 are always kept.
    """
    index = build_index(root, manifests)
    doomed, busy = [], []
    for item in scan(root, index):
        reason = _prune_reason(root, item, index, superseded, unlisted)
        if reason == "busy":
            busy.append(item.path)
        elif reason:
            doomed.append(item)
    removed = [i for i in doomed if dry_run or _remove(root / i.path)]
    if not dry_run:
        _prune_markers(root)
    freed = sum(i.size for i in removed)
    return PruneResult(sorted(i.path for i in removed), freed, sorted(busy), dry_run)


def disk_usage(root: Path) -> DiskUsage:
    """Bytes under ``root`` by kind (model, tarball, extracted, temp, other)."""
    by_kind: dict[str, int] = {}
    files = 0
    for item in scan(root, Index()):
        by_kind[item.kind] = by_kind.get(item.kind, 0) + item.size
        files += 1
    state = tree_size(root / STATE_DIR)
    total = sum(by_kind.values()) + state
    return DiskUsage(str(root), by_kind, state, total, files)


def _prune_reason(
    root: Path, item: CachedItem, index: Index, superseded: bool, unlisted: bool
) -> str | None:
    """``"temp"``, ``"superseded"`` or ``"unlisted"`` to remove, ``"busy"`` to keep
    and say so, or None to keep."""
    if item.kind == "temp":
        return "busy" if _in_use(root / item.path) else "temp"
    if item.sha256 is None or item.kind == "other" or item.model is not None:
        return None
    if item.manifest_path in index.paths:
        return "superseded" if superseded else None
    return "unlisted" if unlisted else None


def _in_use(path: Path) -> bool:
    """True when a live download or extraction may still own a temp item."""
    name = path.name
    if name.endswith(OLD_SUFFIX):
        return False
    if name.endswith(LOCK_SUFFIX):
        return is_held(path)
    if name.endswith((PART_SUFFIX, STATE_SUFFIX)):
        return may_be_owned(path)
    return _young(path)


def _young(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime < _ORPHAN_GRACE
    except OSError:
        return False


def _prune_markers(root: Path) -> None:
    """Remove verified markers whose file is gone."""
    folder = root / STATE_DIR / "verified"
    for marker in folder.glob("*.json"):
        try:
            path = json.loads(marker.read_text())["path"]
        except (OSError, ValueError, KeyError, TypeError):
            path = None
        if not isinstance(path, str) or not (root / path).is_file():
            marker.unlink(missing_ok=True)


def _remove(path: Path) -> bool:
    """Remove a file or folder; True when it is gone."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError:
        return False
    return True


def _remove_empty_parents(root: Path, path: Path) -> None:
    """Remove the folders above ``path`` that are now empty, up to ``root``."""
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty (or gone): stop here
            return
