"""The ``asynchub`` command line: every command's options, built on demand.

``main`` (:mod:`._main`) builds only the command it was given
(:func:`named_command`): argparse translates every help string as it is added, and
building all fifteen commands was half the time from the imports to a mirror's
first request.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from .. import __version__
from ..config import OFFICIAL_REPO
from ..errors import ConfigError
from ..mirror import parse_shard

__all__ = ("build_parser", "named_command")

_Sub: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of every command, or of ``command`` alone.

    ``main`` builds only the command it was given: argparse translates every help
    string as it is added, and building all fifteen commands was half the time from
    the imports to a mirror's first request.
    """
    common = _common_options(suppress=True)
    parser = argparse.ArgumentParser(
        prog="asynchub",
        description="Fast, verified, resumable ONNX model downloads; onnx.hub's "
        "successor. Mirror zoos, host your own hub, look after the cache.",
        parents=[_common_options(suppress=False)],
    )
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _ADDERS.items():
        if command in (None, name):
            add(sub, common)
    return parser


def named_command(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names after the common options, or None (then every
    command is built: for ``--help``, a mistyped command, an abbreviated option)."""
    options = iter(argv)
    for arg in options:
        if arg == "--cache-dir":
            next(options, None)
        elif arg not in ("-q", "--quiet", "--debug") and not arg.startswith(
            "--cache-dir="
        ):
            return arg if arg in _ADDERS else None
    return None


def _common_options(*, suppress: bool) -> argparse.ArgumentParser:
    """``--quiet``, ``--debug``, ``--cache-dir``: before or after the command.

    The copies on subcommands default to SUPPRESS so they do not overwrite a value
    given before the command.
    """
    common = argparse.ArgumentParser(add_help=False)

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    common.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="print results only: no progress, no notes",
    )
    common.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks and debug logs",
    )
    common.add_argument(
        "--cache-dir",
        type=Path,
        default=default(None),
        metavar="D",
        help="cache root (default: $ONNX_HOME/hub, else "
        "$XDG_CACHE_HOME/onnx/hub, else ~/.cache/onnx/hub)",
    )
    return common


def _command(
    sub: _Sub,
    name: str,
    common: argparse.ArgumentParser,
    help_text: str,
    handler: str | None = None,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        name, parents=[common], help=help_text, description=help_text
    )
    parser.set_defaults(handler=handler or name)
    return parser


def _repo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repo",
        default=OFFICIAL_REPO,
        metavar="R",
        help=f"owner/name[:ref], http(s) URL or folder (default: {OFFICIAL_REPO})",
    )


def _json(parser: argparse.ArgumentParser, what: str = "JSON") -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what}")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _shard(text: str) -> tuple[int, int]:
    try:
        shard = parse_shard(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    assert shard is not None
    return shard


def _add_list(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(sub, "list", common, "list the models of a hub")
    _repo(parser)
    parser.add_argument("--model", metavar="M", help="only this model name")
    parser.add_argument(
        "--tag",
        action="append",
        metavar="T",
        help="only models with this tag (repeatable: any of)",
    )
    _json(parser, "JSON lines: one manifest entry per line")


def _add_info(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(sub, "info", common, "show a model's metadata and io ports")
    parser.add_argument("model", metavar="MODEL")
    parser.add_argument(
        "--opset", type=int, metavar="N", help="this opset (default: the highest)"
    )
    _repo(parser)
    _json(parser, "the manifest entry as JSON")


def _filters(parser: argparse.ArgumentParser, *, models: bool) -> None:
    if models:
        parser.add_argument(
            "--model", action="append", metavar="M", help="only this model (repeatable)"
        )
    parser.add_argument(
        "--tag",
        action="append",
        metavar="T",
        help="only models with this tag (repeatable: any of)",
    )
    parser.add_argument(
        "--opset",
        action="append",
        type=int,
        metavar="N",
        help="only this opset (repeatable)",
    )
    parser.add_argument(
        "--latest-only",
        action="store_true",
        help="only the highest opset of each model",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        metavar="I/N",
        help="only shard I (0-based) of N, for N machines",
    )


def _run_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print how many files and bytes would be fetched",
    )
    parser.add_argument(
        "--concurrency", type=_positive, metavar="N", help="files fetched at once"
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help=f"write the {what} report as JSON to FILE",
    )
    parser.add_argument(
        "--verify-existing", action="store_true", help="re-hash files already in place"
    )
    parser.add_argument(
        "--no-space-check",
        action="store_true",
        help="start even if the free space looks too small",
    )
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="fetch from a repo that is not on the trusted list",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only files whose manifest path matches (repeatable; '*' matches '/')",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        metavar="GLOB",
        help="leave out files whose manifest path matches (repeatable)",
    )
    _json(parser, "the report as JSON")


def _add_download(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(
        sub, "download", common, "put models into the local cache, for offline use"
    )
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="model names (the highest opset unless --opset)",
    )
    parser.add_argument(
        "--all", action="store_true", help="every model that passes the filters"
    )
    parser.add_argument(
        "--with-data", action="store_true", help="also the tarballs with test data"
    )
    _repo(parser)
    parser.add_argument(
        "--force", action="store_true", help="download again even if cached"
    )
    parser.add_argument(
        "--local-dir",
        type=Path,
        metavar="DIR",
        help="put the files in DIR at their manifest paths, with a manifest "
        "(DIR is then a hub folder: --repo DIR), instead of the cache",
    )
    _filters(parser, models=False)
    _run_options(parser, "download")


def _add_mirror(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(
        sub,
        "mirror",
        common,
        "copy a hub (or part of it) into a folder laid out as a hub",
    )
    parser.add_argument("dest", type=Path, metavar="DEST")
    _repo(parser)
    _filters(parser, models=True)
    parser.add_argument(
        "--no-data", action="store_true", help="skip the tarballs with test data"
    )
    _run_options(parser, "mirror")


def _add_cache(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "cache",
        help="inspect and tidy the local cache",
        description="inspect and tidy the local cache",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = _command(actions, "ls", common, "list cached models with sizes", "cache ls")
    _json(ls, "JSON lines")
    verify = _command(
        actions,
        "verify",
        common,
        "re-hash every cached file; report corrupt ones",
        "cache verify",
    )
    verify.add_argument(
        "--fix",
        action="store_true",
        help="remove corrupt files (they download again when used)",
    )
    _json(verify)
    prune = _command(
        actions,
        "prune",
        common,
        "remove temporary leftovers and superseded versions of cached files "
        "(a known manifest lists their path with another SHA-256)",
        "cache prune",
    )
    prune.add_argument("--dry-run", action="store_true", help="only list them")
    prune.add_argument(
        "--temp-only", action="store_true", help="only temporary leftovers"
    )
    prune.add_argument(
        "--unlisted",
        action="store_true",
        help="also files whose path no known manifest lists (files fetched from "
        "local-folder repos are in no cached manifest: add them with --repo)",
    )
    prune.add_argument(
        "--repo",
        action="append",
        metavar="R",
        help="also keep the files of this repo's manifest",
    )
    _json(prune)
    du = _command(actions, "du", common, "size of the cache by kind", "cache du")
    _json(du)
    rm = _command(
        actions,
        "rm",
        common,
        "remove one model's cached files, extracted folders and markers",
        "cache rm",
    )
    rm.add_argument("model", metavar="MODEL")
    rm.add_argument(
        "--opset", type=int, metavar="N", help="only this opset (default: every one)"
    )
    _json(rm)


def _add_manifest(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "manifest", help="build a hub's manifest", description="build a hub's manifest"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = _command(
        actions,
        "build",
        common,
        "scan DIR for .onnx files (and "
        "tarballs beside them) and write ONNX_HUB_MANIFEST.json",
        "manifest build",
    )
    build.add_argument("dir", type=Path, metavar="DIR")
    build.add_argument(
        "--output",
        type=Path,
        metavar="FILE",
        help="where to write it (default: DIR/ONNX_HUB_MANIFEST.json)",
    )
    _json(build)


def _add_serve(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(
        sub, "serve", common, "serve a hub folder over HTTP (Range, ETag)"
    )
    parser.add_argument("dir", type=Path, metavar="DIR")
    parser.add_argument(
        "--port",
        type=int,
        default=8000,
        metavar="P",
        help="port (default 8000; 0 picks a free one)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        metavar="H",
        help="address to listen on (default 127.0.0.1)",
    )


def _add_trust(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "trust",
        help="the list of trusted repos",
        description="the list of trusted repos",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = _command(actions, "add", common, "trust a repo from now on", "trust add")
    add.add_argument("repo", metavar="REPO")
    remove = _command(actions, "remove", common, "stop trusting a repo", "trust remove")
    remove.add_argument("repo", metavar="REPO")
    listing = _command(actions, "list", common, "show trusted repos", "trust list")
    _json(listing)


def _add_demo(sub: _Sub, common: argparse.ArgumentParser) -> None:
    parser = _command(
        sub,
        "demo",
        common,
        "serve, mirror, load and check a small "
        "example hub on this machine (no internet needed)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="D",
        help="work in D and keep it (default: a temporary folder)",
    )


_ADDERS: dict[str, Callable[[_Sub, argparse.ArgumentParser], None]] = {
    "list": _add_list,
    "info": _add_info,
    "download": _add_download,
    "mirror": _add_mirror,
    "cache": _add_cache,
    "manifest": _add_manifest,
    "serve": _add_serve,
    "trust": _add_trust,
    "demo": _add_demo,
}
"""Each command's parser builder, in the order ``--help`` lists them."""
