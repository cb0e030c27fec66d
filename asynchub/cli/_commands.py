"""What each ``asynchub`` command does, once :mod:`asynchub.cli` parsed it.

Every command is ``async def (args, output) -> exit code``; printing goes through
:class:`~asynchub.cli._output.Output` only.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ..cache import add_trusted, load_persisted, remove_trusted, trusted_list_path
from ..client import AsyncHub
from ..config import OFFICIAL_REPO, HubConfig
from ..errors import ConfigError
from ..manifest import Manifest, ModelInfo
from ..mirror import MirrorReport, Selection, format_bytes
from ..sources import MANIFEST_NAME
from ._output import Output, ProgressDisplay

if TYPE_CHECKING:  # the demo needs onnx and numpy: imported when it runs
    from ..hosting import DemoResult

__all__ = ("COMMANDS",)

Command = Callable[[argparse.Namespace, Output], Awaitable[int]]
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _config(args: argparse.Namespace) -> HubConfig:
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


# ------------------------------------------------------------ list and info


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    async with AsyncHub(_config(args)) as client:
        manifest = await client.manifest(args.repo)
    infos = manifest.select(args.model, args.tag)
    if not infos and (args.model is not None or args.tag):
        models = [args.model] if args.model else None
        reason = _nothing_selected(manifest, models, args.tag)
        out.error(reason or "no model matches")
        return 1
    if args.json:
        out.json_lines(info.raw_model_info for info in infos)
        return 0
    if not infos:
        out.note("the manifest lists no models")
        return 0
    infos = sorted(infos, key=lambda i: (i.model.casefold(), i.opset))  # JSON: as is
    rows = [(i.model, i.opset, _size(i), ", ".join(sorted(i.tags))) for i in infos]
    out.table(("model", "opset", "size", "tags"), rows)
    return 0


def _nothing_selected(
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


def _size(info: ModelInfo) -> str:
    size = info.entry.metadata.model_bytes
    return "?" if size is None else format_bytes(size)


async def cmd_info(args: argparse.Namespace, out: Output) -> int:
    async with AsyncHub(_config(args)) as client:
        info = await client.get_model_info(args.model, args.repo, args.opset)
    if args.json:
        out.json(info.raw_model_info)
        return 0
    meta = info.entry.metadata
    out.result(f"{info.model} (opset {info.opset})")
    for key, value in _info_fields(info):
        out.result(f"  {key:<10} {value}")
    ports = meta.io_ports
    if ports is not None:
        rows = [("input", p.name, p.type, p.shape) for p in ports.inputs]
        rows += [("output", p.name, p.type, p.shape) for p in ports.outputs]
        out.table(("port", "name", "type", "shape"), rows)
    return 0


def _info_fields(info: ModelInfo) -> list[tuple[str, object]]:
    meta = info.entry.metadata
    fields: list[tuple[str, object]] = [
        ("path", info.model_path),
        ("onnx", info.entry.onnx_version or "?"),
        ("sha256", meta.model_sha or "?"),
        ("size", _size(info)),
        ("tags", ", ".join(meta.tags)),
    ]
    if meta.model_with_data_path:
        size = meta.model_with_data_bytes
        shown = "?" if size is None else format_bytes(size)
        fields.append(("test data", f"{meta.model_with_data_path} ({shown})"))
    return fields


# ------------------------------------------------------ download and mirror


async def cmd_download(args: argparse.Namespace, out: Output) -> int:
    if bool(args.models) == bool(args.all):
        out.error("give MODEL names or --all (not both)")
        return 2
    named = bool(args.models)
    selection = _selection(
        args,
        models=args.models if named else None,
        with_data=args.with_data,
        latest_only=args.latest_only or (named and not args.opset),
    )  # a named model without --opset: what load(name) uses, the highest opset
    return await _run(args, out, selection, dest=args.local_dir)


async def cmd_mirror(args: argparse.Namespace, out: Output) -> int:
    selection = _selection(
        args,
        models=args.model,
        with_data=not args.no_data,
        latest_only=args.latest_only,
    )
    return await _run(args, out, selection, dest=args.dest)


def _selection(
    args: argparse.Namespace,
    *,
    models: list[str] | None,
    with_data: bool,
    latest_only: bool,
) -> Selection:
    """The options that choose files, as the one value the API takes."""
    return Selection(
        models=models,
        tags=args.tag,
        opsets=args.opset,
        latest_only=latest_only,
        with_data=with_data,
        include=args.include,
        exclude=args.exclude,
        shard=args.shard,
    )


async def _run(
    args: argparse.Namespace, out: Output, selection: Selection, dest: Path | None
) -> int:
    """Mirror into ``dest`` (or fill the cache when None) on one client."""
    switches: dict[str, Any] = {
        "verify_existing": args.verify_existing,
        "check_space": not args.no_space_check,
        "dry_run": args.dry_run,
        "silent": args.yes,
        "force": getattr(args, "force", False),
    }
    async with AsyncHub(_config(args)) as hub:
        report = await _with_progress(
            out,
            args,
            lambda display: (
                hub.mirror(dest, args.repo, selection=selection, **switches, **display)
                if dest is not None
                else hub.download(args.repo, selection=selection, **switches, **display)
            ),
        )
    return await _finish(args, out, report)


async def _with_progress(
    out: Output,
    args: argparse.Namespace,
    start: Callable[[dict[str, Any]], Awaitable[MirrorReport]],
) -> MirrorReport:
    """Run a mirror or download with progress bars or lines (none for --dry-run)."""
    quiet = args.dry_run or args.json
    display = ProgressDisplay(out, style="quiet" if quiet else None)
    with display:
        return await start({"progress": display.event, "on_plan": display.plan})


async def _finish(args: argparse.Namespace, out: Output, report: MirrorReport) -> int:
    """Print the outcome, write --report; exit 1 when a file failed or nothing
    was selected."""
    if args.report is not None:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(report.to_json() + "\n")
    if report.total_files == 0 and not report.failed and args.shard is None:
        out.error(await _explain_empty(args))
        return 1
    if args.json:
        out.json(report.model_dump(mode="json"))
    elif args.quiet and args.handler == "download" and not report.dry_run:
        _print_paths(out, report)
    else:
        _print_outcome(out, report)
    for gone in report.unavailable:  # not failures: exit 0 if nothing else failed
        out.note(f"asynchub: warning: {gone.path}: {gone.message} ({gone.hint})")
    if report.failed:
        _print_failures(args, out, report)
        return 1
    return 0


async def _explain_empty(args: argparse.Namespace) -> str:
    """Why a download or mirror selected no file (the manifest is memoised)."""
    async with AsyncHub(_config(args)) as client:
        manifest = await client.manifest(args.repo)
    models = getattr(args, "model", None) or getattr(args, "models", None)
    reason = _nothing_selected(manifest, models, args.tag)
    if reason is None and (args.include or args.exclude):
        reason = "no file passes --include/--exclude"
    if reason is None and args.opset:
        reason = f"no selected model has opset {' or '.join(map(str, args.opset))}"
    return f"nothing to do: {reason or 'the filters select no file'}"


def _print_paths(out: Output, report: MirrorReport) -> None:
    """``-q``: the local path of every selected file, one per line (for scripts)."""
    for outcome in sorted([*report.done, *report.skipped], key=lambda f: f.path):
        if outcome.local_path is not None:
            out.result(outcome.local_path)


def _print_failures(
    args: argparse.Namespace, out: Output, report: MirrorReport
) -> None:
    from ._words import cli_hint

    for failure in report.failed:
        hint = cli_hint(failure.hint)
        out.error(f"{failure.path}: {failure.message}" + (f" ({hint})" if hint else ""))
    count = _plural(len(report.failed), "file")
    if all(f.error in _NO_RERUN for f in report.failed):
        out.error(f"{count} failed: the folder cannot take them (see above)")
        return
    out.error(
        f"{count} failed; to retry them (finished "
        f"files are skipped), run: {_rerun(args)}"
    )


_NO_RERUN = ("CacheError", "ReadOnlyCacheError", "UnsafePathError")


def _plural(count: int, noun: str) -> str:
    """``"1 file"``, ``"2 files"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _rerun(args: argparse.Namespace) -> str:
    """The command line that reruns this invocation."""
    return shlex.join(["asynchub", *args.argv])


