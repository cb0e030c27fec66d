"""Bulk mirroring: plan (_plan) -> run (_run) -> report (_report); API (_api).

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import adownload, amirror, download, mirror
    from ._plan import format_bytes, parse_shard
    from ._report import FileFailure, FileOutcome, MirrorPlan, MirrorReport
    from ._run import Job, PlanCallback, Target, run
    from ._selection import HubRunArgs, RunArgs, Selection, Switches, split_args

_LAZY = {
    "FileFailure": "._report",
    "FileOutcome": "._report",
    "MirrorPlan": "._report",
    "MirrorReport": "._report",
    "HubRunArgs": "._selection",
    "Job": "._run",
    "PlanCallback": "._run",
    "RunArgs": "._selection",
    "Selection": "._selection",
    "Switches": "._selection",
    "Target": "._run",
    "run": "._run",
    "split_args": "._selection",
    "adownload": "._api",
    "amirror": "._api",
    "download": "._api",
    "format_bytes": "._plan",
    "mirror": "._api",
    "parse_shard": "._plan",
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
    "FileFailure",
    "FileOutcome",
    "MirrorPlan",
    "MirrorReport",
    "HubRunArgs",
    "Job",
    "PlanCallback",
    "RunArgs",
    "Selection",
    "Switches",
    "Target",
    "adownload",
    "amirror",
    "download",
    "format_bytes",
    "mirror",
    "parse_shard",
    "run",
    "split_args",
)
