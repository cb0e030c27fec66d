"""Walk the cache and say what each item is: a model, a tarball, an extracted
folder, a leftover, or something else, and which manifest entry it caches.

The shared ground of ``cache ls``, ``hub.scan_cache()`` and the maintenance commands
of :mod:`._admin` (verify, prune, du, rm), which act on what this finds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .._transfer import LOCK_SUFFIX, PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX
from ..config import OFFICIAL_REPO
from ..errors import ManifestError
from ..manifest import Manifest
from ..sources import MANIFEST_NAME
from ._archive import TEMP_SUFFIX as EXTRACT_SUFFIX
from ._layout import STATE_DIR
from ._manifests import shipped_manifest_bytes

__all__ = (
    "OLD_SUFFIX",
    "SHA_NAME",
    "CachedItem",
    "Index",
    "Kind",
    "build_index",
    "file_kind",
    "folder_kind",
    "known_manifests",
    "known_with_repos",
    "list_cache",
    "scan",
    "tree_size",
)

Kind = Literal["model", "tarball", "extracted", "temp", "other"]
SHA_NAME = re.compile(r"^([0-9a-f]{64})_(.+)$")
"""A cached name: ``<sha256>_<name>``."""
OLD_SUFFIX = ".asynchub-old"
"""A folder being deleted."""


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


@dataclass
class Index:
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
    return [manifest for manifest, _ in known_with_repos(root)]


def known_with_repos(root: Path) -> list[tuple[Manifest, str | None]]:
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
    for suffix in ("/" + MANIFEST_NAME, MANIFEST_NAME):
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
    index = build_index(root, manifests)
    items = (i for i in scan(root, index) if include_temp or i.kind != "temp")
    return sorted(items, key=lambda item: item.path)


def build_index(root: Path, manifests: Iterable[Manifest] | None) -> Index:
    index = Index()
    if manifests is None:
        for manifest, repo in known_with_repos(root):
            index.add(manifest, repo)
        return index
    for manifest in manifests:
        index.add(manifest)
    return index


def scan(root: Path, index: Index) -> Iterator[CachedItem]:
    """Every item under ``root`` except ``.asynchub/``; folders of kind
    ``extracted`` or ``temp`` are one item each."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        if here == root and STATE_DIR in dirs:
            dirs.remove(STATE_DIR)
        whole = [d for d in dirs if folder_kind(d) is not None]
        dirs[:] = sorted(d for d in dirs if d not in whole)
        for name in whole:
            yield _item(root, here / name, index, tree_size(here / name))
        for name in files:
            with contextlib.suppress(OSError):
                info = (here / name).lstat()
                yield _item(root, here / name, index, info.st_size, info.st_atime)


def folder_kind(name: str) -> Kind | None:
    if name.endswith((OLD_SUFFIX, EXTRACT_SUFFIX)):
        return "temp"
    return "extracted" if SHA_NAME.match(name) else None


def file_kind(name: str) -> Kind:
    if name.endswith((PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX, LOCK_SUFFIX)):
        return "temp"
    if name.endswith(OLD_SUFFIX):
        return "temp"
    if name.endswith(".onnx"):
        return "model"
    return "tarball" if name.endswith((".tar.gz", ".tgz", ".tar")) else "other"


def _item(
    root: Path, path: Path, index: Index, size: int, used: float | None = None
) -> CachedItem:
    relative = path.relative_to(root).as_posix()
    is_dir = path.is_dir() and not path.is_symlink()
    kind = (folder_kind(path.name) if is_dir else file_kind(path.name)) or "other"
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
    match = SHA_NAME.match(name)
    sha, plain = (match.group(1), match.group(2)) if match else (None, name)
    if kind == "extracted":
        plain = plain[:-2] if plain.endswith(".d") else plain + ".tar.gz"
    return sha, f"{folder}/{plain}" if folder else plain


def tree_size(folder: Path) -> int:
    total = 0
    for here, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(here, name)).st_size
    return total
