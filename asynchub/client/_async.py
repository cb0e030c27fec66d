"""`AsyncHub`: the composition root. It owns one engine, one manifest store and the
trust gate, and everything else (load, cache fills, mirrors) borrows them."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import anyio
from typing_extensions import Unpack

from .._transfer import Engine, FileSpec, ProgressCallback
from ..cache import (
    Confirm,
    ManifestStore,
    admit,
    cache_path,
    check_writable_root,
    ensure_verified,
    mark_verified,
)
from ..config import OFFICIAL_REPO, HubConfig
from ..errors import (
    CacheError,
    HTTPStatusError,
    ModelNotFoundError,
    OfflineCacheMissError,
    RemoteFileNotFoundError,
    UntrustedRepoError,
)
from ..manifest import Manifest, ModelInfo
from ..mirror import HubRunArgs, Job, MirrorReport, Target, run, split_args
from ..sources import Source, resolve_repo

if TYPE_CHECKING:  # onnx (and numpy) cost 0.1 s to import: only when a model loads
    import onnx

from ._files import extract_model_folder, load_onnx, merge_models, unavailable_archive

__all__ = ("AsyncHub", "prompt_stdin")

_log = logging.getLogger("asynchub")


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
        return await anyio.to_thread.run_sync(load_onnx, path)

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
            raise unavailable_archive(source, meta.model_with_data_path, err) from err
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
        from .._composite import load_pair

        async def one(name: str, repo: str) -> onnx.ModelProto | None:
            return await self.load(name, repo, opset, force_reload, silent)

        net, pre = await load_pair(
            one,
            (network_model, network_repo),
            (preprocessing_model, preprocessing_repo),
        )
        names = (network_model, preprocessing_model)
        return await anyio.to_thread.run_sync(merge_models, net, pre, names)

    async def mirror(
        self,
        dest: str | os.PathLike[str],
        repo: str = OFFICIAL_REPO,
        **kwargs: Unpack[HubRunArgs],
    ) -> MirrorReport:
        """Mirror the selected models of ``repo`` into ``dest``, laid out as a hub,
        on this client's engine, manifest store and trust gate.

        Takes ``selection=`` or its fields, the switches, ``progress`` and
        ``on_plan``, as :func:`asynchub.mirror.amirror` documents.
        """
        target = Target("mirror", Path(dest).expanduser().absolute())
        return await self._run("mirror", target, repo, kwargs)

    async def download(
        self, repo: str = OFFICIAL_REPO, **kwargs: Unpack[HubRunArgs]
    ) -> MirrorReport:
        """Fill this client's cache with the selected models (tarballs only with
        ``with_data=True``), as :func:`asynchub.mirror.adownload` documents."""
        return await self._run(
            "download", Target("cache", self.cache_dir), repo, kwargs
        )

    async def _run(
        self, name: str, target: Target, repo: str, kwargs: HubRunArgs
    ) -> MirrorReport:
        selection, switches, rest = split_args(name, kwargs)
        job = Job(
            selection,
            switches,
            self.config,
            progress=rest.get("progress", self._progress),
            on_plan=rest.get("on_plan"),
            confirm=self._confirm,
        )
        engine, manifests = await self._ensure_open()
        return await run(engine, manifests, self.source(repo), target, job)

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
            if not force_reload and await ensure_verified(
                self.cache_dir, dest, sha, rehash=False
            ):
                return dest  # another call on this client filled it meanwhile
            urls = source.file_urls(path)
            spec = FileSpec(urls, dest, sha, size, label=path, root=self.cache_dir)
            try:
                return await self._download(spec)
            except HTTPStatusError as err:
                if source.kind == "hf" and err.status == 401:  # a 403 may be the CDN's
                    from ..sources import hf_manifest

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
        if not result.stamped:  # no extended attributes here: a marker file instead
            await mark_verified(self.cache_dir, result.path, result.sha256)
        return result.path

    async def _trusted(self, source: Source, silent: bool) -> bool:
        return await admit(source, self.config, silent=silent, confirm=self._confirm)

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
            extract_model_folder, tarball, target, sha, force_reload, self.config
        )
