"""The ``asynchub`` command (also ``python -m asynchub``).

::

    asynchub list [--repo R] [--model M] [--tag T ...] [--json]
    asynchub info MODEL [--opset N] [--repo R] [--json]
    asynchub download MODEL [MODEL ...] [--opset N] [--with-data] [--repo R]
                           [--force] [--local-dir DIR] [--include GLOB] [--exclude GLOB]
    asynchub download --all [--tag T ...] [--opset N ...] [--latest-only] [--shard I/N]
    asynchub mirror DEST [--repo R] [--tag T ...] [--model M ...] [--latest-only]
                         [--no-data] [--shard I/N] [--dry-run] [--concurrency N]
                         [--report FILE] [--include GLOB] [--exclude GLOB]
    asynchub cache ls | verify [--fix] | prune [--dry-run] [--unlisted] | du
    asynchub cache rm MODEL [--opset N]
    asynchub manifest build DIR [--output FILE]
    asynchub serve DIR [--port P] [--host H]
    asynchub trust add REPO | trust remove REPO | trust list
    asynchub demo [--dir D]

Every command takes ``--quiet``, ``--debug`` and ``--cache-dir D``. Repeat ``--tag``,
``--model`` and ``--opset`` to give several. Exit codes: 0 success, 1 something
failed while working (a file, a corrupt cache entry, a missing model), 2 the command
line or configuration is wrong. Errors are one line with a hint; ``--debug`` adds
the traceback. Output and progress rendering live in :mod:`asynchub.cli._output`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence

import anyio

from .._loops import wants_uvloop
from ..config import HubConfig
from ..errors import AsyncHubError, ConfigError, RepoSpecError
from ._commands import COMMANDS
from ._output import ConsoleLogHandler, Output
from ._parser import build_parser, named_command

__all__ = ("main",)

Handler = Callable[[argparse.Namespace, Output], Awaitable[int]]
_USAGE_ERRORS = (ConfigError, RepoSpecError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command line (``sys.argv[1:]`` when None); return its exit code.

    Run as the program (``argv`` None), it first freezes what the imports built
    (:func:`gc.freeze`): the cyclic collector then never walks those objects again,
    and the interpreter's exit skips collecting them, which took about 0.1 s, as
    long as mirroring a small hub. A caller that passes ``argv`` (a test, a script)
    keeps its collector as it was.
    """
    if argv is None:
        gc.freeze()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(named_command(argv)).parse_args(argv)
    except SystemExit as exc:  # argparse: --help/--version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2
    args.argv = argv
    output = Output(quiet=args.quiet)
    handler = ConsoleLogHandler.install(output, debug=args.debug)
    try:
        return _run(args, output)
    finally:
        handler.uninstall()


def _run(args: argparse.Namespace, output: Output) -> int:
    command: Handler = COMMANDS[args.handler]
    try:
        options = backend_options()
        logging.getLogger("asynchub").debug(
            "event loop: %s", "uvloop" if options["use_uvloop"] else "asyncio"
        )
        return anyio.run(command, args, output, backend_options=options)
    except (KeyboardInterrupt, asyncio.CancelledError):
        # Ctrl-C cancels the command; Python 3.10 has no Task.uncancel(), so there
        # anyio reports it as the CancelledError itself instead of KeyboardInterrupt.
        if args.handler == "serve":
            output.note("stopped")
            return 0
        output.error("interrupted; run the same command again to resume")
        return 130
    except AsyncHubError as exc:
        from ._words import cli_message

        _report_error(args, output, cli_message(exc))
        return 2 if isinstance(exc, _USAGE_ERRORS) else 1
    except Exception as exc:  # a bug: one line, or the traceback with --debug
        _report_error(
            args,
            output,
            f"unexpected {type(exc).__name__}: {exc} "
            "(rerun with --debug for the traceback)",
        )
        return 1


def backend_options() -> dict[str, bool]:
    """anyio's asyncio options: the event loop asked for (see ``asynchub._loops``)."""
    return {"use_uvloop": wants_uvloop(HubConfig.from_env().event_loop)}


def _report_error(args: argparse.Namespace, output: Output, line: str) -> None:
    if args.debug:
        traceback.print_exc(file=sys.stderr)
    output.error(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
