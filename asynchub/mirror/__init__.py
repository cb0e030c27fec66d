"""Mirror a hub into a folder, or fill the local cache, and report what happened.

``amirror(dest, repo)`` copies the selected models (and, with ``with_data``, their
tarballs) into ``dest`` laid out as a hub: each file at its ``model_path`` and
``dest/ONNX_HUB_MANIFEST.json`` listing exactly the selected entries. The folder can
be served by any static web server (or ``asynchub serve``) and used as
``repo="/path/to/dest"`` or ``repo="http://host/dest/"``. ``adownload(repo)`` fills
the local cache instead (onnx.hub's layout), so ``load`` later works offline.

How a run behaves:

- **Manifest last.** The manifest is written (atomically) only after every selected
  file is in place and verified, so a folder with a manifest is always a complete
  hub: a half-finished or failed mirror never looks like a valid one. A rerun that
  must replace a file listed by an older manifest removes that manifest first.
- **Incremental.** A file already present with the right size and SHA-256 is
  skipped (its stamp, or a marker in ``dest/.asynchub/verified/`` where there are
  no extended attributes, avoids re-hashing it on every run;
  ``verify_existing=True`` re-hashes everything). A second run of a finished
  mirror transfers nothing. Interrupted files resume from the bytes on disk.
- **Failures are collected.** One failing file does not stop the others; the
  :class:`MirrorReport` lists them and ``raise_for_failures()`` raises
  :class:`~asynchub.errors.MirrorError`. Rerun the same call to retry them.
- **Disk space.** Before the first byte, the free space at ``dest`` is compared with
  the bytes still to fetch; ``check_space=False`` skips the check.
- **Trust.** A repo that is not trusted (see :mod:`asynchub.cache._trust`) needs
  ``silent=True``; in strict trust mode only the allow-list is used.

Many machines: ``shard=(I, N)`` (or ``"I/N"``, ``I`` counted from 0) keeps only the
files whose path hashes to shard ``I``, so N workers writing into one shared folder
fetch every selected file exactly once. Whichever shard finds the whole selection
complete writes the manifest (identical bytes from every shard); a final unsharded
run also writes it, transferring nothing. For example a Kubernetes indexed Job
runs ``asynchub mirror /shared/zoo --shard $JOB_COMPLETION_INDEX/$N`` with
``completions: N``, a Slurm array ``--array=0-(N-1)`` runs
``--shard $SLURM_ARRAY_TASK_ID/$N``, and Ray runs one task per shard calling
``mirror(dest, shard=(i, n))``. Pin the repo ref (``onnx/models:<commit>``) so every
shard reads the same manifest.

The package: the selection (``_selection``), planning and shards (``_plan``), one run
(``_run``) and its report (``_report``). The functions ``amirror``, ``adownload``,
``mirror`` and ``download`` are defined in :mod:`asynchub.hub` (they run on the
module's default client) and stay importable from here by name. This face loads
each name on first use (PEP 562), so importing one module does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ..hub import adownload, amirror, download, mirror
    from ._plan import format_bytes, parse_shard
    from ._report import (
        FileFailure,
        FileOutcome,
        MirrorPlan,
        MirrorReport,
        PlanCallback,
    )
    from ._run import Job, Target, run
    from ._selection import HubRunArgs, RunArgs, Selection, Switches, split_args

_LAZY = {
    "FileFailure": "._report",
    "FileOutcome": "._report",
    "MirrorPlan": "._report",
    "MirrorReport": "._report",
    "HubRunArgs": "._selection",
    "Job": "._run",
    "PlanCallback": "._report",
    "RunArgs": "._selection",
    "Selection": "._selection",
    "Switches": "._selection",
    "Target": "._run",
    "run": "._run",
    "split_args": "._selection",
    "adownload": "..hub",  # the module functions live in hub; kept here by name
    "amirror": "..hub",  # the module functions live in hub; kept here by name
    "download": "..hub",  # the module functions live in hub; kept here by name
    "format_bytes": "._plan",
    "mirror": "..hub",  # the module functions live in hub; kept here by name
    "parse_shard": "._plan",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


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
