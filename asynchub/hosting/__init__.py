"""Serving a hub: build a manifest, serve a folder, the example hub, demo.

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._build import folder_tags, write_manifest
    from ._demo import DemoResult, run_demo
    from ._serve import serving

_LAZY = {
    "DemoResult": "._demo",
    "folder_tags": "._build",
    "run_demo": "._demo",
    "serving": "._serve",
    "write_manifest": "._build",
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
    "DemoResult",
    "folder_tags",
    "run_demo",
    "serving",
    "write_manifest",
)
