"""What the parsed command line means: the configuration, whether its filters
match anything, and the counting words the commands share."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import HubConfig
from ..manifest import Manifest

__all__ = ("config_of", "nothing_selected", "plural")


def config_of(args: argparse.Namespace) -> HubConfig:
    """The environment's configuration, with the command line's overrides."""
    overrides: dict[str, Any] = {}
    if args.cache_dir is not None:
        overrides["cache_dir"] = args.cache_dir
    config = HubConfig.from_env(**overrides)
    concurrency = getattr(args, "concurrency", None)
    if concurrency:
        limits = config.limits.model_copy(update={"max_files": concurrency})
        config = config.model_copy(update={"limits": limits})
    return config


def nothing_selected(
    manifest: Manifest, models: list[str] | None, tags: list[str] | None
) -> str | None:
    """Which name or tag made a selection empty, with the closest spellings;
    None when each exists (another filter emptied it)."""
    from .._suggest import did_you_mean

    names = [entry.model for entry in manifest]
    for model in models or ():
        if not manifest.select(model):
            return f"no model is named {model!r}{did_you_mean(model, names)}"
    if not tags:
        return None
    names_wanted: list[str | None] = list(models) if models else [None]
    pool = [i for m in names_wanted for i in manifest.select(m)]
    wanted = {t.casefold() for t in tags}
    if any(wanted & {t.casefold() for t in info.tags} for info in pool):
        return None
    known = {tag for entry in manifest for tag in entry.metadata.tags}
    hints = did_you_mean(tags[0], known)
    named = f" named {' or '.join(models)}" if models else ""
    return f"no model{named} has the tag {' or '.join(map(repr, tags))}{hints}"


def plural(count: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
