"""Which repos may be downloaded from without asking.

``compat`` mode (default) behaves like onnx.hub: ``onnx/models:main`` is trusted, any
other repo needs a "y" at the prompt (sync API) or ``silent=True``; local folders
are trusted. ``strict`` mode (``ASYNCHUB_TRUST=strict``) uses only the allow-list,
whatever ``silent`` says: unlike onnx.hub before CVE-2026-28500's fix, ``silent``
never bypasses it.

The allow-list is ``onnx/models:main``, ``HubConfig.trusted_repos``
(``ASYNCHUB_TRUSTED_REPOS``) and the persisted list in
``<cache>/.asynchub/trusted_repos.json`` that ``asynchub trust add REPO`` writes.
"""

from __future__ import annotations

import json
from pathlib import Path

from ._cache import STATE_DIR, write_atomic
from ._safe_fs import read_regular
from .config import HubConfig
from .errors import RepoSpecError
from .sources import Source, resolve_repo

__all__ = ("add_trusted", "is_allowlisted", "load_persisted", "trusted_list_path")


def trusted_list_path(config: HubConfig) -> Path:
    """Where the persisted allow-list lives."""
    return config.resolved_cache_dir() / STATE_DIR / "trusted_repos.json"


def load_persisted(config: HubConfig) -> list[str]:
    """The persisted allow-list (blocking; empty when absent or unreadable)."""
    try:
        data = json.loads(read_regular(trusted_list_path(config), 1024 * 1024))
    except (OSError, ValueError):
        return []
    return [str(item) for item in data] if isinstance(data, list) else []


def add_trusted(config: HubConfig, repo: str) -> str:
    """Persist ``repo`` (canonicalised) on the allow-list; return its canonical form."""
    spec = resolve_repo(repo, config).spec
    current = load_persisted(config)
    if spec not in current:
        current.append(spec)
        data = json.dumps(current, indent=2).encode()
        write_atomic(trusted_list_path(config), data, config.resolved_cache_dir())
    return spec


def _canonical(repo: str, config: HubConfig) -> str | None:
    try:
        return resolve_repo(repo, config).spec
    except RepoSpecError:  # an unusable entry on the list trusts nothing
        return None


def is_allowlisted(source: Source, config: HubConfig) -> bool:
    """True when ``source`` may be used without asking (blocking: reads the list)."""
    if source.official and source.trusted_by_default:
        return True
    if source.kind == "hf" and source.trusted_by_default and config.trust == "compat":
        return True  # hf://onnxmodelzoo/*@main, the ONNX project's own account
    if source.kind == "local" and config.trust == "compat":
        return True
    listed = [*config.trusted_repos, *load_persisted(config)]
    return any(_canonical(repo, config) == source.spec for repo in listed)
