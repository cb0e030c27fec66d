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

import contextlib
import os
from collections.abc import AsyncIterator
from typing import cast

from typing_extensions import Unpack

from .. import _sync
from .._default_hub import default_client
from ..client import AsyncHub
from ..config import OFFICIAL_REPO
from ._report import FileFailure, FileOutcome, MirrorPlan, MirrorReport
from ._run import PlanCallback
from ._selection import HubRunArgs, RunArgs, Selection, Switches

__all__ = (
    "FileFailure",
    "FileOutcome",
    "MirrorPlan",
    "MirrorReport",
    "PlanCallback",
    "RunArgs",
    "Selection",
    "Switches",
    "adownload",
    "amirror",
    "download",
    "mirror",
)


async def amirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    **kwargs: Unpack[RunArgs],
) -> MirrorReport:
    """Mirror the selected models of ``repo`` into ``dest``, laid out as a hub.

    Runs on the module's default :class:`~asynchub.client.AsyncHub` (the one
    ``hub.aload`` uses), or on a client of its own when ``config`` is given; a
    service holding a client calls :meth:`AsyncHub.mirror` instead.

    Args:
        dest: The folder to fill (created if needed).
        repo: ``owner/name[:ref]``, ``hf://owner/name[@rev]``, an http(s) URL or a
            local folder.
        **kwargs: ``selection=`` a :class:`Selection`, or its fields as shortcuts
            (``models``, ``tags``, ``opsets``, ``latest_only``, ``with_data``,
            ``include``, ``exclude``, ``shard``); the :class:`Switches`
            (``verify_existing``, ``check_space``, ``dry_run``, ``silent``,
            ``force``); ``config`` (limits, timeouts, trust; the module defaults when
            None); ``progress`` (every file's progress events, on the event loop);
            ``on_plan`` (called once with the :class:`MirrorPlan` before fetching).

    Returns:
        The report; call ``raise_for_failures()`` to turn failures into an error.

    Raises:
        ModelNotFoundError, OpsetNotFoundError: A named model or opset is absent.
        ManifestError: The repo's manifest is missing or malformed.
        UntrustedRepoError: The repo is untrusted and ``silent`` is False.
        DiskFullError: Not enough free space (when ``check_space``).
        ConfigError: ``shard`` is malformed.
        TypeError: An unknown keyword (the message names the closest one).
    """
    async with _hub_for(kwargs) as (hub, rest):
        return await hub.mirror(dest, repo, **rest)


async def adownload(
    repo: str = OFFICIAL_REPO, **kwargs: Unpack[RunArgs]
) -> MirrorReport:
    """Fill the local cache with the selected models, so ``load`` works offline.

    Takes the same keywords as :func:`amirror`; files go to the cache
    (``config.cache_dir`` or the onnx.hub default) in onnx.hub's layout and are
    marked verified. Tarballs are cached (not extracted) when ``with_data``
    (default False here); ``download_model_with_test_data`` extracts them later
    without the network.

    Raises:
        The same errors as :func:`amirror`.
    """
    async with _hub_for(kwargs) as (hub, rest):
        return await hub.download(repo, **rest)


def mirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    **kwargs: Unpack[RunArgs],
) -> MirrorReport:
    """Sync twin of :func:`amirror` (callbacks run on asynchub's loop thread)."""
    return _sync.run(amirror, dest, repo, **kwargs)


def download(repo: str = OFFICIAL_REPO, **kwargs: Unpack[RunArgs]) -> MirrorReport:
    """Sync twin of :func:`adownload` (callbacks run on asynchub's loop thread)."""
    return _sync.run(adownload, repo, **kwargs)


@contextlib.asynccontextmanager
async def _hub_for(
    kwargs: RunArgs,
) -> AsyncIterator[tuple[AsyncHub, HubRunArgs]]:
    """The client a module call runs on, and the keywords it passes on."""
    config = kwargs.get("config")
    rest = cast(HubRunArgs, {k: v for k, v in kwargs.items() if k != "config"})
    if config is None:
        yield await default_client(), rest
        return
    async with AsyncHub(config) as hub:
        yield hub, rest
