"""Which repos may be downloaded from without asking.

``compat`` mode (default) behaves like onnx.hub: ``onnx/models:main`` is trusted, any
other repo needs a "y" at the prompt (sync API) or ``silent=True``; local folders
are trusted. ``strict`` mode (``ASYNCHUB_TRUST=strict``) uses only the allow-list,
whatever ``silent`` says: unlike onnx.hub before CVE-2026-28500's fix, ``silent``
never bypasses it.

The allow-list is ``onnx/models:main``, ``HubConfig.trusted_repos``
(``ASYNCHUB_TRUSTED_REPOS``) and the persisted list that ``asynchub trust add REPO``
writes (``trust remove REPO`` takes a repo off it). The persisted list lives in the
user's config folder, ``$XDG_CONFIG_HOME/asynchub/trusted_repos.json`` (else
``~/.config/asynchub/``), so every cache folder shares it. A list left in the old
place, ``<cache>/.asynchub/trusted_repos.json``, is still read while the new file
does not exist, and is copied there on the first change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._fs import read_regular
from ..config import HubConfig
from ..errors import ConfigError, RepoSpecError
from ..sources import Source, resolve_repo
from ._layout import STATE_DIR, write_atomic

__all__ = (
    "add_trusted",
    "is_allowlisted",
    "load_persisted",
    "remove_trusted",
    "trusted_list_path",
    "user_config_dir",
)

_LIST_NAME = "trusted_repos.json"


def user_config_dir() -> Path:
    """asynchub's folder in the user's config: ``$XDG_CONFIG_HOME/asynchub``, else
    ``~/.config/asynchub`` (the environment is read at call time)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(
        os.path.expanduser("~"), ".config"
    )
    return Path(base) / "asynchub"


def trusted_list_path(config: HubConfig) -> Path:
    """Where the persisted allow-list lives (``config`` is kept for callers)."""
    return user_config_dir() / _LIST_NAME


def _old_list_path(config: HubConfig) -> Path:
    """Where versions before 0.2 kept it: inside the cache."""
    return config.resolved_cache_dir() / STATE_DIR / _LIST_NAME


def load_persisted(config: HubConfig) -> list[str]:
    """The persisted allow-list (blocking; empty when absent or unreadable)."""
    path = trusted_list_path(config)
    if not path.exists():
        path = _old_list_path(config)
    try:
        data = json.loads(read_regular(path, 1024 * 1024))
    except (OSError, ValueError):
        return []
    return [str(item) for item in data] if isinstance(data, list) else []


def _save(config: HubConfig, repos: list[str]) -> None:
    path = trusted_list_path(config)
    write_atomic(path, json.dumps(repos, indent=2).encode(), path.parent)


def add_trusted(config: HubConfig, repo: str) -> str:
    """Persist ``repo`` (canonicalised) on the allow-list; return its canonical form."""
    spec = resolve_repo(repo, config).spec
    current = load_persisted(config)
    if spec not in current or not trusted_list_path(config).exists():
        _save(config, [*dict.fromkeys([*current, spec])])
    return spec


def remove_trusted(config: HubConfig, repo: str) -> str:
    """Take ``repo`` off the persisted allow-list; return its canonical form.

    Raises:
        ConfigError: It is not on the persisted list (it may be trusted by
            ``ASYNCHUB_TRUSTED_REPOS`` or by default, which this cannot change).
    """
    spec = resolve_repo(repo, config).spec
    current = load_persisted(config)
    if spec not in current:
        where = (
            "it is trusted by default"
            if resolve_repo(repo, config).official
            else "it is set in ASYNCHUB_TRUSTED_REPOS"
            if spec in {_canonical(r, config) for r in config.trusted_repos}
            else "'asynchub trust list' shows the list"
        )
        raise ConfigError(f"{spec} is not on the saved trusted list", hint=where)
    _save(config, [r for r in current if r != spec])
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
