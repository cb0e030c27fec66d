"""The sync twin of :class:`~asynchub.client.AsyncHub`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from typing_extensions import Unpack

from .. import _sync
from .._transfer import ProgressCallback
from ..cache import Confirm
from ..config import OFFICIAL_REPO, HubConfig
from ..manifest import Manifest, ModelInfo
from ..mirror import HubRunArgs, MirrorReport
from ._async import AsyncHub, prompt_stdin

if TYPE_CHECKING:  # onnx (and numpy) cost 0.1 s to import: only when a model loads
    import onnx

__all__ = ("Hub",)


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

    def mirror(
        self,
        dest: str | os.PathLike[str],
        repo: str = OFFICIAL_REPO,
        **kwargs: Unpack[HubRunArgs],
    ) -> MirrorReport:
        """Sync twin of :meth:`AsyncHub.mirror`."""
        return _sync.run(self._async.mirror, dest, repo, **kwargs)

    def download(
        self, repo: str = OFFICIAL_REPO, **kwargs: Unpack[HubRunArgs]
    ) -> MirrorReport:
        """Sync twin of :meth:`AsyncHub.download`."""
        return _sync.run(self._async.download, repo, **kwargs)
