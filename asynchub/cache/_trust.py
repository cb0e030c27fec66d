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
from collections.abc import Callable
from pathlib import Path

import anyio

from .._fs import read_regular
from ..config import HubConfig
from ..errors import ConfigError, RepoSpecError, UntrustedRepoError
from ..sources import Source, resolve_repo
from ._layout import STATE_DIR, write_atomic

__all__ = (
    "Confirm",
    "add_trusted",
    "admit",
    "is_allowlisted",
    "load_persisted",
    "remove_trusted",
    "trusted_list_path",
    "user_config_dir",
)

_LIST_NAME = "trusted_repos.json"
Confirm = Callable[[str], bool]
"""Asked whether to trust a repo (the sync API's stdin prompt); True to go on."""
_HINT = (
    "add it with 'asynchub trust add REPO' or ASYNCHUB_TRUSTED_REPOS, or pass "
    "silent=True if you trust it"
)
_STRICT_HINT = "add it with 'asynchub trust add REPO' or ASYNCHUB_TRUSTED_REPOS"


async def admit(
    source: Source,
    config: HubConfig,
    *,
    silent: bool,
    confirm: Confirm | None = None,
    manifest_only: bool = False,
) -> bool:
    """The one trust gate that every path (load, download, mirror) goes through.

    True: use the repo. False: the user answered "n" at ``confirm``'s prompt.
    ``manifest_only`` asks whether the repo's manifest may be read at all, which
    only strict mode refuses. In strict mode ``silent`` never bypasses the list.

    Raises:
        UntrustedRepoError: Strict mode and the repo is not on the list, or compat
            mode, not ``silent`` and nobody to ask.
    """
    if manifest_only and config.trust != "strict":
        return True
    if await anyio.to_thread.run_sync(is_allowlisted, source, config):
        return True
    strict = config.trust == "strict"
    if silent and not strict:
        return True
    message = untrusted_message(source, strict)
    if strict or confirm is None:
        raise UntrustedRepoError(message, hint=_STRICT_HINT if strict else _HINT)
    return await anyio.to_thread.run_sync(confirm, message)


def untrusted_message(source: Source, strict: bool) -> str:
    """onnx.hub's warning, with where the list is and what strict mode means."""
    if strict:
        return (
            f"The model repo specification {source.spec} is not trusted: it is not "
            "on the trusted list (strict trust mode): its manifest is not read and "
            "none of its files are fetched."
        )
    return (
        f"The model repo specification {source.spec} is not trusted and may contain "
        "security vulnerabilities: it is not on the trusted list. Only continue if "
        "you trust this repo."
    )


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
