"""The generated example hub: deterministic, valid, and its test data is right."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import compose, numpy_helper, version_converter
from onnx.reference import ReferenceEvaluator

from asynchub.cache._archive import extract_tarball, find_model_folder
from asynchub.config import ArchiveLimits
from asynchub.hosting._example import (
    MODEL_NAMES,
    MODEL_OPSETS,
    MODEL_PATHS,
    build_example_hub,
)
from asynchub.manifest import Manifest


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_example_hub(tmp_path_factory.mktemp("hub"))


def _manifest(root: Path) -> Manifest:
    return Manifest.parse((root / "ONNX_HUB_MANIFEST.json").read_bytes())


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_two_builds_are_byte_identical(built: Path, tmp_path: Path) -> None:
    started = time.perf_counter()
    again = build_example_hub(tmp_path / "again")
    assert time.perf_counter() - started < 2.0
    assert again == tmp_path / "again"
    assert _files(again) == _files(built)


def test_layout_and_size(built: Path) -> None:
    files = _files(built)
    models = sorted(p for p in files if p.endswith(".onnx"))
    tarballs = sorted(p for p in files if p.endswith(".tar.gz"))
    assert models == list(MODEL_PATHS)
    assert tarballs == [p[: -len(".onnx")] + ".tar.gz" for p in models]
    assert len(files) == 2 * len(MODEL_PATHS) + 1
    assert sum(len(data) for data in files.values()) < 256 * 1024


def test_manifest_lists_every_model(built: Path) -> None:
    manifest = _manifest(built)
    assert [e.model_path for e in manifest] == list(MODEL_PATHS)
    assert list(dict.fromkeys(e.model for e in manifest)) == list(MODEL_NAMES)
    for name, opsets in MODEL_OPSETS.items():
        assert sorted(i.opset for i in manifest.select(name)) == list(opsets)
    tinynet = manifest.find("tinynet", 13)
    assert tinynet.model == "TinyNet"
    assert tinynet.model_path == "vision/classification/tinynet/model/tinynet-13.onnx"
    assert tinynet.tags == {"vision", "classification", "tinynet"}
    assert manifest.find("echo-qa").tags == {"text", "machine comprehension", "echo qa"}
    preproc = manifest.find("TinyMLP-preproc")
    assert "preprocessing" in preproc.tags
    assert {i.model for i in manifest.select(tags=["text"])} == {"TinyText", "echo-qa"}


def test_every_model_passes_the_checker(built: Path) -> None:
    for path in MODEL_PATHS:
        onnx.checker.check_model(onnx.load(str(built / path)), full_check=True)


@pytest.mark.parametrize("model_path", MODEL_PATHS)
def test_tarball_test_data_matches_reference(
    built: Path, tmp_path: Path, model_path: str
) -> None:
    tarball = built / (model_path[: -len(".onnx")] + ".tar.gz")
    root = extract_tarball(tarball, tmp_path / "x", ArchiveLimits())
    folder = find_model_folder(root)
    assert folder.parent == root
    model = onnx.load(str(folder / "model.onnx"))
    assert model == onnx.load(str(built / model_path))
    data = folder / "test_data_set_0"
    assert sorted(p.name for p in data.iterdir()) == sorted(
        [f"input_{i}.pb" for i in range(len(model.graph.input))]
        + [f"output_{i}.pb" for i in range(len(model.graph.output))]
    )
    inputs = {
        port.name: _tensor(data / f"input_{i}.pb", port.name)
        for i, port in enumerate(model.graph.input)
    }
    expected = ReferenceEvaluator(model).run(None, inputs)
    for i, port in enumerate(model.graph.output):
        np.testing.assert_array_equal(
            _tensor(data / f"output_{i}.pb", port.name), expected[i]
        )


def _tensor(path: Path, name: str) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    assert tensor.name == name
    return numpy_helper.to_array(tensor)


def test_composite_pair_merges_like_onnx_hub(built: Path) -> None:
    manifest = _manifest(built)
    pre = onnx.load(str(built / manifest.find("TinyMLP-preproc").model_path))
    net = onnx.load(str(built / manifest.find("TinyMLP").model_path))
    assert (pre.opset_import[0].version, net.opset_import[0].version) == (18, 13)
    # what onnx.hub.load_composite_model did: upgrade the network, align IR, merge
    net = version_converter.convert_version(net, 18)
    net.ir_version = pre.ir_version
    onnx.checker.check_model(net)
    io_map = [
        (o.name, i.name) for o, i in zip(pre.graph.output, net.graph.input, strict=True)
    ]
    assert io_map == [("normalized", "features")]
    merged = compose.merge_models(pre, net, io_map=io_map)
    onnx.checker.check_model(merged, full_check=True)
    image = np.array([[0, 64, 128, 255]], dtype=np.float32)
    (normalized,) = ReferenceEvaluator(pre).run(None, {"image": image})
    (scores,) = ReferenceEvaluator(net).run(None, {"features": normalized})
    (combined,) = ReferenceEvaluator(merged).run(None, {"image": image})
    np.testing.assert_allclose(combined, scores, rtol=1e-6)
    assert combined.shape == (1, 3) and (combined >= 0).all() and combined.any()
