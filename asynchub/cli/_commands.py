"""What each ``asynchub`` command does, once :mod:`asynchub.cli` parsed it.

Every command is ``async def (args, output) -> exit code``; printing goes through
:class:`~asynchub.cli._output.Output` only.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..cache import add_trusted, load_persisted, remove_trusted, trusted_list_path
from ..client import AsyncHub
from ..config import OFFICIAL_REPO
from ..errors import ConfigError
from ..manifest import Manifest, ModelInfo
from ..mirror import format_bytes
from ..sources import MANIFEST_NAME
from ._args import config_of, nothing_selected
from ._cache_commands import (
    cmd_cache_du,
    cmd_cache_ls,
    cmd_cache_prune,
    cmd_cache_rm,
    cmd_cache_verify,
)
from ._fetch_commands import cmd_download, cmd_mirror
from ._output import Output, ProgressDisplay

if TYPE_CHECKING:  # the demo needs onnx and numpy: imported when it runs
    from ..hosting import DemoResult

__all__ = ("COMMANDS",)

Command = Callable[[argparse.Namespace, Output], Awaitable[int]]
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


# ------------------------------------------------------------ list and info


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    async with AsyncHub(config_of(args)) as client:
        manifest = await client.manifest(args.repo)
    infos = manifest.select(args.model, args.tag)
    if not infos and (args.model is not None or args.tag):
        models = [args.model] if args.model else None
        reason = nothing_selected(manifest, models, args.tag)
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


def _size(info: ModelInfo) -> str:
    size = info.entry.metadata.model_bytes
    return "?" if size is None else format_bytes(size)


async def cmd_info(args: argparse.Namespace, out: Output) -> int:
    async with AsyncHub(config_of(args)) as client:
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
    config = config_of(args)
    spec = await anyio.to_thread.run_sync(add_trusted, config, args.repo)
    out.result(f"trusted {spec} (saved in {trusted_list_path(config)})")
    return 0


async def cmd_trust_remove(args: argparse.Namespace, out: Output) -> int:
    config = config_of(args)
    spec = await anyio.to_thread.run_sync(remove_trusted, config, args.repo)
    out.result(f"no longer trusted: {spec} (saved in {trusted_list_path(config)})")
    return 0


async def cmd_trust_list(args: argparse.Namespace, out: Output) -> int:
    config = config_of(args)
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
