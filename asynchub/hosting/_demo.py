"""``asynchub demo``: the whole path, on this machine, with no internet.

1. build the example hub (tiny real ONNX models with test data) in a folder;
2. serve it on 127.0.0.1 with :mod:`asynchub.hosting._serve`;
3. mirror it over HTTP into another folder (progress through the callbacks);
4. load one model by name from the server with :class:`~asynchub.client.AsyncHub`;
5. run every mirrored model on its ``test_data_set_0`` with
   ``onnx.reference.ReferenceEvaluator`` and compare with the expected outputs.

It uses a plain :class:`~asynchub.config.HubConfig` with its cache inside the demo
folder, so environment settings (offline mode, a cache elsewhere) cannot break it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from .._transfer import ProgressCallback
from ..cache import extract_tarball, find_model_folder
from ..client import AsyncHub
from ..config import ArchiveLimits, HubConfig
from ..manifest import Manifest, ManifestEntry
from ..mirror import MirrorReport, PlanCallback
from ..sources import MANIFEST_NAME
from ._example import build_example_hub
from ._serve import serving

__all__ = ("DemoCheck", "DemoResult", "run_demo")

LOADED_MODEL = "TinyNet"
_RTOL, _ATOL = 1e-4, 1e-6


@dataclass(frozen=True)
class DemoCheck:
    """One mirrored model run on its test data."""

    model: str
    opset: int
    outputs: int
    ok: bool
    detail: str


@dataclass(frozen=True)
class DemoResult:
    url: str
    mirror: MirrorReport
    loaded: str
    checks: list[DemoCheck]
    elapsed: float

    @property
    def ok(self) -> bool:
        return self.mirror.ok and bool(self.checks) and all(c.ok for c in self.checks)


async def run_demo(
    workdir: Path,
    *,
    say: Callable[[str], None],
    progress: ProgressCallback | None = None,
    on_plan: PlanCallback | None = None,
) -> DemoResult:
    """Run the demo in ``workdir``; ``say`` receives one line per step."""
    started = time.monotonic()
    source = await anyio.to_thread.run_sync(build_example_hub, workdir / "hub")
    say(f"built the example hub in {source}")
    config = HubConfig(cache_dir=workdir / "cache")
    dest = workdir / "mirror"
    async with serving(source) as url:
        say(f"serving it at {url}")
        async with AsyncHub(config) as client:
            report = await client.mirror(
                dest, url, silent=True, progress=progress, on_plan=on_plan
            )
        say(f"mirrored into {dest}: {report.summary()}")
        report.raise_for_failures()
        loaded = await _load_one(config, url)
        say(loaded)
    checks = await anyio.to_thread.run_sync(check_mirror, dest, workdir / "extracted")
    return DemoResult(url, report, loaded, checks, time.monotonic() - started)


async def _load_one(config: HubConfig, url: str) -> str:
    async with AsyncHub(config) as client:
        model = await client.load(LOADED_MODEL, repo=url, silent=True)
    if model is None:  # silent=True never declines; keep mypy and readers sure
        raise RuntimeError(f"{LOADED_MODEL} could not be loaded from {url}")
    inputs = ", ".join(_port(v) for v in model.graph.input)
    outputs = ", ".join(_port(v) for v in model.graph.output)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    return (
        f"loaded {LOADED_MODEL} (opset {opset}) over HTTP with AsyncHub.load: "
        f"{inputs} -> {outputs}"
    )


def _port(value: onnx.ValueInfoProto) -> str:
    dims = value.type.tensor_type.shape.dim
    shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
             for d in dims]  # fmt: skip
    return f"{value.name}{shape}"


def check_mirror(mirror: Path, scratch: Path) -> list[DemoCheck]:
    """Run every model of a mirrored hub on its test data (blocking)."""
    manifest = Manifest.parse((mirror / MANIFEST_NAME).read_bytes())
    return [_check_entry(mirror, scratch, entry) for entry in manifest]


def _check_entry(mirror: Path, scratch: Path, entry: ManifestEntry) -> DemoCheck:
    tarball = entry.metadata.model_with_data_path
    if tarball is None:
        return DemoCheck(entry.model, entry.opset_version, 0, False, "no test data")
    target = scratch / f"{entry.model}-{entry.opset_version}"
    folder = find_model_folder(
        extract_tarball(mirror / tarball, target, ArchiveLimits())
    )
    model = onnx.load(str(mirror / entry.model_path))
    inputs, expected = _test_data(folder / "test_data_set_0", model)
    actual = ReferenceEvaluator(model).run(None, inputs)
    ok = len(actual) == len(expected) and all(
        np.allclose(a, e, rtol=_RTOL, atol=_ATOL)
        for a, e in zip(actual, expected, strict=True)
    )
    detail = f"{len(expected)} output(s) match" if ok else "outputs differ"
    return DemoCheck(entry.model, entry.opset_version, len(expected), ok, detail)


def _test_data(
    folder: Path, model: onnx.ModelProto
) -> tuple[dict[str, NDArray[Any]], list[NDArray[Any]]]:
    weights = {init.name for init in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in weights]
    inputs = [_tensor(p) for p in sorted(folder.glob("input_*.pb"), key=_index)]
    outputs = [_tensor(p) for p in sorted(folder.glob("output_*.pb"), key=_index)]
    return dict(zip(names, inputs, strict=True)), outputs


def _index(path: Path) -> int:
    return int(path.stem.rsplit("_", 1)[1])


def _tensor(path: Path) -> NDArray[Any]:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)
