"""The command line: parser (_main), commands (_commands), output (_output).

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._main import build_parser, main

_LAZY = {
    "build_parser": "._main",
    "main": "._main",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = (
    "build_parser",
    "main",
)
