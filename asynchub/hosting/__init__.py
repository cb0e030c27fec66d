"""Serving a hub: build a manifest, serve a folder, the example hub, demo.

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "DemoResult",
    "folder_tags",
    "run_demo",
    "serving",
    "write_manifest",
)
