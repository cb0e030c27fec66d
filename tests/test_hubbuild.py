"""Building a hub manifest from a folder of real ONNX models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from asynchub.errors import ManifestError
from asynchub.hosting._build import (
    build_manifest,
    folder_tags,
    onnx_release,
    type_string,
    write_manifest,
)
from asynchub.manifest import Manifest
from asynchub.sources import MANIFEST_NAME

FLOAT = TensorProto.FLOAT


def make_model(
    *,
    opset: int = 13,
    ir: int = 7,
    name: str | None = None,
    extra_domain: bool = False,
    weight_as_input: bool = False,
) -> onnx.ModelProto:
    """x[N,3,?] (+ weight w) → Add → y; optionally a model_name property."""
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["N", 3, None])]
    if weight_as_input:  # IR < 4 style: initializers also listed as inputs
        inputs.append(helper.make_tensor_value_info("w", FLOAT, [3, 1]))
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", FLOAT, ["N", 3, None])],
        [numpy_helper.from_array(np.array([[1.0], [2.0], [3.0]], np.float32), "w")],
    )
    opsets = [helper.make_opsetid("", opset)]
    if extra_domain:
        opsets.insert(0, helper.make_opsetid("com.microsoft", 1))
    model = helper.make_model(graph, opset_imports=opsets, ir_version=ir)
    if name is not None:
        helper.set_model_props(model, {"model_name": name})
    return model


def save(root: Path, relative: str, model: onnx.ModelProto) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def zoo(tmp_path: Path) -> Path:
    root = tmp_path / "zoo"
    save(
        root,
        "validated/vision/classification/mnist/model/mnist-8.onnx",
        make_model(opset=8, ir=3, name="MNIST", weight_as_input=True),
    )
    save(
        root,
        "validated/vision/classification/mnist/model/mnist-12.onnx",
        make_model(opset=12, ir=7, name="MNIST"),
    )
    (root / "validated/vision/classification/mnist/model/mnist-12.tar.gz").write_bytes(
        b"not really a tarball, but hashed all the same"
    )
    save(
        root,
        "text/machine_comprehension/bert_squad/model/bertsquad-10.onnx",
        make_model(opset=10, ir=5, extra_domain=True),
    )
    save(
        root,
        "vision/classification/resnet/preproc/resnet-preproc-v1-18.onnx",
        make_model(opset=18, ir=8),
    )
    save(
        root,
        "vision/classification/alexnet/model/bvlcalexnet-12-int8.onnx",
        make_model(opset=12, ir=99),
    )
    save(root, ".git/lfs/objects/hidden.onnx", make_model())
    return root


def test_entries_are_sorted_and_complete(zoo: Path) -> None:
    manifest = build_manifest(zoo)
    assert [(e.model, e.opset_version, e.onnx_version) for e in manifest] == [
        ("bertsquad", 10, "1.5"),
        ("MNIST", 12, "1.7"),
        ("MNIST", 8, "1.0"),
        ("bvlcalexnet-12-int8", 12, None),  # IR 99: no release known
        ("resnet-preproc-v1", 18, "1.10"),
    ]
    assert [e.model_path for e in manifest] == [
        "text/machine_comprehension/bert_squad/model/bertsquad-10.onnx",
        "validated/vision/classification/mnist/model/mnist-12.onnx",
        "validated/vision/classification/mnist/model/mnist-8.onnx",
        "vision/classification/alexnet/model/bvlcalexnet-12-int8.onnx",
        "vision/classification/resnet/preproc/resnet-preproc-v1-18.onnx",
    ]


def test_hashes_sizes_and_tarballs_match_the_files(zoo: Path) -> None:
    for entry in build_manifest(zoo):
        path = zoo / entry.model_path
        assert entry.metadata.model_sha == sha(path)
        assert entry.metadata.model_bytes == path.stat().st_size
        tarball = path.with_name(path.name.removesuffix(".onnx") + ".tar.gz")
        if tarball.exists():
            assert entry.metadata.model_with_data_path == (
                entry.model_path.removesuffix(".onnx") + ".tar.gz"
            )
            assert entry.metadata.model_with_data_sha == sha(tarball)
            assert entry.metadata.model_with_data_bytes == tarball.stat().st_size
        else:
            assert entry.metadata.model_with_data_path is None
    with_data = [e for e in build_manifest(zoo) if e.metadata.model_with_data_path]
    assert [e.model_path for e in with_data] == [
        "validated/vision/classification/mnist/model/mnist-12.onnx"
    ]


def test_tags_come_from_folders(zoo: Path) -> None:
    tags = {e.model_path.split("/")[-1]: e.metadata.tags for e in build_manifest(zoo)}
    assert tags == {
        "bertsquad-10.onnx": ["text", "machine comprehension", "bert squad"],
        "mnist-12.onnx": ["vision", "classification", "mnist"],
        "mnist-8.onnx": ["vision", "classification", "mnist"],
        "bvlcalexnet-12-int8.onnx": ["vision", "classification", "alexnet"],
        "resnet-preproc-v1-18.onnx": [
            "vision",
            "classification",
            "resnet",
            "preprocessing",
        ],
    }
    assert folder_tags("model.onnx") == []
    assert folder_tags("Models/a/a/x.onnx") == ["a"]


def test_io_ports_skip_initializers_and_keep_symbolic_dims(zoo: Path) -> None:
    for entry in build_manifest(zoo):
        ports = entry.metadata.io_ports
        assert ports is not None
        dumped = ports.model_dump(mode="json")
        assert dumped == {
            "inputs": [{"name": "x", "shape": ["N", 3, None], "type": "tensor(float)"}],
            "outputs": [
                {"name": "y", "shape": ["N", 3, None], "type": "tensor(float)"}
            ],
        }, entry.model_path


def test_type_strings() -> None:
    t = helper.make_tensor_type_proto
    assert type_string(t(TensorProto.INT64, [1])) == "tensor(int64)"
    assert type_string(t(TensorProto.FLOAT16, None)) == "tensor(float16)"
    assert (
        type_string(helper.make_sequence_type_proto(t(TensorProto.FLOAT, None)))
        == "seq(tensor(float))"
    )
    assert (
        type_string(
            helper.make_map_type_proto(TensorProto.STRING, t(TensorProto.DOUBLE, []))
        )
        == "map(string,tensor(double))"
    )
    assert (
        type_string(helper.make_optional_type_proto(t(TensorProto.BOOL, [])))
        == "optional(tensor(bool))"
    )
    assert type_string(onnx.TypeProto()) is None


def test_onnx_release() -> None:
    assert onnx_release(3) == "1.0"
    assert onnx_release(4) == "1.4"
    assert onnx_release(7) == "1.7"
    assert onnx_release(8) == "1.10"
    assert onnx_release(10_000) is None


def test_output_is_in_the_official_layout(zoo: Path) -> None:
    written = write_manifest(zoo)
    assert written == zoo / MANIFEST_NAME
    text = written.read_text()
    raw = json.loads(text)
    assert list(raw[1]) == [
        "model",
        "model_path",
        "onnx_version",
        "opset_version",
        "metadata",
    ]
    assert list(raw[1]["metadata"]) == [
        "model_sha",
        "model_bytes",
        "tags",
        "io_ports",
        "model_with_data_path",
        "model_with_data_sha",
        "model_with_data_bytes",
    ]
    assert "onnx_version" not in raw[3]  # unknown release: omitted, not null
    assert "model_with_data_path" not in raw[0]["metadata"]
    parsed = Manifest.parse(text)
    assert parsed.to_json() == text
    assert parsed.find("mnist").opset == 12 and parsed.find("MNIST", 8).opset == 8


def test_write_is_atomic_and_repeatable(zoo: Path, tmp_path: Path) -> None:
    first = write_manifest(zoo).read_bytes()
    (zoo / MANIFEST_NAME).write_text("stale")
    assert write_manifest(zoo).read_bytes() == first
    elsewhere = write_manifest(zoo, tmp_path / "out" / "manifest.json")
    assert elsewhere.read_bytes() == first
    assert sorted(p.name for p in zoo.iterdir()) == [
        ".git",
        MANIFEST_NAME,
        "text",
        "validated",
        "vision",
    ]
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["manifest.json"]


def test_external_data_is_not_read(tmp_path: Path) -> None:
    model = make_model()
    path = tmp_path / "big" / "model" / "big-13.onnx"
    path.parent.mkdir(parents=True)
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        location="big-13.data",
        size_threshold=0,
    )
    assert model.graph.initializer[0].data_location == TensorProto.EXTERNAL
    (path.parent / "big-13.data").unlink()  # building would fail if it were read
    (entry,) = build_manifest(tmp_path)
    assert (entry.model, entry.model_path) == ("big", "big/model/big-13.onnx")
    assert entry.metadata.model_sha == sha(path)


def test_unreadable_model_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken-1.onnx").write_bytes(b"\xff\xfe not a protobuf")
    with pytest.raises(ManifestError, match=r"broken-1.onnx is not a readable ONNX"):
        build_manifest(tmp_path)


def test_model_without_default_opset_is_reported(tmp_path: Path) -> None:
    model = make_model()
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    save(tmp_path, "custom/custom-1.onnx", model)
    with pytest.raises(ManifestError, match=r"custom/custom-1.onnx imports no default"):
        build_manifest(tmp_path)


def test_path_the_manifest_refuses_is_reported(tmp_path: Path) -> None:
    save(tmp_path, "a:b/x-1.onnx", make_model())
    with pytest.raises(ManifestError, match=r"a:b/x-1.onnx cannot be described"):
        build_manifest(tmp_path)


def test_empty_folder_gives_an_empty_manifest(tmp_path: Path) -> None:
    assert len(build_manifest(tmp_path)) == 0
    assert write_manifest(tmp_path).read_text() == "[]\n"
