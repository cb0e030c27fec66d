"""Drop-in replacement for the removed ``onnx.hub``, plus async twins.

``from asynchub import hub`` gives onnx.hub's functions with the same names,
parameters, defaults and return types (``load``, ``list_models``, ``get_model_info``,
``download_model_with_test_data``, ``load_composite_model``, ``set_dir``,
``get_dir``), and async twins with an ``a`` prefix (``await hub.aload("mnist")``).
Beyond onnx.hub: ``download_model`` (the verified cached file's path, like
``huggingface_hub.hf_hub_download``), ``scan_cache`` and ``remove_cached_model``
(what ``asynchub cache ls`` and ``cache rm`` do), ``download`` and ``mirror``.

The module functions use a default client per event loop, built from
``HubConfig.from_env()`` at call time (and ``set_dir``), so environment variables
set after import are honoured. Sync functions run their async twin on asynchub's
background loop: they work in scripts and inside a running loop (Jupyter) alike.
Unlike the async twins (which raise ``UntrustedRepoError``), they prompt on stdin
before downloading from an untrusted repo unless ``silent=True``, as onnx.hub did.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from typing_extensions import Unpack

from . import _sync
from ._default_hub import aclose, default_client, run_prompting
from ._defaults import default_config, get_dir, set_dir
from .cache import CachedItem, RemoveResult, list_cache, remove_model
from .client import AsyncHub
from .config import OFFICIAL_REPO
from .manifest import ModelInfo
from .mirror import HubRunArgs, MirrorPlan, MirrorReport, RunArgs

if TYPE_CHECKING:
    import onnx

__all__ = (
    "MirrorPlan",
    "MirrorReport",
    "ModelInfo",
    "CachedItem",
    "aclose",
    "adownload",
    "adownload_model",
    "adownload_model_with_test_data",
    "aget_model_info",
    "alist_models",
    "aload",
    "aload_composite_model",
    "amirror",
    "download",
    "download_model",
    "download_model_with_test_data",
    "get_dir",
    "get_model_info",
    "list_models",
    "load",
    "load_composite_model",
    "mirror",
    "remove_cached_model",
    "scan_cache",
    "set_dir",
)


async def alist_models(
    repo: str = OFFICIAL_REPO,
    model: str | None = None,
    tags: list[str] | None = None,
) -> list[ModelInfo]:
    """Models in ``repo`` matching ``model`` (case-insensitive) and any of ``tags``.

    Args:
        repo: ``owner/name[:ref]`` (GitHub), an http(s) URL, or a local folder.
        model: A name to match, case-insensitively; None matches every model.
        tags: Keep models with any of these tags (case-insensitive); None keeps all.

    Raises:
        ManifestNotFoundError: The repo has no manifest (also an AssertionError).
    """
    client = await default_client()
    return await client.list_models(repo, model, tags)


async def aget_model_info(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
) -> ModelInfo:
    """The ModelInfo of ``model`` at ``opset`` (the highest opset when None).

    Raises:
        ModelNotFoundError: No model has that name (also an AssertionError).
        OpsetNotFoundError: The model has no such opset (also an AssertionError).
    """
    client = await default_client()
    return await client.get_model_info(model, repo, opset)


async def aload(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> onnx.ModelProto | None:
    """Download a model by name (or reuse the verified cached copy) and load it.

    Args:
        model: The model's name in the manifest (case-insensitive).
        repo: ``owner/name[:ref]`` (GitHub), an http(s) URL, or a local folder.
        opset: The opset to get; None picks the highest.
        force_reload: Download again even if a verified copy is cached.
        silent: Download from an untrusted repo without asking (ignored in
            strict trust mode, where only allow-listed repos are used).

    Returns:
        The ModelProto, or None when the trust prompt was declined (sync API).

    Raises:
        UntrustedRepoError: The repo is untrusted and ``silent`` is False.
        IntegrityError: The download's SHA-256 differs from the manifest's.
        TransferError: The file could not be downloaded after every retry.
    """
    client = await default_client()
    return await client.load(model, repo, opset, force_reload, silent)


async def adownload_model(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> Path | None:
    """Make sure a model's ``.onnx`` file is cached and verified; return its path.

    The path is in the cache (``<dirs>/<sha256>_<name>.onnx``, onnx.hub's layout);
    load it with ``onnx.load`` or hand it to an inference runtime. Nothing is
    parsed, so this is also the way to fetch models onnx cannot load here.

    Returns:
        The cached file's path, or None when the trust prompt was declined.

    Raises:
        The same errors as :func:`aload`.
    """
    client = await default_client()
    return await client.download_model(model, repo, opset, force_reload, silent)


async def adownload_model_with_test_data(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> str | None:
    """Download a model's tarball, extract it safely, return the model folder.

    The folder holds ``model.onnx`` and ``test_data_set_*``. Archives with links,
    devices, absolute or ``..`` names, or that exceed the size limits are refused.

    Raises:
        ArchiveError: The tarball holds a member that is refused or too large.
        UntrustedRepoError, IntegrityError, TransferError: as for :func:`aload`.
    """
    client = await default_client()
    return await client.download_model_with_test_data(
        model, repo, opset, force_reload, silent
    )


async def aload_composite_model(
    network_model: str,
    preprocessing_model: str,
    network_repo: str = OFFICIAL_REPO,
    preprocessing_repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> onnx.ModelProto | None:
    """Load a preprocessing and a network model and merge them into one.

    Raises:
        ValueError: A non-default domain is imported at two different versions.
        RuntimeError: One of the models could not be loaded (prompt declined).
    """
    client = await default_client()
    return await client.load_composite_model(
        network_model,
        preprocessing_model,
        network_repo,
        preprocessing_repo,
        opset,
        force_reload,
        silent,
    )


def list_models(
    repo: str = OFFICIAL_REPO,
    model: str | None = None,
    tags: list[str] | None = None,
) -> list[ModelInfo]:
    """Sync twin of :func:`alist_models`."""
    return run_prompting(alist_models, repo, model, tags)


def get_model_info(
    model: str, repo: str = OFFICIAL_REPO, opset: int | None = None
) -> ModelInfo:
    """Sync twin of :func:`aget_model_info`."""
    return run_prompting(aget_model_info, model, repo, opset)


def load(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> onnx.ModelProto | None:
    """Sync twin of :func:`aload`; prompts on stdin for an untrusted repo."""
    return run_prompting(aload, model, repo, opset, force_reload, silent)


def download_model(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> Path | None:
    """Sync twin of :func:`adownload_model`; prompts on stdin for an untrusted repo."""
    return run_prompting(adownload_model, model, repo, opset, force_reload, silent)


def scan_cache() -> list[CachedItem]:
    """What is in the cache (``hub.get_dir()``): what ``asynchub cache ls`` shows.

    One :class:`CachedItem` per cached model file, tarball and extracted folder,
    with its model, opset and repo when a known manifest lists it, its size and
    when it was last read. Blocking (it walks the folder).
    """
    return list_cache(default_config().resolved_cache_dir())


def remove_cached_model(model: str, opset: int | None = None) -> RemoveResult:
    """Remove one model's cached files, extracted folders and markers (every
    cached opset unless ``opset``): what ``asynchub cache rm`` does.

    Raises:
        ModelNotFoundError: Nothing cached is that model.
    """
    return remove_model(default_config().resolved_cache_dir(), model, opset)


def download_model_with_test_data(
    model: str,
    repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> str | None:
    """Sync twin of :func:`adownload_model_with_test_data`."""
    return run_prompting(
        adownload_model_with_test_data,
        model,
        repo,
        opset,
        force_reload,
        silent,
    )


def load_composite_model(
    network_model: str,
    preprocessing_model: str,
    network_repo: str = OFFICIAL_REPO,
    preprocessing_repo: str = OFFICIAL_REPO,
    opset: int | None = None,
    force_reload: bool = False,
    silent: bool = False,
) -> onnx.ModelProto | None:
    """Sync twin of :func:`aload_composite_model`."""
    return run_prompting(
        aload_composite_model,
        network_model,
        preprocessing_model,
        network_repo,
        preprocessing_repo,
        opset,
        force_reload,
        silent,
    )


# ------------------------------------------------ mirrors and cache fills


async def amirror(
    dest: str | os.PathLike[str],
    repo: str = OFFICIAL_REPO,
    **kwargs: Unpack[RunArgs],
) -> MirrorReport:
    """Mirror the selected models of ``repo`` into ``dest``, laid out as a hub.

    Runs on the module's default :class:`~asynchub.client.AsyncHub` (the one
    :func:`aload` uses), or on a client of its own when ``config`` is given; a
    service holding a client calls :meth:`AsyncHub.mirror` instead. How a run
    behaves (manifest last, incremental, shards) is told in :mod:`asynchub.mirror`.

    Args:
        dest: The folder to fill (created if needed).
        repo: ``owner/name[:ref]``, ``hf://owner/name[@rev]``, an http(s) URL or a
            local folder.
        **kwargs: ``selection=`` a :class:`~asynchub.mirror.Selection`, or its
            fields as shortcuts (``models``, ``tags``, ``opsets``, ``latest_only``,
            ``with_data``, ``include``, ``exclude``, ``shard``); the
            :class:`~asynchub.mirror.Switches`
            (``verify_existing``, ``check_space``, ``dry_run``, ``silent``,
            ``force``); ``config`` (limits, timeouts, trust; the module defaults when
            None); ``progress`` (every file's progress events, on the event loop);
            ``on_plan`` (called once with the :class:`~asynchub.mirror.MirrorPlan`
            before fetching).

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


def _verify_repo_ref(repo: str) -> bool:
    """onnx.hub's private helper, which onnx's own tests called: True only for the
    official repo at ``main`` (``onnx/models:main``)."""
    from .sources import resolve_repo

    source = resolve_repo(repo, default_config())
    return source.official and source.trusted_by_default


def __getattr__(name: str) -> object:
    """``_ONNX_HUB_DIR``: the cache folder, as onnx.hub's module global held it
    (computed now, so ``set_dir`` and ``ONNX_HOME`` are honoured)."""
    if name == "_ONNX_HUB_DIR":
        return get_dir()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@atexit.register
def _close_default_clients() -> None:
    """Close the sync API's sessions cleanly when the interpreter exits."""
    _sync.default_loop().shutdown(aclose, timeout=5.0)
