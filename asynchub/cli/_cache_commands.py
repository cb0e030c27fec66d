"""``asynchub cache ls | rm | verify | prune | du``: the cache as the user sees it."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

import anyio

from ..client import AsyncHub
from ..mirror import format_bytes
from ._output import Output

if TYPE_CHECKING:  # the demo needs onnx and numpy: imported when it runs
    pass

from ._args import config_of, plural

__all__ = (
    "cmd_cache_du",
    "cmd_cache_ls",
    "cmd_cache_prune",
    "cmd_cache_rm",
    "cmd_cache_verify",
)


async def cmd_cache_ls(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = config_of(args).resolved_cache_dir()
    items = await anyio.to_thread.run_sync(_cache_admin.list_cache, root)
    items.sort(key=lambda i: ((i.model or "~").casefold(), i.opset or 0, i.path))
    if args.json:
        out.json_lines(dataclasses.asdict(item) for item in items)
        return 0
    if not items:
        out.note(f"the cache at {root} is empty")
        return 0
    rows = [
        (
            _clip(i.model or "-", 22),
            i.opset or "-",
            format_bytes(i.size),
            _when(i.last_used),
            _clip_left(_short_repo(i.repo), 20),
            _clip(_short_name(i.path), 28),
        )
        for i in items
    ]
    out.table(("model", "opset", "size", "last used", "repo", "file"), rows)
    total = sum(i.size for i in items)
    out.result(f"{plural(len(items), 'item')}, {format_bytes(total)} in {root}")
    return 0


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _clip_left(text: str, width: int) -> str:
    """Keep a path's end, where folders differ."""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def _short_repo(repo: str | None) -> str:
    """A repo as the user typed it: owner/name:ref, a host/path, or a folder."""
    if repo is None:
        return "-"
    return repo.removeprefix("https://").removeprefix("http://")


def _short_name(path: str) -> str:
    """The file's name with its SHA-256 prefix cut to 8 digits (``--json``: all)."""
    name = path.rpartition("/")[2]
    sha, sep, rest = name.partition("_")
    return f"{sha[:8]}_{rest}" if sep and len(sha) == 64 else name


def _when(stamp: float | None) -> str:
    """A date (local time) for the table; the day is what atime is good for."""
    if stamp is None:
        return "-"
    import time

    return time.strftime("%Y-%m-%d", time.localtime(stamp))


async def cmd_cache_rm(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = config_of(args).resolved_cache_dir()
    result = await anyio.to_thread.run_sync(
        lambda: _cache_admin.remove_model(root, args.model, args.opset)
    )
    if args.json:
        out.json(dataclasses.asdict(result))
        return 0
    for path in result.removed:
        out.note(f"removed {path}")
    count = plural(len(result.removed), "item")
    out.result(f"removed {count} ({format_bytes(result.freed)}) from {root}")
    return 0


async def cmd_cache_verify(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = config_of(args).resolved_cache_dir()
    result = await anyio.to_thread.run_sync(
        lambda: _cache_admin.verify(root, fix=args.fix)
    )
    if args.json:
        out.json(dataclasses.asdict(result))
    else:
        for bad in result.corrupt:
            fixed = " (removed)" if bad.path in result.removed else ""
            what = f"{bad.member} differs from the tarball, " if bad.member else ""
            out.result(f"CORRUPT {bad.path}: {what}SHA-256 is {bad.actual}{fixed}")
        checked = plural(result.checked, "item")
        out.result(f"checked {checked}: {len(result.corrupt)} corrupt")
    if result.corrupt and len(result.removed) < len(result.corrupt):
        out.error(
            f"{len(result.corrupt)} cached files are corrupt; run "
            "'asynchub cache verify --fix' to remove them"
        )
        return 1
    return 0


async def cmd_cache_prune(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    config = config_of(args)
    root = config.resolved_cache_dir()
    manifests = None
    if args.repo:
        manifests = _cache_admin.known_manifests(root)
        async with AsyncHub(config) as client:
            for repo in args.repo:
                manifests.append(await client.manifest(repo))
    result = await anyio.to_thread.run_sync(
        lambda: _cache_admin.prune(
            root,
            manifests=manifests,
            superseded=not args.temp_only,
            unlisted=args.unlisted and not args.temp_only,
            dry_run=args.dry_run,
        )
    )
    if args.json:
        out.json(dataclasses.asdict(result))
        return 0
    verb = "would remove" if args.dry_run else "removed"
    for path in result.removed:
        out.result(f"{verb} {path}")
    for path in result.busy:
        out.note(f"kept {path}: a running download or extraction owns it")
    count = plural(len(result.removed), "item")
    out.result(f"{verb} {count} ({format_bytes(result.freed)})")
    return 0


async def cmd_cache_du(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = config_of(args).resolved_cache_dir()
    usage = await anyio.to_thread.run_sync(_cache_admin.disk_usage, root)
    if args.json:
        out.json(dataclasses.asdict(usage))
        return 0
    rows = [(kind, format_bytes(size)) for kind, size in sorted(usage.by_kind.items())]
    rows.append(("state", format_bytes(usage.state)))
    out.table(("kind", "size"), rows)
    out.result(f"total {format_bytes(usage.total)} in {root}")
    return 0
