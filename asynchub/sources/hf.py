"""Hugging Face model repos as hubs: ``hf://OWNER/NAME[@REVISION]``.

The form is the one ``huggingface_hub``'s ``HfFileSystem`` uses. The revision (a
branch, tag or commit; ``main`` when left out) is pinned to one commit per operation
through the revision API (``GET {endpoint}/api/models/{repo}/revision/{rev}``), and
every file comes from ``{endpoint}/{repo}/resolve/{commit}/{path}``. A repo with an
``ONNX_HUB_MANIFEST.json`` uses it; any other repo gets a manifest built from its
file listing (:mod:`asynchub.sources.hf_listing`).

Repos of the ``onnxmodelzoo`` organisation (the ONNX project's own account) at
``main`` are trusted in ``compat`` trust mode, as ``onnx/models:main`` is; any other
repo needs ``silent=True``, a "y" at the prompt, or the allow-list.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from ..config import HubConfig
from ..errors import RepoSpecError
from ._source import MANIFEST_NAME, Source

__all__ = (
    "PREFIX",
    "ZOO_OWNER",
    "looks_like_hf",
    "parse",
    "revision_url",
    "source",
    "tree_url",
)

PREFIX = "hf://"
ZOO_OWNER = "onnxmodelzoo"
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_SPEC = re.compile(rf"^(?P<owner>{_NAME})/(?P<name>{_NAME})(?:@(?P<rev>[^\s@]+))?$")
_REV = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")


def looks_like_hf(repo: str) -> bool:
    """True for an ``hf://`` repo string (it may still be malformed)."""
    return repo.startswith(PREFIX)


def parse(repo: str) -> tuple[str, str]:
    """``(repo_id, revision)`` of ``hf://owner/name[@rev]``; the revision defaults
    to ``main``. Datasets and spaces (``hf://datasets/...``) are refused."""
    body = repo[len(PREFIX) :] if repo.startswith(PREFIX) else repo
    match = _SPEC.match(body)
    if not match:
        raise RepoSpecError(
            f"{repo!r} is not 'hf://OWNER/NAME[@REVISION]'",
            hint="write a Hugging Face model repo as hf://onnxmodelzoo/mnist-8",
        )
    owner, name, rev = match["owner"], match["name"], match["rev"] or "main"
    if owner in ("datasets", "spaces") or ".." in name:
        raise RepoSpecError(f"{repo!r}: only Hugging Face model repos are hubs")
    if not _REV.match(rev) or ".." in rev.split("/") or rev.endswith("/"):
        raise RepoSpecError(f"{repo!r} has an invalid revision {rev!r}")
    return f"{owner}/{name}", rev


def _endpoint(config: HubConfig) -> str:
    return config.hf_endpoint.rstrip("/")


def revision_url(repo_id: str, revision: str, config: HubConfig) -> str:
    """The revision API URL, which answers the revision's commit (``sha``)."""
    rev = quote(revision, safe="")
    return f"{_endpoint(config)}/api/models/{repo_id}/revision/{rev}"


def tree_url(repo_id: str, commit: str, config: HubConfig) -> str:
    """The first page of the recursive file listing at ``commit``."""
    rev = quote(commit, safe="")
    return f"{_endpoint(config)}/api/models/{repo_id}/tree/{rev}?recursive=true"


def source(repo: str, config: HubConfig, commit: str | None = None) -> Source:
    """The Source of an ``hf://`` repo; with ``commit``, file URLs are pinned to it.

    ``spec`` keeps the revision as written (``hf://owner/name@rev``), so trust
    decisions and the cached manifest do not depend on the commit.
    """
    repo_id, revision = parse(repo)
    at = quote(commit or revision, safe="")
    base = f"{_endpoint(config)}/{repo_id}/resolve/{at}/"
    return Source(
        spec=f"{PREFIX}{repo_id}@{revision}",
        kind="hf",
        manifest_url=base + MANIFEST_NAME,
        file_bases=(base,),
        trusted_by_default=repo_id.split("/")[0] == ZOO_OWNER and revision == "main",
    )
