"""The server side of a hub: scan a folder of ONNX models and write its manifest.

``build_manifest(root)`` finds every ``.onnx`` file under ``root`` (and the
``.tar.gz`` with the same stem beside it, if any) and describes it the way the
official ``ONNX_HUB_MANIFEST.json`` does: name, POSIX path, onnx release, opset,
SHA-256, size, tags taken from the folder names, and the graph's inputs and outputs.
Models are read header-only (``load_external_data=False``), so huge external weights
are never loaded. ``write_manifest(root)`` writes the result atomically, so a hub
being served never shows a half-written manifest.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
from onnx import helper

from .._fs import write_atomic
from ..errors import ManifestError
from ..manifest import Manifest, ManifestEntry
from ..sources import MANIFEST_NAME, folder_tags

__all__ = (
    "build_manifest",
    "folder_tags",
    "io_ports",
    "onnx_release",
    "type_string",
    "write_manifest",
)

_TARBALL_SUFFIX = ".tar.gz"
_OPSET_SUFFIX = re.compile(r"-\d+$")
_HASH_BLOCK = 1024 * 1024


def build_manifest(root: Path) -> Manifest:
    """Describe every ``.onnx`` file under ``root``, sorted by its POSIX path.

    Hidden folders (``.git``, ``.asynchub``) are skipped. Raises ManifestError if a
    file is not a readable ONNX model or yields an entry the manifest schema refuses.
    """
    return Manifest(_entry(root, path) for path in _model_files(root))


def write_manifest(root: Path, output: Path | None = None) -> Path:
    """Write ``root``'s manifest to ``output`` (default: in ``root``); return its path.

    The text goes to a temporary file in the same folder that then replaces
    ``output`` in one step, so readers see the old manifest or the new one, never a
    mix.
    """
    target = output if output is not None else root / MANIFEST_NAME
    data = build_manifest(root).to_json().encode()
    # fsync: the manifest is the product; 0o644: a hub is read by its server's user
    write_atomic(target, data, fsync=True, mode=0o644)
    return target


def io_ports(graph: onnx.GraphProto) -> dict[str, list[dict[str, Any]]]:
    """The graph's real inputs (initializers excluded) and outputs, manifest style."""
    weights = {init.name for init in graph.initializer}
    inputs = [_port(v) for v in graph.input if v.name not in weights]
    return {"inputs": inputs, "outputs": [_port(v) for v in graph.output]}


def _model_files(root: Path) -> list[Path]:
    found = [p for p in _walk(root) if p.suffix == ".onnx" and p.is_file()]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _walk(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield from (Path(folder, name) for name in files)


def _entry(root: Path, path: Path) -> ManifestEntry:
    relative = path.relative_to(root).as_posix()
    model = _load_header(path)
    raw: dict[str, Any] = {
        "model": _model_name(model, path),
        "model_path": relative,
        "onnx_version": onnx_release(model.ir_version),
        "opset_version": _default_opset(model, relative),
        "metadata": _metadata(path, relative, model),
    }
    if raw["onnx_version"] is None:
        del raw["onnx_version"]
    try:
        return ManifestEntry.model_validate(raw)
    except ValueError as exc:
        raise ManifestError(
            f"{relative} cannot be described in a manifest: {exc}",
            hint="rename the file or folder, or fix the model's metadata",
        ) from exc


def _load_header(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, ValueError and others
        raise ManifestError(
            f"{path} is not a readable ONNX model: {exc}",
            hint="fix or remove the file, then build the manifest again",
        ) from exc


def _model_name(model: onnx.ModelProto, path: Path) -> str:
    for prop in model.metadata_props:
        if prop.key == "model_name" and prop.value.strip():
            return str(prop.value).strip()
    return _OPSET_SUFFIX.sub("", path.stem)


def onnx_release(ir_version: int) -> str | None:
    """The lowest onnx release (``major.minor``) that writes ``ir_version``."""
    for release, ir, *_ in helper.VERSION_TABLE:
        if ir == ir_version:
            return ".".join(str(release).split(".")[:2])
    return None


def _default_opset(model: onnx.ModelProto, relative: str) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ManifestError(
        f"{relative} imports no default-domain (ai.onnx) opset",
        hint="a hub entry needs an opset_version; add one with onnx.helper",
    )


def _metadata(path: Path, relative: str, model: onnx.ModelProto) -> dict[str, Any]:
    sha, size = _sha_and_size(path)
    meta: dict[str, Any] = {
        "model_sha": sha,
        "model_bytes": size,
        "tags": folder_tags(relative),
        "io_ports": io_ports(model.graph),
    }
    tarball = path.with_name(path.name[: -len(".onnx")] + _TARBALL_SUFFIX)
    if tarball.is_file():
        tar_sha, tar_size = _sha_and_size(tarball)
        meta["model_with_data_path"] = relative[: -len(".onnx")] + _TARBALL_SUFFIX
        meta["model_with_data_sha"] = tar_sha
        meta["model_with_data_bytes"] = tar_size
    return meta


def _sha_and_size(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _port(value: onnx.ValueInfoProto) -> dict[str, Any]:
    return {
        "name": value.name,
        "shape": _shape(value.type),
        "type": type_string(value.type),
    }


def _shape(tp: onnx.TypeProto) -> list[int | str | None] | None:
    kind = tp.WhichOneof("value")
    if kind not in ("tensor_type", "sparse_tensor_type"):
        return None
    tensor = getattr(tp, kind)
    if not tensor.HasField("shape"):
        return None
    return [_dim(d) for d in tensor.shape.dim]


def _dim(dim: onnx.TensorShapeProto.Dimension) -> int | str | None:
    if dim.HasField("dim_value"):
        return int(dim.dim_value)
    if dim.HasField("dim_param"):
        return str(dim.dim_param)
    return None


def type_string(tp: onnx.TypeProto) -> str | None:
    """onnxruntime-style type names: ``tensor(float)``, ``seq(tensor(int64))``."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        inner = getattr(tp, kind)
        element = onnx.TensorProto.DataType.Name(inner.elem_type).lower()
        return f"{kind[: -len('_type')]}({element})"
    if kind == "sequence_type":
        return f"seq({type_string(tp.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({type_string(tp.optional_type.elem_type)})"
    if kind == "map_type":
        key = onnx.TensorProto.DataType.Name(tp.map_type.key_type).lower()
        return f"map({key},{type_string(tp.map_type.value_type)})"
    return None
