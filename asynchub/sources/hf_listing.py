"""Build a manifest from a Hugging Face repo's file listing (no network here).

The listing is what ``GET /api/models/{repo}/tree/{commit}?recursive=true`` answers,
page by page: objects with ``type``, ``path``, ``size``, ``oid`` (the git blob id)
and, for files stored in LFS or Xet, ``lfs: {oid, size}`` where ``oid`` is the
file's SHA-256.

Rules (documented in the README):

- every ``.onnx`` file is a candidate entry;
- name and opset come from the file name: ``<name>-<opset>[-<suffix>…].onnx``
  (the zoo's legacy names: ``mnist-8.onnx`` is ``mnist`` at opset 8,
  ``resnet50-v1-12-int8.onnx`` is ``resnet50-v1-int8`` at 12), or a ``_Opset<N>``
  token anywhere in the stem (``resnet18_Opset18_timm.onnx`` is ``resnet18_timm`` at
  18). For a file whose name gives no opset (``onnx/model.onnx``), the caller may
  read the opset from the model itself (:mod:`.hf_opset`) and pass it in
  ``opsets``; its name is then the file's stem, or its path without ``.onnx`` when
  several such files share a stem. Otherwise the file is **left out** (never
  guessed) and reported in :attr:`Listing.skipped`;
- SHA-256 and size come from the LFS metadata; a file without it (a plain git
  file) keeps its size but has no SHA-256, so it is checked by size only and the
  download logs that it could not be verified;
- tags are the folders of the path (as the official zoo's generator made them);
- a ``.tar.gz`` beside the model with the same stem is its ``model_with_data``;
- paths that are not safe relative paths are left out; two names that differ only
  by case at one opset keep the first (by path order).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import UnsafePathError
from ..manifest import Manifest, ManifestEntry, check_relative_path
from ._tags import folder_tags

__all__ = (
    "Listing",
    "TreeFile",
    "build_manifest",
    "next_link",
    "parse_name",
    "unnamed",
)

_LEGACY = re.compile(r"^(?P<name>.+?)-(?P<opset>\d{1,4})(?P<suffix>(?:-[A-Za-z]\w*)*)$")
_OPSET_TOKEN = re.compile(r"[_-]Opset(?P<opset>\d{1,4})(?=$|[_.-])", re.IGNORECASE)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_LINK = re.compile(r'<(?P<url>[^>]*)>\s*;\s*rel="?next"?', re.IGNORECASE)
_TARBALL = ".tar.gz"


@dataclass(frozen=True)
class TreeFile:
    """One file of the listing: path, size, and its SHA-256 when LFS knows it."""

    path: str
    size: int | None
    sha256: str | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> TreeFile | None:
        """A file from one listing object; None for folders and malformed items."""
        if item.get("type") != "file" or not isinstance(item.get("path"), str):
            return None
        lfs = item.get("lfs")
        sha, size = None, item.get("size")
        if isinstance(lfs, Mapping):
            oid = str(lfs.get("oid") or lfs.get("sha256") or "").lower()
            sha = oid if _SHA256.match(oid) else None
            size = lfs.get("size", size)
        size = size if isinstance(size, int) and size >= 0 else None
        return cls(item["path"], size, sha)


@dataclass
class Listing:
    """The files of one repo at one commit, gathered page by page."""

    files: dict[str, TreeFile] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    def add_page(self, items: Iterable[object]) -> None:
        for item in items:
            if isinstance(item, Mapping):
                file = TreeFile.of(item)
                if file is not None:
                    self.files[file.path] = file


def parse_name(file_name: str) -> tuple[str, int] | None:
    """``(model name, opset)`` from an ``.onnx`` file name, or None (never a guess)."""
    stem = file_name[: -len(".onnx")]
    token = _OPSET_TOKEN.search(stem)
    if token:
        name = (stem[: token.start()] + stem[token.end() :]).strip("_-")
        return (name or stem), int(token["opset"])
    legacy = _LEGACY.match(stem)
    if legacy:
        return legacy["name"] + legacy["suffix"], int(legacy["opset"])
    return None


def next_link(value: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, or None on the last page."""
    match = _LINK.search(value or "")
    return match["url"] if match else None


def unnamed(listing: Listing) -> list[TreeFile]:
    """The safe ``.onnx`` files whose name gives no opset (sorted by path)."""
    found = []
    for path in sorted(listing.files):
        name = path.rsplit("/", 1)[-1]
        if path.endswith(".onnx") and parse_name(name) is None and _safe(path):
            found.append(listing.files[path])
    return found


def _safe(path: str) -> bool:
    try:
        check_relative_path(path)
    except UnsafePathError:
        return False
    return True


def _unnamed_names(paths: Iterable[str]) -> dict[str, str]:
    """The stem of each path, or the path without ``.onnx`` if the stem repeats."""
    stems = {p: p.rsplit("/", 1)[-1][: -len(".onnx")] for p in paths}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem.casefold()] = counts.get(stem.casefold(), 0) + 1
    return {
        p: stem if counts[stem.casefold()] == 1 else p[: -len(".onnx")]
        for p, stem in stems.items()
    }


def build_manifest(
    listing: Listing, opsets: Mapping[str, int] | None = None
) -> Manifest:
    """The manifest of every ``.onnx`` file the rules above accept; ``opsets``
    gives the opset read from the model of files whose name has none."""
    read = dict(opsets or {})
    names = _unnamed_names(read)
    entries: list[ManifestEntry] = []
    seen: dict[tuple[str, int], str] = {}
    paths: set[str] = set()
    for path in sorted(listing.files):
        if not path.endswith(".onnx"):
            continue
        file = listing.files[path]
        given = (names[path], read[path]) if path in read else None
        entry = _entry(listing, file, given)
        if entry is None:
            continue
        name = unicodedata.normalize("NFKC", entry.model).casefold()
        clash = seen.setdefault((name, entry.opset_version), entry.model)
        owned = {p.casefold() for p in _paths(entry)}
        if clash != entry.model or owned & paths:
            listing.skipped.append(f"{path}: its name or path differs only by case")
            continue
        paths |= owned
        entries.append(entry)
    return Manifest(entries)


def _paths(entry: ManifestEntry) -> list[str]:
    tarball = entry.metadata.model_with_data_path
    return [entry.model_path, *([tarball] if tarball else [])]


def _entry(
    listing: Listing, file: TreeFile, given: tuple[str, int] | None
) -> ManifestEntry | None:
    try:
        check_relative_path(file.path)
    except UnsafePathError as exc:
        listing.skipped.append(f"{file.path!r}: {exc.message}")
        return None
    named = parse_name(file.path.rsplit("/", 1)[-1]) or given
    if named is None:
        listing.skipped.append(f"{file.path}: no opset in its name or its header")
        return None
    name, opset = named

    meta: dict[str, object] = {"tags": folder_tags(file.path)}
    if file.sha256:
        meta["model_sha"] = file.sha256
    if file.size is not None:
        meta["model_bytes"] = file.size
    meta.update(_tarball(listing, file.path))
    return ManifestEntry.model_validate(
        {
            "model": name,
            "model_path": file.path,
            "opset_version": opset,
            "metadata": meta,
        }
    )


def _tarball(listing: Listing, model_path: str) -> dict[str, object]:
    tar = listing.files.get(model_path[: -len(".onnx")] + _TARBALL)
    if tar is None:
        return {}
    meta: dict[str, object] = {"model_with_data_path": tar.path}
    if tar.sha256:
        meta["model_with_data_sha"] = tar.sha256
    if tar.size is not None:
        meta["model_with_data_bytes"] = tar.size
    return meta
