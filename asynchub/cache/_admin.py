"""Look after the cache: list it, re-verify it, prune it, measure it.

These back ``asynchub cache ls | verify | prune | du``. They walk the cache folder
(onnx.hub's layout, see :mod:`asynchub.cache._layout`) and block: call them in a worker
thread from async code.

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

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._transfer import (
    LOCK_SUFFIX,
    PART_SUFFIX,
    STATE_SUFFIX,
    STATE_TMP_SUFFIX,
    is_held,
    may_be_owned,
)
from ..config import OFFICIAL_REPO, ArchiveLimits
from ..errors import ArchiveError, ManifestError, ModelNotFoundError
from ..manifest import Manifest
from ._archive import TEMP_SUFFIX as EXTRACT_SUFFIX
from ._archive import member_digests
from ._layout import STATE_DIR, is_regular, sha256_file
from ._manifests import shipped_manifest_bytes

__all__ = (
    "CachedItem",
    "CorruptFile",
    "DiskUsage",
    "PruneResult",
    "VerifyResult",
    "disk_usage",
    "known_manifests",
    "RemoveResult",
    "list_cache",
    "prune",
    "remove_model",
    "verify",
)

Kind = Literal["model", "tarball", "extracted", "temp", "other"]
_SHA_NAME = re.compile(r"^([0-9a-f]{64})_(.+)$")
_OLD_SUFFIX = ".asynchub-old"
_ORPHAN_GRACE = 60.0  # a temp file without a live owner is left alone this long


@dataclass(frozen=True)
class CachedItem:
    """One cached file or extracted folder.

    Attributes:
        path: POSIX path relative to the cache root.
        kind: ``model``, ``tarball``, ``extracted``, ``temp`` or ``other``.
        size: Bytes (a folder's is the sum of its files).
        sha256: The digest in the name, if the name carries one.
        manifest_path: The ``model_path`` (or tarball path) this caches, if known.
        model: The model's name, from a known manifest.
        opset: The model's opset, from a known manifest.
        repo: The repo whose cached manifest lists it (``onnx/models:main`` for
            the shipped one; a URL for other repos and local folders).
        last_used: When it was last read (the file's access time, Unix seconds;
            most systems update it at most once a day).
    """

    path: str
    kind: Kind
    size: int
    sha256: str | None = None
    manifest_path: str | None = None
    model: str | None = None
    opset: int | None = None
    repo: str | None = None
    last_used: float | None = None


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


@dataclass
class _Index:
    """Known manifest paths by (path, sha), with the entry they come from."""

    files: dict[tuple[str, str | None], tuple[str, int, str | None]] = field(
        default_factory=dict
    )
    paths: set[str] = field(default_factory=set)

    def add(self, manifest: Manifest, repo: str | None = None) -> None:
        for entry in manifest:
            meta, who = entry.metadata, (entry.model, entry.opset_version, repo)
            self.files.setdefault((entry.model_path, meta.model_sha), who)
            self.paths.add(entry.model_path)
            if meta.model_with_data_path is not None:
                key = (meta.model_with_data_path, meta.model_with_data_sha)
                self.files.setdefault(key, who)
                self.paths.add(meta.model_with_data_path)

    def lookup(
        self, path: str | None, sha: str | None
    ) -> tuple[str, int, str | None] | None:
        return None if path is None else self.files.get((path, sha))


def known_manifests(root: Path) -> list[Manifest]:
    """The shipped official manifest and every manifest cached under ``root``."""
    return [manifest for manifest, _ in _known_with_repos(root)]


def _known_with_repos(root: Path) -> list[tuple[Manifest, str | None]]:
    """The shipped manifest (as ``onnx/models:main``), then every cached one with
    the repo it came from; the first that lists a file names its model."""
    found: list[tuple[Manifest, str | None]] = []
    folder = root / STATE_DIR / "manifests"
    for path in sorted(folder.glob("*.json")):
        if path.name.endswith(".meta.json"):
            continue
        with contextlib.suppress(OSError, ManifestError):
            manifest = Manifest.parse(path.read_bytes(), source=str(path))
            found.append((manifest, _repo_of(path)))
    shipped = Manifest.parse(shipped_manifest_bytes(), source="shipped manifest")
    found.insert(0, (shipped, OFFICIAL_REPO))
    return found


def _repo_of(manifest_copy: Path) -> str | None:
    """The repo a cached manifest copy was read from (its URL, shortened)."""
    meta = manifest_copy.with_name(manifest_copy.stem + ".meta.json")
    try:
        url = str(json.loads(meta.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    for suffix in ("/ONNX_HUB_MANIFEST.json", "ONNX_HUB_MANIFEST.json"):
        url = url.removesuffix(suffix)
    return url.removeprefix("file://")


def list_cache(
    root: Path,
    manifests: Iterable[Manifest] | None = None,
    *,
    include_temp: bool = False,
) -> list[CachedItem]:
    """Cached models, tarballs and extracted folders (and leftovers if asked),
    sorted by path."""
    index = _index(root, manifests)
    items = (i for i in _scan(root, index) if include_temp or i.kind != "temp")
    return sorted(items, key=lambda item: item.path)


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
    index = _index(root, manifests)
    doomed, busy = [], []
    for item in _scan(root, index):
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
    for item in _scan(root, _Index()):
        by_kind[item.kind] = by_kind.get(item.kind, 0) + item.size
        files += 1
    state = _tree_size(root / STATE_DIR)
    total = sum(by_kind.values()) + state
    return DiskUsage(str(root), by_kind, state, total, files)


def _index(root: Path, manifests: Iterable[Manifest] | None) -> _Index:
    index = _Index()
    if manifests is None:
        for manifest, repo in _known_with_repos(root):
            index.add(manifest, repo)
        return index
    for manifest in manifests:
        index.add(manifest)
    return index


def _scan(root: Path, index: _Index) -> Iterator[CachedItem]:
    """Every item under ``root`` except ``.asynchub/``; folders of kind
    ``extracted`` or ``temp`` are one item each."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root and STATE_DIR in dirs:
            dirs.remove(STATE_DIR)
        whole = [d for d in dirs if _folder_kind(d) is not None]
        dirs[:] = sorted(d for d in dirs if d not in whole)
        for name in whole:
            yield _item(root, here / name, index, _tree_size(here / name))
        for name in files:
            with contextlib.suppress(OSError):
                info = (here / name).lstat()
                yield _item(root, here / name, index, info.st_size, info.st_atime)


def _folder_kind(name: str) -> Kind | None:
    if name.endswith((_OLD_SUFFIX, EXTRACT_SUFFIX)):
        return "temp"
    return "extracted" if _SHA_NAME.match(name) else None


def _file_kind(name: str) -> Kind:
    if name.endswith((PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX, LOCK_SUFFIX)):
        return "temp"
    if name.endswith(_OLD_SUFFIX):
        return "temp"
    if name.endswith(".onnx"):
        return "model"
    return "tarball" if name.endswith((".tar.gz", ".tgz", ".tar")) else "other"


def _item(
    root: Path, path: Path, index: _Index, size: int, used: float | None = None
) -> CachedItem:
    relative = path.relative_to(root).as_posix()
    is_dir = path.is_dir() and not path.is_symlink()
    kind = (_folder_kind(path.name) if is_dir else _file_kind(path.name)) or "other"
    sha, manifest_path = _origin(relative, kind)
    who = index.lookup(manifest_path, sha)
    return CachedItem(
        path=relative,
        kind=kind,
        size=size,
        sha256=sha,
        manifest_path=manifest_path,
        model=who[0] if who else None,
        opset=who[1] if who else None,
        repo=who[2] if who else None,
        last_used=used,
    )


def _origin(relative: str, kind: Kind) -> tuple[str | None, str | None]:
    """The SHA-256 in a cached name and the manifest path it caches."""
    if kind == "temp":
        return None, None
    folder, _, name = relative.rpartition("/")
    match = _SHA_NAME.match(name)
    sha, plain = (match.group(1), match.group(2)) if match else (None, name)
    if kind == "extracted":
        plain = plain[:-2] if plain.endswith(".d") else plain + ".tar.gz"
    return sha, f"{folder}/{plain}" if folder else plain


def _prune_reason(
    root: Path, item: CachedItem, index: _Index, superseded: bool, unlisted: bool
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
    if name.endswith(_OLD_SUFFIX):
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


def _tree_size(folder: Path) -> int:
    total = 0
    for here, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, name)).st_size
    return total
