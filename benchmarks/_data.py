"""Benchmark scenarios and their test data (random bytes, generated once, cached).

Every scenario's files are laid out as a hub: a folder with an
``ONNX_HUB_MANIFEST.json`` listing them (with sizes and SHA-256), so the command
users run, ``asynchub mirror``, can copy it like any other hub.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "asynchub" / "data" / "ONNX_HUB_MANIFEST.json"
SHARED_MANIFEST = REPO.parent / "shared" / "data" / "onnx_hub_manifest.json"
MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"


@dataclass(frozen=True)
class DataFile:
    rel: str  # path under the served root, also the URL path ("<hub>/<model_path>")
    size: int
    sha256: str


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    cap: int | None  # bytes per second per connection, None: uncapped
    hub: str  # the hub folder under the served root
    files: tuple[DataFile, ...]
    entries: int  # manifest entries of the hub

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _zoo_plan(scale: int) -> list[tuple[str, int]]:
    """The real manifest's models and tarballs, sizes divided by ``scale``."""
    plan: list[tuple[str, int]] = []
    for entry in _real_manifest():
        meta = entry["metadata"]
        plan.append((entry["model_path"], meta["model_bytes"]))
        if meta.get("model_with_data_path"):
            plan.append((meta["model_with_data_path"], meta["model_with_data_bytes"]))
    return [(rel, max(1, size // scale)) for rel, size in plan]


def _real_manifest() -> list[dict[str, object]]:
    path = SHARED_MANIFEST if SHARED_MANIFEST.exists() else MANIFEST
    return json.loads(path.read_text())  # type: ignore[no-any-return]


# number -> (title, cap, hub folder, [(model_path, size)]), full and quick sizes.
def plans(quick: bool) -> dict[int, tuple[str, int | None, str, list[tuple[str, int]]]]:
    small = 500 if quick else 2000
    zoo_a, zoo_b = (2048, 512) if quick else (256, 64)
    one = 128 * MiB if quick else 512 * MiB
    four = 32 * MiB if quick else 256 * MiB
    return {
        1: (
            f"{small} x 64 KiB, no cap",
            None,
            f"small{small}",
            [(f"d{i // 100:02d}/f{i:04d}.onnx", 64 * KiB) for i in range(small)],
        ),
        2: (
            f"zoo (184 entries) / {zoo_a}, 8 MiB/s per connection",
            8 * MiB,
            f"zoo{zoo_a}",
            _zoo_plan(zoo_a),
        ),
        3: (
            f"zoo (184 entries) / {zoo_b}, 8 MiB/s per connection",
            8 * MiB,
            f"zoo{zoo_b}",
            _zoo_plan(zoo_b),
        ),
        4: (
            f"1 x {one // MiB} MiB, 16 MiB/s per connection",
            16 * MiB,
            f"one{one // MiB}",
            [(f"one-{one // MiB}M.onnx", one)],
        ),
        5: (
            f"4 x {four // MiB} MiB, no cap",
            None,
            f"four{four // MiB}",
            [(f"blob-{i}.onnx", four) for i in range(4)],
        ),
    }


def calibration_plan(quick: bool) -> tuple[str, int]:
    """A file big enough for a few seconds of one capped connection."""
    size = 8 * MiB if quick else 32 * MiB
    return (f"cal/cal-{size // MiB}M.bin", size)


def _write_random(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 4 * MiB))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def ensure_files(
    root: Path, plan: list[tuple[str, int]], index_name: str
) -> list[DataFile]:
    """Create the planned files under ``root`` unless a matching index has them."""
    index = root / f".index-{index_name}.json"
    if index.exists():
        known = [DataFile(*row) for row in json.loads(index.read_text())]
        if [(f.rel, f.size) for f in known] == plan and all(
            (root / f.rel).is_file() and (root / f.rel).stat().st_size == f.size
            for f in known
        ):
            return known
    total = sum(size for _, size in plan)
    print(f"  generating {len(plan)} files, {total / MiB:.0f} MiB for {index_name} ...")
    files = [DataFile(rel, size, _write_random(root / rel, size)) for rel, size in plan]
    index.write_text(json.dumps([[f.rel, f.size, f.sha256] for f in files]))
    return files


def load_scenarios(root: Path, quick: bool, numbers: list[int]) -> list[Scenario]:
    out = []
    for number, (title, cap, hub, plan) in plans(quick).items():
        if number in numbers:
            rels = [(f"{hub}/{rel}", size) for rel, size in plan]
            files = ensure_files(root, rels, hub)
            by_path = {f.rel.split("/", 1)[1]: f for f in files}
            if hub.startswith("zoo"):
                entries = zoo_entries(by_path)
            else:
                entries = synthetic_entries(by_path)
            text = json.dumps(entries, indent=1)
            (root / hub / MANIFEST_NAME).write_text(text)
            out.append(Scenario(number, title, cap, hub, tuple(files), len(entries)))
    return out


def synthetic_entries(by_path: dict[str, DataFile]) -> list[dict[str, object]]:
    """One manifest entry per file (a hub of many small models)."""
    return [
        {
            "model": f"bench-{i}",
            "model_path": path,
            "opset_version": 13,
            "metadata": {"model_sha": f.sha256, "model_bytes": f.size, "tags": []},
        }
        for i, (path, f) in enumerate(by_path.items())
    ]


def zoo_entries(by_path: dict[str, DataFile]) -> list[dict[str, object]]:
    """The real manifest with the scaled files' sizes and hashes."""
    entries = _real_manifest()
    for entry in entries:
        meta = entry["metadata"]
        assert isinstance(meta, dict)
        model = by_path[str(entry["model_path"])]
        meta["model_sha"], meta["model_bytes"] = model.sha256, model.size
        if meta.get("model_with_data_path"):
            tar = by_path[meta["model_with_data_path"]]
            meta["model_with_data_sha"] = tar.sha256
            meta["model_with_data_bytes"] = tar.size
    return entries


LATENCY_MODEL = "bench-tiny"


def ensure_latency_hub(root: Path) -> tuple[str, Path]:
    """A hub with one small real ONNX model (a 1 MiB initializer): its folder and
    the model file (for the onnx.load baseline)."""
    hub = root / "latency"
    model_file = hub / "tiny" / "tiny.onnx"
    if not model_file.exists():
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        weights = np.random.default_rng(0).random((512, 512), dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["x", "w"], ["y"])],
            "tiny",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 512])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 512])],
            [numpy_helper.from_array(weights, "w")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model_file.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(model_file))
    data = model_file.read_bytes()
    entry = {
        "model": LATENCY_MODEL,
        "model_path": "tiny/tiny.onnx",
        "opset_version": 13,
        "metadata": {
            "model_sha": hashlib.sha256(data).hexdigest(),
            "model_bytes": len(data),
            "tags": ["bench"],
        },
    }
    (hub / MANIFEST_NAME).write_text(json.dumps([entry], indent=1))
    return "latency", model_file
