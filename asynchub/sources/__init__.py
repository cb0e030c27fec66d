"""Where a hub lives: turn a ``repo`` string into manifest and file URLs.

A repo string is one of:

- ``owner/name[:ref]`` — a GitHub repo (:mod:`asynchub.sources.github`); the official
  ``onnx/models`` zoo gets its files from the Hugging Face mirror first;
- an ``http://`` or ``https://`` URL of a folder holding ``ONNX_HUB_MANIFEST.json``
  (:mod:`asynchub.sources.http`);
- ``hf://OWNER/NAME[@REVISION]`` — a Hugging Face model repo
  (:mod:`asynchub.sources.hf`), with or without its own manifest;
- a local folder or ``file://`` URL with the same layout
  (:mod:`asynchub.sources.local`).

A relative folder whose name looks like ``owner/name`` is taken as GitHub; write it as
``./owner/name`` to mean the folder.
"""

from __future__ import annotations

from ..config import HubConfig
from ..errors import RepoSpecError
from . import github, hf, http, local
from ._source import MANIFEST_NAME, Source
from ._tags import folder_tags

__all__ = ("MANIFEST_NAME", "Source", "folder_tags", "resolve_repo")


def resolve_repo(repo: str, config: HubConfig) -> Source:
    """The :class:`Source` for a repo string; raise RepoSpecError if it is none."""
    if not isinstance(repo, str) or not repo.strip():
        raise RepoSpecError(f"repo must be a non-empty string, not {repo!r}")
    repo = repo.strip()
    if hf.looks_like_hf(repo):
        return hf.source(repo, config)
    if repo.startswith(("http://", "https://")):
        return http.source(repo)
    if local.looks_local(repo):
        return local.source(repo)
    if github.looks_like_github(repo):
        return github.source(repo, config)
    raise RepoSpecError(f"{repo!r} is not a repo this client understands")
