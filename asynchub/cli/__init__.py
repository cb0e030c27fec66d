"""The command line: the program (_main), its parser (_parser), commands
(_commands), output (_output).

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._main import main
    from ._parser import build_parser

_LAZY = {
    "build_parser": "._parser",
    "main": "._main",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "build_parser",
    "main",
)
