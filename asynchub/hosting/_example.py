"""A small, deterministic example hub of real ONNX models, for tests and demos.

``build_example_hub(dest)`` writes tiny models built with ``onnx.helper`` (each one
passes ``onnx.checker``), laid out like the official zoo, each with a ``.tar.gz``
holding ``<folder>/model.onnx`` and ``<folder>/test_data_set_0/{input,output}_N.pb``,
the outputs computed with onnx's reference evaluator. It then writes
``ONNX_HUB_MANIFEST.json``. Every run produces the same bytes (fixed tar and gzip
metadata), so SHA-256 values in tests are stable.

What it covers: ``TinyNet`` at opsets 13 and 17 (two versions, a name whose case
differs from its path), models with different tags (vision / text, classification /
machine comprehension), a symbolic and an unknown dimension, and the pair
``TinyMLP-preproc`` (opset 18) + ``TinyMLP`` (opset 13) for ``load_composite_model``.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from ._build import write_manifest

__all__ = ("MODEL_NAMES", "MODEL_OPSETS", "MODEL_PATHS", "build_example_hub")

_FLOAT = TensorProto.FLOAT
_MTIME = 1_700_000_000  # fixed member time: same bytes on every run
_Arrays = list[NDArray[Any]]
_Built = tuple[onnx.ModelProto, _Arrays]
_Port = onnx.ValueInfoProto


def _model(
    graph: onnx.GraphProto, opset: int, ir: int, name: str | None
) -> onnx.ModelProto:
    """A checked model; ``name`` goes into the ``model_name`` metadata property."""
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", opset)],
        ir_version=ir,
        producer_name="asynchub-example-hub",
        producer_version="1",
    )
    if name is not None:
        helper.set_model_props(model, {"model_name": name})
    onnx.checker.check_model(model, full_check=True)
    return model


def _graph(
    name: str,
    nodes: list[onnx.NodeProto],
    ports: tuple[onnx.ValueInfoProto, onnx.ValueInfoProto],
    weights: Mapping[str, NDArray[Any]] | None = None,
) -> onnx.GraphProto:
    """A one-input, one-output graph with its weights as initializers."""
    inits = [numpy_helper.from_array(a, n) for n, a in (weights or {}).items()]
    return helper.make_graph(nodes, name, [ports[0]], [ports[1]], inits)


def _port(name: str, shape: list[int | str | None], elem: int = _FLOAT) -> _Port:
    return helper.make_tensor_value_info(name, elem, shape)


def _floats(*shape: int, scale: float = 0.1, shift: float = 0.0) -> NDArray[Any]:
    """Fixed, varied float32 values (no RNG: same bytes on every numpy)."""
    count = int(np.prod(shape))
    values = (np.arange(count, dtype=np.float32) - count / 2) * scale + shift
    return values.reshape(shape).astype(np.float32)


def _tinynet(opset: int, ir: int) -> _Built:
    """x[1,4] → MatMul → Add → Softmax → probs[1,3]."""
    nodes = [
        helper.make_node("MatMul", ["x", "tn_w"], ["tn_mm"]),
        helper.make_node("Add", ["tn_mm", "tn_b"], ["tn_logits"]),
        helper.make_node("Softmax", ["tn_logits"], ["probs"], axis=-1),
    ]
    weights = {"tn_w": _floats(4, 3), "tn_b": _floats(3, scale=0.5)}
    graph = _graph(
        "tinynet", nodes, (_port("x", [1, 4]), _port("probs", [1, 3])), weights
    )
    return _model(graph, opset, ir, "TinyNet"), [_floats(1, 4, scale=0.7)]


def _tinytext() -> _Built:
    """ids[batch,6] int64 → Gather(embedding) → ReduceMean → MatMul → logits."""
    nodes = [
        helper.make_node("Gather", ["tt_emb", "ids"], ["tt_vec"]),
        helper.make_node("ReduceMean", ["tt_vec"], ["tt_mean"], axes=[1], keepdims=0),
        helper.make_node("MatMul", ["tt_mean", "tt_w"], ["logits"]),
    ]
    ports = (
        _port("ids", ["batch", 6], TensorProto.INT64),
        _port("logits", ["batch", 2]),
    )
    weights = {"tt_emb": _floats(10, 4), "tt_w": _floats(4, 2, scale=0.3)}
    ids = (np.arange(12, dtype=np.int64) * 7 % 10).reshape(2, 6)
    return _model(_graph("tinytext", nodes, ports, weights), 15, 8, "TinyText"), [ids]


def _echo_qa() -> _Built:
    """question[?, seq] → Abs → answer[?, seq]; named from its file (no metadata)."""
    nodes = [helper.make_node("Abs", ["question"], ["answer"])]
    ports = (_port("question", [None, "seq"]), _port("answer", [None, "seq"]))
    return _model(_graph("echo_qa", nodes, ports), 12, 7, None), [_floats(2, 3)]


def _tinymlp() -> _Built:
    """The composite network: features[1,4] → MatMul → Add → Relu → scores[1,3]."""
    nodes = [
        helper.make_node("MatMul", ["features", "mlp_w"], ["mlp_mm"]),
        helper.make_node("Add", ["mlp_mm", "mlp_b"], ["mlp_sum"]),
        helper.make_node("Relu", ["mlp_sum"], ["scores"]),
    ]
    ports = (_port("features", [1, 4]), _port("scores", [1, 3]))
    weights = {"mlp_w": _floats(4, 3, scale=0.2), "mlp_b": _floats(3, shift=0.2)}
    graph = _graph("tinymlp", nodes, ports, weights)
    return _model(graph, 13, 7, "TinyMLP"), [_floats(1, 4, scale=0.4)]


def _tinymlp_preproc() -> _Built:
    """The composite preprocessing: image[1,4] → ×scale → +shift → normalized[1,4].

    No ``model_name`` property: merge_models refuses two models whose values for
    one property differ, so this name comes from the file stem (as in most of the
    official zoo).
    """
    nodes = [
        helper.make_node("Mul", ["image", "pre_scale"], ["pre_scaled"]),
        helper.make_node("Add", ["pre_scaled", "pre_shift"], ["normalized"]),
    ]
    ports = (_port("image", [1, 4]), _port("normalized", [1, 4]))
    weights = {
        "pre_scale": np.full(4, 1 / 255, np.float32),
        "pre_shift": np.full(4, -0.5, np.float32),
    }
    graph = _graph("tinymlp_preproc", nodes, ports, weights)
    pixels = np.array([[0, 64, 128, 255]], dtype=np.float32)
    return _model(graph, 18, 8, None), [pixels]


_SPECS: tuple[tuple[str, Callable[[], _Built]], ...] = (
    ("vision/classification/tinynet/model/tinynet-13.onnx", lambda: _tinynet(13, 7)),
    ("vision/classification/tinynet/model/tinynet-17.onnx", lambda: _tinynet(17, 8)),
    ("vision/classification/tinymlp/model/tinymlp-13.onnx", _tinymlp),
    ("vision/classification/tinymlp/preproc/TinyMLP-preproc-18.onnx", _tinymlp_preproc),
    ("text/classification/tinytext/model/tinytext-15.onnx", _tinytext),
    ("text/machine_comprehension/echo_qa/model/echo-qa-12.onnx", _echo_qa),
)

#: Every model name in the example hub, in the manifest's order (sorted by path).
MODEL_NAMES: tuple[str, ...] = (
    "TinyText",
    "echo-qa",
    "TinyMLP",
    "TinyMLP-preproc",
    "TinyNet",
)
#: The opsets each example model is published at.
MODEL_OPSETS: dict[str, tuple[int, ...]] = {
    "TinyNet": (13, 17),
    "TinyMLP": (13,),
    "TinyMLP-preproc": (18,),
    "TinyText": (15,),
    "echo-qa": (12,),
}
#: The ``model_path`` of every example model file.
MODEL_PATHS: tuple[str, ...] = tuple(sorted(path for path, _ in _SPECS))


def build_example_hub(dest: Path) -> Path:
    """Write the example hub (models, tarballs, manifest) into ``dest``; return it.

    Existing files with the same names are overwritten; other files are left alone
    (and any other ``.onnx`` file under ``dest`` ends up in the manifest too).
    """
    dest.mkdir(parents=True, exist_ok=True)
    for relative, build in _SPECS:
        model, inputs = build()
        _write_model(dest / relative, model, inputs)
    write_manifest(dest)
    return dest


def _write_model(path: Path, model: onnx.ModelProto, inputs: _Arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model.SerializeToString()
    path.write_bytes(data)
    folder = re.sub(r"-\d+$", "", path.stem)
    members = {"model.onnx": data, **_test_data(model, inputs)}
    tarball = path.with_name(path.stem + ".tar.gz")
    tarball.write_bytes(_tarball(folder, members))


def _test_data(model: onnx.ModelProto, inputs: _Arrays) -> dict[str, bytes]:
    names = [value.name for value in model.graph.input]
    outputs = ReferenceEvaluator(model).run(None, dict(zip(names, inputs, strict=True)))
    files: dict[str, bytes] = {}
    for kind, values, ports in (
        ("input", inputs, model.graph.input),
        ("output", outputs, model.graph.output),
    ):
        for i, (array, port) in enumerate(zip(values, ports, strict=True)):
            tensor = numpy_helper.from_array(np.asarray(array), port.name)
            files[f"test_data_set_0/{kind}_{i}.pb"] = tensor.SerializeToString()
    return files


def _tarball(folder: str, members: dict[str, bytes]) -> bytes:
    """A gzip'd tar of ``folder/`` with fixed times, owners and modes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in _folders(folder, members):
            tar.addfile(_info(name, tarfile.DIRTYPE, 0o755, 0))
        for name, data in members.items():
            info = _info(f"{folder}/{name}", tarfile.REGTYPE, 0o644, len(data))
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _folders(folder: str, members: dict[str, bytes]) -> Sequence[str]:
    subfolders = {name.rsplit("/", 1)[0] for name in members if "/" in name}
    return [folder, *(f"{folder}/{sub}" for sub in sorted(subfolders))]


def _info(name: str, kind: bytes, mode: int, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = kind, mode, size, _MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info
