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
  skipped (a marker in ``dest/.asynchub/verified/`` avoids re-hashing it on every
  run; ``verify_existing=True`` re-hashes everything). A second run of a finished
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
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .. import _sync
from .._defaults import default_config
from .._transfer import ProgressCallback
from ..config import OFFICIAL_REPO, HubConfig
from ._report import FileFailure, FileOutcome, MirrorPlan, MirrorReport
from ._run import Options, PlanCallback, ShardArg, Target, run

__all__ = (
    "FileFailure",
    "FileOutcome",
    "MirrorPlan",
    "MirrorReport",
    "PlanCallback",
    "adownload",
    "amirror",
    "download",
    "mirror",
)


async def amirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = True,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Mirror the selected models of ``repo`` into ``dest``, laid out as a hub.

    Args:
        dest: The folder to fill (created if needed).
        repo: ``owner/name[:ref]``, an http(s) URL or a local folder.
        models: Model names to keep (case-insensitive); None keeps all.
        tags: Keep models with any of these tags; None keeps all.
        opsets: Keep these opsets; None keeps all.
        latest_only: Keep only each model's highest selected opset.
        with_data: Also mirror each model's ``model_with_data`` tarball.
        shard: ``(I, N)`` or ``"I/N"``: mirror only shard I (0-based) of N.
        verify_existing: Re-hash files already in ``dest`` instead of trusting
            their verified markers.
        check_space: Refuse to start when ``dest`` has less free space than the
            bytes still to fetch.
        dry_run: Plan only: report what would be fetched, fetch nothing.
        silent: Mirror a repo that is not on the trusted list (compat trust mode).
        include: fnmatch patterns (``*`` also matches ``/``) on each file's
            manifest path; when given, only files matching one are fetched.
        exclude: Patterns of files to leave out. A model whose ``.onnx`` file is
            filtered out is left out of the mirror's manifest too.
        force: Fetch every selected file again, even if it is in place.
        config: Limits, timeouts, trust...; when None, the module defaults
            (``HubConfig.from_env()`` and ``hub.set_dir``).
        progress: Called with every file's progress events (on the event loop).
        on_plan: Called once with the :class:`MirrorPlan` before fetching.

    Returns:
        The report; call ``raise_for_failures()`` to turn failures into an error.

    Raises:
        ModelNotFoundError, OpsetNotFoundError: A named model or opset is absent.
        ManifestError: The repo's manifest is missing or malformed.
        UntrustedRepoError: The repo is untrusted and ``silent`` is False.
        DiskFullError: Not enough free space (when ``check_space``).
        ConfigError: ``shard`` is malformed.
    """
    options = Options.of(
        models,
        tags,
        opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        include=include,
        exclude=exclude,
        force=force,
    )
    target = Target("mirror", Path(dest).expanduser().absolute())
    return await run(target, repo, options, config, progress, on_plan)


async def adownload(
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = False,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Fill the local cache with the selected models, so ``load`` works offline.

    Takes the same filters as :func:`amirror`; files go to the cache
    (``config.cache_dir`` or the onnx.hub default) in onnx.hub's layout and are
    marked verified. Tarballs are cached (not extracted) when ``with_data``;
    ``download_model_with_test_data`` extracts them later without the network.

    Raises:
        The same errors as :func:`amirror`.
    """
    options = Options.of(
        models,
        tags,
        opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        include=include,
        exclude=exclude,
        force=force,
    )
    config = config if config is not None else default_config()
    target = Target("cache", config.resolved_cache_dir())
    return await run(target, repo, options, config, progress, on_plan)


def mirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = True,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Sync twin of :func:`amirror` (callbacks run on asynchub's loop thread)."""
    return _sync.run(
        amirror,
        dest,
        repo,
        models=models,
        tags=tags,
        opsets=opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        include=include,
        exclude=exclude,
        force=force,
        config=config,
        progress=progress,
        on_plan=on_plan,
    )


def download(
    repo: str = OFFICIAL_REPO,
    *,
    models: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    opsets: Sequence[int] | None = None,
    latest_only: bool = False,
    with_data: bool = False,
    shard: ShardArg = None,
    verify_existing: bool = False,
    check_space: bool = True,
    dry_run: bool = False,
    silent: bool = False,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    force: bool = False,
    config: HubConfig | None = None,
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> MirrorReport:
    """Sync twin of :func:`adownload` (callbacks run on asynchub's loop thread)."""
    return _sync.run(
        adownload,
        repo,
        models=models,
        tags=tags,
        opsets=opsets,
        latest_only=latest_only,
        with_data=with_data,
        shard=shard,
        verify_existing=verify_existing,
        check_space=check_space,
        dry_run=dry_run,
        silent=silent,
        include=include,
        exclude=exclude,
        force=force,
        config=config,
        progress=progress,
        on_plan=on_plan,
    )
