"""Benchmark scenarios and their test data (random bytes, generated once, cached)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB
REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "asynchub" / "data" / "ONNX_HUB_MANIFEST.json"
SHARED_MANIFEST = REPO.parent / "shared" / "data" / "onnx_hub_manifest.json"


@dataclass(frozen=True)
class DataFile:
    rel: str  # path under the served root, also the URL path
    size: int
    sha256: str


@dataclass(frozen=True)
class Scenario:
    number: int
    title: str
    cap: int | None  # bytes per second per connection, None: uncapped
    files: tuple[DataFile, ...]

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)


def _zoo_plan(scale: int) -> list[tuple[str, int]]:
    """The real manifest's models and tarballs, sizes divided by ``scale``."""
    path = SHARED_MANIFEST if SHARED_MANIFEST.exists() else MANIFEST
    plan: list[tuple[str, int]] = []
    for entry in json.loads(path.read_text()):
        meta = entry["metadata"]
        plan.append((entry["model_path"], meta["model_bytes"]))
        if meta.get("model_with_data_path"):
            plan.append((meta["model_with_data_path"], meta["model_with_data_bytes"]))
    return [(f"s2/{rel}", max(1, size // scale)) for rel, size in plan]


def plans(quick: bool) -> dict[int, tuple[str, int | None, list[tuple[str, int]]]]:
    """Scenario number -> (title, cap per connection, [(rel, size)])."""
    big, zoo_scale, small_count, huge = (
        (32 * MiB, 512, 500, 128 * MiB) if quick else (256 * MiB, 64, 2000, GiB)
    )
    return {
        1: (
            f"4 x {big // MiB} MiB, no cap",
            None,
            [(f"s1/blob-{i}.bin", big) for i in range(4)],
        ),
        2: (
            f"zoo (184 entries) / {zoo_scale}, 8 MiB/s per connection",
            8 * MiB,
            _zoo_plan(zoo_scale),
        ),
        3: (
            f"{small_count} x 64 KiB, no cap",
            None,
            [
                (f"s3/d{i // 100:02d}/f{i:04d}.bin", 64 * 1024)
                for i in range(small_count)
            ],
        ),
        4: (
            f"1 x {huge // MiB} MiB, 16 MiB/s per connection",
            16 * MiB,
            [(f"s4/one-{huge // MiB}M.bin", huge)],
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
    for number, (title, cap, plan) in plans(quick).items():
        if number in numbers:
            files = ensure_files(root, plan, f"s{number}")
            if number == 2:
                write_zoo_manifest(root / "s2", files)
            out.append(Scenario(number, title, cap, tuple(files)))
    return out


def write_zoo_manifest(hub: Path, files: list[DataFile]) -> None:
    """The real manifest with the scaled files' sizes and hashes, at the hub root,
    so that the zoo folder served by nginx is a hub ``hub.mirror`` can copy."""
    path = SHARED_MANIFEST if SHARED_MANIFEST.exists() else MANIFEST
    by_path = {f.rel.split("/", 1)[1]: f for f in files}
    entries = json.loads(path.read_text())
    for entry in entries:
        meta, model = entry["metadata"], by_path[entry["model_path"]]
        meta["model_sha"], meta["model_bytes"] = model.sha256, model.size
        if meta.get("model_with_data_path"):
            tar = by_path[meta["model_with_data_path"]]
            meta["model_with_data_sha"], meta["model_with_data_bytes"] = (
                tar.sha256,
                tar.size,
            )
    (hub / "ONNX_HUB_MANIFEST.json").write_text(json.dumps(entries, indent=1))
