"""``asynchub download`` and ``asynchub mirror``: a selection, run on one client,
with progress, then the outcome and what to rerun."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..client import AsyncHub
from ..mirror import MirrorReport, Selection, format_bytes
from ..sources import MANIFEST_NAME
from ._output import Output, ProgressDisplay

if TYPE_CHECKING:  # the demo needs onnx and numpy: imported when it runs
    pass

from ._args import config_of, nothing_selected, plural

__all__ = ("cmd_download", "cmd_mirror")


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
    async with AsyncHub(config_of(args)) as hub:
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
    if display.style == "quiet":  # nothing is shown: no events to make and drop
        return await start({"progress": None, "on_plan": None})
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
    async with AsyncHub(config_of(args)) as client:
        manifest = await client.manifest(args.repo)
    models = getattr(args, "model", None) or getattr(args, "models", None)
    reason = nothing_selected(manifest, models, args.tag)
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
    count = plural(len(report.failed), "file")
    if all(f.error in _NO_RERUN for f in report.failed):
        out.error(f"{count} failed: the folder cannot take them (see above)")
        return
    out.error(
        f"{count} failed; to retry them (finished "
        f"files are skipped), run: {_rerun(args)}"
    )


_NO_RERUN = ("CacheError", "ReadOnlyCacheError", "UnsafePathError")


def _rerun(args: argparse.Namespace) -> str:
    """The command line that reruns this invocation."""
    return shlex.join(["asynchub", *args.argv])


def _print_outcome(out: Output, report: MirrorReport) -> None:
    if report.dry_run:
        out.result(
            f"{plural(report.to_fetch_files, 'file')} to fetch "
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
