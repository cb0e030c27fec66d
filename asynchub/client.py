"""Hub clients: :class:`AsyncHub` (async) and :class:`Hub` (its sync twin).

A client holds a :class:`~asynchub.config.HubConfig`, one HTTP session and one
transfer engine, so every call made through it shares one connection budget and
concurrent requests for the same file share one download. Services should create
one client and keep it::

    async with AsyncHub() as hub:
        model = await hub.load("mnist")

The module-level functions of :mod:`asynchub.hub` use a default client.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio

from . import _sync
from ._transfer import Engine, FileSpec, ProgressCallback
from .cache import (
    ManifestStore,
    cache_path,
    check_writable_root,
    ensure_verified,
    is_allowlisted,
    is_regular,
    mark_verified,
    os_error,
    sha256_file,
)
from .config import OFFICIAL_REPO, HubConfig
from .errors import (
    ArchiveError,
    ArchiveUnavailableError,
    AsyncHubError,
    CacheError,
    HTTPStatusError,
    ModelNotFoundError,
    OfflineCacheMissError,
    RemoteFileNotFoundError,
    UntrustedRepoError,
)
from .manifest import Manifest, ModelInfo
from .sources import Source, hf_manifest, resolve_repo

if TYPE_CHECKING:  # onnx (and numpy) cost 0.1 s to import: only when a model loads
    import onnx

__all__ = ("AsyncHub", "Hub", "prompt_stdin")

_log = logging.getLogger("asynchub")
Confirm = Callable[[str], bool]


def prompt_stdin(message: str) -> bool:
    """Ask on stdin whether to trust a repo, as onnx.hub did; True on "y".

    Raises:
        UntrustedRepoError: stdin is closed (CI, a service): nobody can answer.
    """
    print(message, file=sys.stderr)  # noqa: T201 - the prompt is the interface
    try:
        answer = input("Continue?[y/n] ")
    except EOFError:
        raise UntrustedRepoError(
            f"{message} Nobody can answer the prompt: stdin is closed"
        ) from None
    return answer.strip().lower() == "y"


class AsyncHub:
    """An async hub client; use it as an async context manager, or call aclose().

    Args:
        config: Limits, timeouts, cache dir...; ``HubConfig.from_env()`` when None.
        progress: Called with every progress event of every download.
        confirm: Asked (in a worker thread) whether to trust an unknown repo when
            ``silent`` is False; when None, an untrusted repo raises
            :class:`~asynchub.errors.UntrustedRepoError`.
    """

    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        progress: ProgressCallback | None = None,
        confirm: Confirm | None = None,
    ) -> None:
        self.config = config if config is not None else HubConfig.from_env()
        self._progress = progress
        self._confirm = confirm
        self._engine: Engine | None = None
        self._manifests: ManifestStore | None = None
        self._open_lock = anyio.Lock()
        self._fills: dict[Path, tuple[anyio.Lock, list[int]]] = {}

    async def __aenter__(self) -> AsyncHub:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP session; the client reopens on next use."""
        engine, self._engine, self._manifests = self._engine, None, None
        if engine is not None:
            with anyio.CancelScope(shield=True):
                await engine.__aexit__(None, None, None)

    async def _ensure_open(self) -> tuple[Engine, ManifestStore]:
        async with self._open_lock:
            if self._engine is None or self._manifests is None:
                engine = Engine(self.config)
                await engine.__aenter__()
                self._engine = engine
                self._manifests = ManifestStore(self.config, engine)
            return self._engine, self._manifests

    @property
    def cache_dir(self) -> Path:
        """The cache root this client reads and writes."""
        return self.config.resolved_cache_dir()

    def source(self, repo: str) -> Source:
        """The resolved :class:`~asynchub.sources.Source` of a repo string."""
        return resolve_repo(repo, self.config)

    async def manifest(self, repo: str = OFFICIAL_REPO) -> Manifest:
        """The validated manifest of ``repo``."""
        return (await self.resolve(repo))[0]

    async def resolve(self, repo: str = OFFICIAL_REPO) -> tuple[Manifest, Source]:
        """The manifest of ``repo`` and the Source its files come from.

        For a GitHub ref the Source is pinned to the commit the manifest was read at.
        """
        _, manifests = await self._ensure_open()
        return await manifests.resolve(self.source(repo))

    async def list_models(
        self,
        repo: str = OFFICIAL_REPO,
        model: str | None = None,
        tags: list[str] | None = None,
    ) -> list[ModelInfo]:
        """Models whose name matches (case-insensitive) and with any of ``tags``."""
        return (await self.manifest(repo)).select(model, tags)

    async def get_model_info(
        self, model: str, repo: str = OFFICIAL_REPO, opset: int | None = None
    ) -> ModelInfo:
        """The entry for ``model`` at ``opset`` (the highest when None).

        Raises:
            ModelNotFoundError: No model has that name.
            OpsetNotFoundError: The model exists, but not at that opset.
        """
        return (await self.manifest(repo)).find(model, opset)

    async def download_model(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> Path | None:
        """Make sure the model file is cached and verified; return its path.

        Returns None when the repo is untrusted and the prompt was declined.
        """
        manifest, source = await self.resolve(repo)
        info = manifest.find(model, opset)
        meta = info.entry.metadata
        return await self._cached_file(
            source,
            info.model_path,
            meta.model_sha,
            meta.model_bytes,
            force_reload,
            silent,
        )

    async def load(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> onnx.ModelProto | None:
        """Download (or reuse from the cache) and load a model by name."""
        path = await self.download_model(model, repo, opset, force_reload, silent)
        if path is None:
            return None
        return await anyio.to_thread.run_sync(_load_onnx, path)

    async def download_model_with_test_data(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> str | None:
        """Download and safely extract a model's tarball; return the model folder.

        The folder holds ``model.onnx`` and ``test_data_set_*``. The tarball is
        extracted beside it (``<sha>_<name>``) by an allow-list extractor.
        """
        manifest, source = await self.resolve(repo)
        info = manifest.find(model, opset)
        meta = info.entry.metadata
        if meta.model_with_data_path is None:
            raise ModelNotFoundError(
                f"{info.model} (opset {info.opset}) has no model_with_data archive",
                hint="use load() for the model alone",
            )
        try:
            tarball = await self._cached_file(
                source,
                meta.model_with_data_path,
                meta.model_with_data_sha,
                meta.model_with_data_bytes,
                force_reload,
                silent,
            )
        except RemoteFileNotFoundError as err:
            raise _unavailable(source, meta.model_with_data_path, err) from err
        if tarball is None:
            return None
        folder = await self._extract(tarball, meta.model_with_data_sha, force_reload)
        return str(folder)

    async def load_composite_model(
        self,
        network_model: str,
        preprocessing_model: str,
        network_repo: str = OFFICIAL_REPO,
        preprocessing_repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> onnx.ModelProto | None:
        """Load a preprocessing and a network model (concurrently) and merge them.

        Raises the first load's error as itself, CompositeLoadError when a repo was
        declined at the trust prompt, CompositeMergeError when the models cannot be
        merged (:mod:`asynchub._composite`).
        """
        from ._composite import load_pair

        async def one(name: str, repo: str) -> onnx.ModelProto | None:
            return await self.load(name, repo, opset, force_reload, silent)

        net, pre = await load_pair(
            one,
            (network_model, network_repo),
            (preprocessing_model, preprocessing_repo),
        )
        names = (network_model, preprocessing_model)
        return await anyio.to_thread.run_sync(_merge, net, pre, names)

    async def _cached_file(
        self,
        source: Source,
        path: str,
        sha: str | None,
        size: int | None,
        force_reload: bool,
        silent: bool,
    ) -> Path | None:
        dest = cache_path(self.cache_dir, path, sha)
        if not force_reload and await ensure_verified(self.cache_dir, dest, sha):
            _log.info("Using cached %s from %s", path, dest)
            return dest
        if self.config.offline:
            raise OfflineCacheMissError(f"{path} is not in the cache at {dest}")
        if not await self._trusted(source, silent):
            return None
        async with self._filling(dest):
            if not force_reload and await ensure_verified(self.cache_dir, dest, sha):
                return dest  # another call on this client filled it meanwhile
            urls = source.file_urls(path)
            spec = FileSpec(urls, dest, sha, size, label=path, root=self.cache_dir)
            try:
                return await self._download(spec)
            except HTTPStatusError as err:
                if source.kind == "hf" and err.status == 401:  # a 403 may be the CDN's
                    raise hf_manifest.auth_error(err, source.spec) from None
                raise

    @contextlib.asynccontextmanager
    async def _filling(self, dest: Path) -> AsyncIterator[None]:
        """One fill of ``dest`` at a time on this client, so that calls which all
        missed the cache download it once (the engine only joins files in flight)."""
        entry = self._fills.setdefault(dest, (anyio.Lock(), [0]))
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0 and self._fills.get(dest) is entry:
                del self._fills[dest]

    async def _download(self, spec: FileSpec) -> Path:
        engine, _ = await self._ensure_open()
        _log.info("Downloading %s to %s", spec.label, spec.dest)
        try:
            result = await engine.fetch(spec, progress=self._progress)
        except CacheError:  # say what is wrong with the folder itself, if anything
            await anyio.to_thread.run_sync(check_writable_root, self.cache_dir)
            raise
        if spec.sha256 is None:
            _log.warning(
                "%s has no SHA-256 in its manifest, so it could not be verified; "
                "what was downloaded has SHA-256 %s",
                spec.label,
                result.sha256,
            )
        await mark_verified(self.cache_dir, result.path, result.sha256)
        return result.path

    async def _trusted(self, source: Source, silent: bool) -> bool:
        if await anyio.to_thread.run_sync(is_allowlisted, source, self.config):
            return True
        message = (
            f"The model repo specification {source.spec} is not trusted and may "
            "contain security vulnerabilities. Only continue if you trust this repo."
        )
        if self.config.trust == "strict":
            raise UntrustedRepoError(
                f"{source.spec} is not on the trusted list (strict trust mode)",
                hint="add it with 'asynchub trust add REPO' or ASYNCHUB_TRUSTED_REPOS",
            )
        if silent:
            return True
        if self._confirm is None:
            raise UntrustedRepoError(message)
        return await anyio.to_thread.run_sync(self._confirm, message)

    async def _extract(
        self, tarball: Path, sha: str | None, force_reload: bool
    ) -> Path:
        """Extract (or reuse the proven extraction of) ``tarball``; the model folder.

        An existing folder is reused only if its marker names the tarball's
        SHA-256 (:func:`~asynchub.cache._archive.extract_tarball`); the folder returned
        must hold ``model.onnx``.
        """
        target = tarball.with_name(tarball.name[: -len(".tar.gz")])
        if not tarball.name.endswith(".tar.gz"):
            target = tarball.with_name(tarball.name + ".d")
        return await anyio.to_thread.run_sync(
            _extract_sync, tarball, target, sha, force_reload, self.config
        )


def _extract_sync(
    tarball: Path, target: Path, sha: str | None, force_reload: bool, config: HubConfig
) -> Path:
    """In a worker thread: extract, find the model folder; OSErrors mapped."""
    # tarfile, gzip, bz2, lzma: imported when a tarball is extracted, not at start
    from .cache import extract_tarball, find_model_folder

    try:
        if force_reload:
            _remove_tree(target)
        digest = sha if sha is not None else sha256_file(tarball)
        extract_tarball(tarball, target, config.archive, archive_sha256=digest)
        folder = find_model_folder(target)
    except OSError as exc:
        if isinstance(exc, AsyncHubError):
            raise
        raise os_error(exc, target, "extract into") from exc
    if not is_regular(folder / "model.onnx"):
        raise ArchiveError(
            f"{tarball.name} has no model.onnx in the folder chosen as the model "
            f"folder ({folder})",
            hint="the archive does not have the layout of a model with test data "
            "(<folder>/model.onnx and test_data_set_*); report it to the repo",
        )
    return folder


def _unavailable(
    source: Source, path: str, err: RemoteFileNotFoundError
) -> RemoteFileNotFoundError:
    """Every source of the official zoo answered 404 for a test-data archive."""
    if not source.official:
        return err
    return ArchiveUnavailableError(
        f"{path} is not available upstream: every source answered 404 "
        f"({len(source.file_bases)} tried)",
        status=err.status,
        url=err.url,
    )


def _remove_tree(path: Path) -> None:
    """Remove an extracted folder by renaming it aside first (never half-deleted)."""
    if not path.exists() and not path.is_symlink():
        return
    doomed = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.asynchub-old")
    with contextlib.suppress(FileNotFoundError):
        path.rename(doomed)
    if doomed.is_symlink():  # never follow a planted link into someone else's files
        doomed.unlink()
    else:
        shutil.rmtree(doomed, ignore_errors=True)


class Hub:
    """The sync twin of :class:`AsyncHub`, usable with or without a running loop.

    Every method runs the async twin on asynchub's background event loop and waits,
    so it also works inside a Jupyter cell. By default it prompts on stdin before
    downloading from an untrusted repo, as onnx.hub did.
    """

    def __init__(
        self,
        config: HubConfig | None = None,
        *,
        progress: ProgressCallback | None = None,
        confirm: Confirm | None = prompt_stdin,
    ) -> None:
        self._async = AsyncHub(config, progress=progress, confirm=confirm)

    @property
    def config(self) -> HubConfig:
        return self._async.config

    @property
    def cache_dir(self) -> Path:
        return self._async.cache_dir

    def __enter__(self) -> Hub:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session."""
        _sync.run(self._async.aclose)

    def manifest(self, repo: str = OFFICIAL_REPO) -> Manifest:
        return _sync.run(self._async.manifest, repo)

    def list_models(
        self,
        repo: str = OFFICIAL_REPO,
        model: str | None = None,
        tags: list[str] | None = None,
    ) -> list[ModelInfo]:
        return _sync.run(self._async.list_models, repo, model, tags)

    def get_model_info(
        self, model: str, repo: str = OFFICIAL_REPO, opset: int | None = None
    ) -> ModelInfo:
        return _sync.run(self._async.get_model_info, model, repo, opset)

    def download_model(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> Path | None:
        return _sync.run(
            self._async.download_model, model, repo, opset, force_reload, silent
        )

    def load(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> onnx.ModelProto | None:
        return _sync.run(self._async.load, model, repo, opset, force_reload, silent)

    def download_model_with_test_data(
        self,
        model: str,
        repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> str | None:
        return _sync.run(
            self._async.download_model_with_test_data,
            model,
            repo,
            opset,
            force_reload,
            silent,
        )

    def load_composite_model(
        self,
        network_model: str,
        preprocessing_model: str,
        network_repo: str = OFFICIAL_REPO,
        preprocessing_repo: str = OFFICIAL_REPO,
        opset: int | None = None,
        force_reload: bool = False,
        silent: bool = False,
    ) -> onnx.ModelProto | None:
        return _sync.run(
            self._async.load_composite_model,
            network_model,
            preprocessing_model,
            network_repo,
            preprocessing_repo,
            opset,
            force_reload,
            silent,
        )


def _load_onnx(path: Path) -> onnx.ModelProto:
    import onnx

    return onnx.load(str(path))


def _merge(
    net: onnx.ModelProto, pre: onnx.ModelProto, names: tuple[str, str]
) -> onnx.ModelProto:
    from ._composite import merge_composite

    return merge_composite(net, pre, names)