def _print_outcome(out: Output, report: MirrorReport) -> None:
    if report.dry_run:
        out.result(
            f"{_plural(report.to_fetch_files, 'file')} to fetch "
            f"({format_bytes(report.to_fetch_bytes)}) of {report.total_files} "
            f"selected ({format_bytes(report.total_bytes)}); "
            f"{len(report.skipped)} already in place"
        )
        return
    out.result(report.summary())
    if report.manifest_written:
        out.result(
            f"hub ready: {Path(report.dest) / MANIFEST_NAME} ({report.models} models)"
        )
    elif report.mode == "cache":
        out.result(f"cache: {report.dest}")


# ------------------------------------------------------------------- cache


async def cmd_cache_ls(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = _config(args).resolved_cache_dir()
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
    out.result(f"{_plural(len(items), 'item')}, {format_bytes(total)} in {root}")
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

    root = _config(args).resolved_cache_dir()
    result = await anyio.to_thread.run_sync(
        lambda: _cache_admin.remove_model(root, args.model, args.opset)
    )
    if args.json:
        out.json(dataclasses.asdict(result))
        return 0
    for path in result.removed:
        out.note(f"removed {path}")
    count = _plural(len(result.removed), "item")
    out.result(f"removed {count} ({format_bytes(result.freed)}) from {root}")
    return 0


async def cmd_cache_verify(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = _config(args).resolved_cache_dir()
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
        checked = _plural(result.checked, "item")
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

    config = _config(args)
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
    count = _plural(len(result.removed), "item")
    out.result(f"{verb} {count} ({format_bytes(result.freed)})")
    return 0


async def cmd_cache_du(args: argparse.Namespace, out: Output) -> int:
    from ..cache import _admin as _cache_admin  # only the cache commands need it

    root = _config(args).resolved_cache_dir()
    usage = await anyio.to_thread.run_sync(_cache_admin.disk_usage, root)
    if args.json:
        out.json(dataclasses.asdict(usage))
        return 0
    rows = [(kind, format_bytes(size)) for kind, size in sorted(usage.by_kind.items())]
    rows.append(("state", format_bytes(usage.state)))
    out.table(("kind", "size"), rows)
    out.result(f"total {format_bytes(usage.total)} in {root}")
    return 0


# ---------------------------------------------------- manifest, serve, trust


async def cmd_manifest_build(args: argparse.Namespace, out: Output) -> int:
    from ..hosting import write_manifest  # imports onnx: only for this command

    if not args.dir.is_dir():
        raise ConfigError(
            f"{args.dir} is not a folder",
            hint="give the folder holding the .onnx files",
        )
    path = await anyio.to_thread.run_sync(write_manifest, args.dir, args.output)
    manifest = Manifest.parse(path.read_bytes(), source=str(path))
    if args.json:
        out.json({"path": str(path), "entries": len(manifest)})
    else:
        out.result(f"wrote {path}: {len(manifest)} entries")
    return 0


async def cmd_serve(args: argparse.Namespace, out: Output) -> int:
    root: Path = args.dir
    if not root.is_dir():  # one error, not a warning about the manifest first
        raise ConfigError(
            f"{root} is not a folder",
            hint="give the hub folder that holds ONNX_HUB_MANIFEST.json",
        )
    if not (root / MANIFEST_NAME).is_file():
        out.note(
            f"warning: {root} has no {MANIFEST_NAME}; create it with "
            f"'asynchub manifest build {root}'"
        )
    if args.host not in _LOOPBACK:
        out.note(
            f"warning: listening on {args.host}: other machines can read "
            "every file in the folder"
        )
    from ..hosting import serving  # aiohttp.web: only for this command

    async with serving(root, args.host, args.port, access_log=not args.quiet) as url:
        out.result(f"serving {root.resolve()} at {url}")
        out.note(
            f"use it with repo={url!r} or 'asynchub list --repo {url}'; Ctrl-C stops"
        )
        out.out.file.flush()
        await _until_terminated()
    out.note("stopped")
    return 0


async def _until_terminated() -> None:
    """Wait for Ctrl-C (SIGINT) or SIGTERM (a container or service manager).

    Both are received by the event loop, so the server stops from a known point
    on every Python: without the receiver, Ctrl-C raises KeyboardInterrupt wherever
    the main thread happens to be, and on 3.10 that can be inside one of aiohttp's
    callbacks, leaving the shutdown waiting for a handler that will never finish.
    """
    if sys.platform == "win32":  # no signal receiver there: Ctrl-C is handled above
        await anyio.sleep_forever()
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def cmd_trust_add(args: argparse.Namespace, out: Output) -> int:
    config = _config(args)
    spec = await anyio.to_thread.run_sync(add_trusted, config, args.repo)
    out.result(f"trusted {spec} (saved in {trusted_list_path(config)})")
    return 0


async def cmd_trust_remove(args: argparse.Namespace, out: Output) -> int:
    config = _config(args)
    spec = await anyio.to_thread.run_sync(remove_trusted, config, args.repo)
    out.result(f"no longer trusted: {spec} (saved in {trusted_list_path(config)})")
    return 0


async def cmd_trust_list(args: argparse.Namespace, out: Output) -> int:
    config = _config(args)
    persisted = await anyio.to_thread.run_sync(load_persisted, config)
    repos = [OFFICIAL_REPO, *config.trusted_repos, *persisted]
    if args.json:
        out.json(repos)
    else:
        for repo in dict.fromkeys(repos):
            out.result(repo)
    return 0


# -------------------------------------------------------------------- demo


async def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from ..hosting import run_demo  # imports onnx and numpy: only for the demo

    workdir = args.dir or Path(tempfile.mkdtemp(prefix="asynchub-demo-"))
    try:
        with ProgressDisplay(out) as display:
            result = await run_demo(
                workdir, say=out.note, progress=display.event, on_plan=display.plan
            )
        _print_demo(out, result)
        _print_next(out, args.dir, workdir)
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if result.ok else 1


def _print_demo(out: Output, result: DemoResult) -> None:
    out.result("checked against test data with onnx.reference.ReferenceEvaluator:")
    for check in result.checks:
        mark = "ok  " if check.ok else "FAIL"
        out.result(f"  {mark} {check.model} (opset {check.opset}): {check.detail}")
    passed = sum(c.ok for c in result.checks)
    verdict = "demo passed" if result.ok else "demo FAILED"
    out.result(
        f"{verdict}: {passed} of {len(result.checks)} models match their "
        f"test data; {result.elapsed:.1f} s in all"
    )


def _print_next(out: Output, kept: Path | None, workdir: Path) -> None:
    """What to try next: the mirror works offline (when it was kept)."""
    if kept is None:
        out.note(
            "next: 'asynchub demo --dir D' keeps the mirror, to list and load "
            "from it offline"
        )
        return
    mirror = shlex.quote(str(workdir / "mirror"))
    out.note(
        f"next: ASYNCHUB_OFFLINE=1 asynchub list --repo {mirror}; in Python, "
        f"hub.load('TinyNet', repo={str(workdir / 'mirror')!r})"
    )


COMMANDS: dict[str, Command] = {
    "list": cmd_list,
    "info": cmd_info,
    "download": cmd_download,
    "mirror": cmd_mirror,
    "cache ls": cmd_cache_ls,
    "cache verify": cmd_cache_verify,
    "cache prune": cmd_cache_prune,
    "cache du": cmd_cache_du,
    "cache rm": cmd_cache_rm,
    "manifest build": cmd_manifest_build,
    "serve": cmd_serve,
    "trust add": cmd_trust_add,
    "trust remove": cmd_trust_remove,
    "trust list": cmd_trust_list,
    "demo": cmd_demo,
}
