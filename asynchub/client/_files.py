"""What a client does with the files it fetched: extract a tarball into a proven
folder, load a model, merge a preprocessing model into a network."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from ..cache import (
    is_regular,
    os_error,
    sha256_file,
)
from ..config import HubConfig
from ..errors import (
    ArchiveError,
    ArchiveUnavailableError,
    AsyncHubError,
    RemoteFileNotFoundError,
)
from ..sources import Source

if TYPE_CHECKING:  # onnx (and numpy) cost 0.1 s to import: only when a model loads
    import onnx

__all__ = ("extract_model_folder", "load_onnx", "merge_models", "unavailable_archive")


def extract_model_folder(
    tarball: Path, target: Path, sha: str | None, force_reload: bool, config: HubConfig
) -> Path:
    """In a worker thread: extract, find the model folder; OSErrors mapped."""
    # tarfile, gzip, bz2, lzma: imported when a tarball is extracted, not at start
    from ..cache import extract_tarball, find_model_folder

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


def unavailable_archive(
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


def load_onnx(path: Path) -> onnx.ModelProto:
    import onnx

    return onnx.load(str(path))


def merge_models(
    net: onnx.ModelProto, pre: onnx.ModelProto, names: tuple[str, str]
) -> onnx.ModelProto:
    from .._composite import merge_composite

    return merge_composite(net, pre, names)
