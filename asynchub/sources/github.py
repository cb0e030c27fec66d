"""GitHub repos (``owner/name[:ref]``), and the official zoo's Hugging Face mirror.

Manifests come from ``{raw}/{owner}/{name}/{ref}/ONNX_HUB_MANIFEST.json``; files from
Git LFS media ``{media}/{owner}/{name}/{ref}/{path}``, falling back to ``{raw}/...``
for repos without LFS. GitHub stopped serving the official zoo's LFS files on
2025-07-01; the same files (same paths, same SHA-256) live in the Hugging Face repo
``onnxmodelzoo/legacy_models``, which is tried first for ``onnx/models``.
"""

from __future__ import annotations

import re

from ..config import HubConfig
from ..errors import RepoSpecError
from ._source import MANIFEST_NAME, Source

__all__ = (
    "HF_LEGACY_REPO",
    "commit_url",
    "is_commit",
    "looks_like_github",
    "parse",
    "source",
)

HF_LEGACY_REPO = "onnxmodelzoo/legacy_models"
_NAME = r"[A-Za-z0-9_.-]+"
_SPEC = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?::(?P<ref>[^\s:]+))?$")
_REF = re.compile(r"^[A-Za-z0-9_./-]+$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def is_commit(value: str) -> bool:
    """True for a full 40-hex commit id (nothing to pin)."""
    return bool(_COMMIT.match(value))


def commit_url(repo: str, config: HubConfig) -> str:
    """The GitHub API URL that answers a ref's commit id (``Accept: …sha``)."""
    owner, name, ref = parse(repo)
    return f"{config.github_api.rstrip('/')}/repos/{owner}/{name}/commits/{ref}"


def looks_like_github(repo: str) -> bool:
    """True when ``repo`` has the ``owner/name[:ref]`` shape."""
    return bool(_SPEC.match(repo))


def parse(repo: str) -> tuple[str, str, str]:
    """``(owner, name, ref)``; the ref defaults to ``main``. Strict, unlike onnx.hub."""
    match = _SPEC.match(repo)
    if not match:
        raise RepoSpecError(f"{repo!r} is not 'owner/name[:ref]'")
    owner, name, ref = match.group("owner"), match.group("name"), match.group("ref")
    if {owner, name} & {".", ".."}:
        raise RepoSpecError(f"{repo!r}: '.' and '..' are not repo owners or names")
    ref = ref or "main"
    if not _REF.match(ref) or ".." in ref.split("/") or ref.startswith("/"):
        raise RepoSpecError(f"{repo!r} has an invalid ref {ref!r}")
    return owner, name, ref


def source(repo: str, config: HubConfig, commit: str | None = None) -> Source:
    """The Source for a GitHub repo string; with ``commit``, URLs are pinned to it.

    ``spec`` (what trust decisions see) keeps the ref as written either way.
    """
    owner, name, ref = parse(repo)
    official = owner.lower() == "onnx" and name.lower() == "models"
    at = commit or ref
    raw = f"{config.github_raw.rstrip('/')}/{owner}/{name}/{at}/"
    media = f"{config.github_media.rstrip('/')}/{owner}/{name}/{at}/"
    bases: tuple[str, ...] = (media, raw)
    if official:
        hf = f"{config.hf_endpoint.rstrip('/')}/{HF_LEGACY_REPO}/resolve/main/"
        bases = (hf, *bases)
    return Source(
        spec=f"{owner}/{name}:{ref}",
        kind="github",
        manifest_url=raw + MANIFEST_NAME,
        file_bases=bases,
        official=official,
        trusted_by_default=official and ref == "main",
    )
