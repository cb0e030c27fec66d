"""Error text in the command line's words.

The library's hints name Python parameters (``silent=True``, ``force_reload=True``,
``hub.set_dir()``); on the command line the same advice is an option. The CLI
rewrites a hint through :func:`cli_hint` and a whole error through
:func:`cli_message`; the library's own text stays as it is for Python callers.
"""

from __future__ import annotations

from ..errors import AsyncHubError, OpsetNotFoundError

__all__ = ("cli_hint", "cli_message")

# Longest phrases first: "pass silent=True (--yes)" before "silent=True".
_PHRASES = (
    ("pass silent=True (--yes) if you trust it", "pass --yes if you trust it"),
    ("pass silent=True if you trust it", "pass --yes if you trust it"),
    ("pass check_space=False (--no-space-check)", "pass --no-space-check"),
    ("run 'asynchub list' or hub.list_models()", "run 'asynchub list'"),
    ("with hub.set_dir() or ONNX_HOME", "with --cache-dir or ONNX_HOME"),
    ("'asynchub cache ls' or hub.scan_cache()", "'asynchub cache ls'"),
    ("hub.set_dir()", "--cache-dir"),
    ("force_reload=True", "--force"),
    ("silent=True", "--yes"),
)


def cli_hint(hint: str | None) -> str | None:
    """``hint`` with the Python API's words replaced by the CLI's options."""
    if hint is None:
        return None
    for api, cli in _PHRASES:
        hint = hint.replace(api, cli)
    return hint


def cli_message(exc: AsyncHubError) -> str:
    """The one line the CLI prints for ``exc``: message, then the hint in CLI words."""
    message, hint = exc.message, cli_hint(exc.hint)
    if isinstance(exc, OpsetNotFoundError) and exc.valid:
        message = message.split(". Valid opsets:")[0]
        choices = " or ".join(f"--opset {n}" for n in exc.valid)
        hint = f"use {choices}, or leave out --opset for the newest"
    return f"{message} ({hint})" if hint else message
