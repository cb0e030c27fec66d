"""Mirroring a hub into a folder and filling the cache (asynchub.mirror).

Every test moves real bytes over real sockets from local servers: the example hub is
hosted on ``tests/servers.Server`` (with per-file faults) or on asynchub's own
``_serve``; nothing is patched.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from asynchub import AsyncHub, HubConfig, RetryPolicy, Timeouts
from asynchub._transfer import FileProgress, ProgressEvent
from asynchub.errors import (
    ConfigError,
    DiskFullError,
    MirrorError,
    ModelNotFoundError,
    OpsetNotFoundError,
    UnsafePathError,
    UntrustedRepoError,
)
from asynchub.hosting._serve import serving
from asynchub.manifest import Manifest
from asynchub.mirror import (
    MirrorPlan,
    MirrorReport,
    adownload,
    amirror,
    download,
    mirror,
)
from asynchub.mirror._plan import (
    check_mirror_path,
    parse_shard,
    select_entries,
    shard_of,
    unique_files,
)

from .harness import Behavior, Server

pytestmark = pytest.mark.anyio

MANIFEST = "ONNX_HUB_MANIFEST.json"
TINYNET_13 = "vision/classification/tinynet/model/tinynet-13.onnx"
TINYNET_17 = "vision/classification/tinynet/model/tinynet-17.onnx"


def hub_files(root: Path) -> dict[str, Path]:
    """Every file of a hub folder except its manifest and asynchub's state."""
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST and ".asynchub" not in p.parts
    }


def manifest_of(root: Path) -> Manifest:
    return Manifest.parse((root / MANIFEST).read_bytes())


def config(tmp_path: Path, **overrides: object) -> HubConfig:
    """Quick retries so permanent failures fail fast."""
    values: dict[str, object] = {
        "cache_dir": tmp_path / "cache",
        "retry": RetryPolicy(attempts=2, backoff_base=0.01, backoff_max=0.02),
        "timeouts": Timeouts(connect=5, read=5),
    }
    values.update(overrides)
    return HubConfig.model_validate(values)


@asynccontextmanager
async def hosted(
    root: Path, behaviors: dict[str, Behavior] | None = None
) -> AsyncIterator[tuple[Server, str]]:
    """The hub folder ``root`` on a Server under ``/hub/``; yields its URL."""
    async with Server() as server:
        server.add(f"/hub/{MANIFEST}", (root / MANIFEST).read_bytes())
        for relative, path in hub_files(root).items():
            behavior = (behaviors or {}).get(relative)
            server.add(f"/hub/{relative}", path.read_bytes(), behavior)
        yield server, server.url("/hub/")


def file_gets(server: Server) -> list[str]:
    return [
        r.path
        for r in server.requests
        if r.method == "GET" and r.path != f"/hub/{MANIFEST}"
    ]


# ------------------------------------------------------------------ selection


def test_select_entries_filters(example_hub: Path) -> None:
    manifest = manifest_of(example_hub)
    by_name = select_entries(manifest, models=["tinynet"])
    assert [(e.model, e.opset_version) for e in by_name] == [
        ("TinyNet", 13),
        ("TinyNet", 17),
    ]
    latest = select_entries(manifest, models=["TinyNet"], latest_only=True)
    assert [e.opset_version for e in latest] == [17]
    text = select_entries(manifest, tags=["TEXT"])
    assert sorted(e.model for e in text) == ["TinyText", "echo-qa"]
    at13 = select_entries(manifest, opsets=[13])
    assert sorted(e.model for e in at13) == ["TinyMLP", "TinyNet"]
    assert len(select_entries(manifest, latest_only=True)) == 5
    with pytest.raises(ModelNotFoundError, match="nope"):
        select_entries(manifest, models=["TinyNet", "nope"])
    with pytest.raises(OpsetNotFoundError, match=r"Valid opsets: \[13, 17\]"):
        select_entries(manifest, models=["TinyNet"], opsets=[99])


def test_files_include_tarballs_only_with_data(example_hub: Path) -> None:
    entries = list(manifest_of(example_hub))
    assert len(unique_files(entries, with_data=False)) == 6
    files = unique_files(entries, with_data=True)
    assert {f.path for f in files} == set(hub_files(example_hub))
    sizes = {f.path: f.size for f in files}
    assert sizes == {k: p.stat().st_size for k, p in hub_files(example_hub).items()}


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shards_partition_the_selection(example_hub: Path, count: int) -> None:
    paths = [f.path for f in unique_files(manifest_of(example_hub), True)]
    shards = [{p for p in paths if shard_of(p, count) == i} for i in range(count)]
    assert sum(len(s) for s in shards) == len(paths)  # disjoint ...
    assert set().union(*shards) == set(paths)  # ... and complete
    assert [shard_of(p, count) for p in paths] == [shard_of(p, count) for p in paths]


def test_parse_shard() -> None:
    assert parse_shard("2/4") == (2, 4)
    assert parse_shard(" 0 / 1 ") == (0, 1)
    assert parse_shard((1, 3)) == (1, 3)
    assert parse_shard(None) is None
    for bad in ("4/4", "1/0", "a/b", "-1/3", "1-3", (3, 3)):
        with pytest.raises(ConfigError):
            parse_shard(bad)


# ------------------------------------------------------------------ mirroring


async def test_mirror_lays_out_a_hub_and_a_rerun_transfers_nothing(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    plans: list[MirrorPlan] = []
    async with hosted(example_hub) as (server, url):
        report = await amirror(
            dest, url, silent=True, config=config(tmp_path), on_plan=plans.append
        )
        source_files = hub_files(example_hub)
        total = sum(p.stat().st_size for p in source_files.values())
        assert report.ok and report.manifest_written
        assert (report.files_done, report.bytes_done) == (12, total)
        assert report.bytes_downloaded == total and report.skipped == []
        assert plans == [MirrorPlan(12, total, 12, total, 0, 0)]
        assert sorted(file_gets(server)) == sorted(f"/hub/{p}" for p in source_files)
        for relative, path in source_files.items():
            assert (dest / relative).read_bytes() == path.read_bytes()
        assert manifest_of(dest).to_json() == manifest_of(example_hub).to_json()
        manifest_mtime = (dest / MANIFEST).stat().st_mtime_ns

        server.reset_stats()
        again = await amirror(dest, url, silent=True, config=config(tmp_path))
    assert again.ok and again.files_done == 0 and again.bytes_downloaded == 0
    assert len(again.skipped) == 12 and again.to_fetch_files == 0
    assert file_gets(server) == []  # nothing but the manifest crossed the wire
    assert (dest / MANIFEST).stat().st_mtime_ns == manifest_mtime


async def test_mirror_of_a_selection_lists_exactly_that(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    report = await amirror(
        dest, str(example_hub), tags=["text"], with_data=False, config=config(tmp_path)
    )
    assert report.ok and report.models == 2 and report.files_done == 2
    assert sorted(e.model for e in manifest_of(dest)) == ["TinyText", "echo-qa"]
    assert sorted(hub_files(dest)) == [
        "text/classification/tinytext/model/tinytext-15.onnx",
        "text/machine_comprehension/echo_qa/model/echo-qa-12.onnx",
    ]


async def test_mirrored_folder_loads_as_a_folder_and_over_http(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    (
        await amirror(
            dest,
            str(example_hub),
            models=["TinyNet"],
            with_data=False,
            config=config(tmp_path),
        )
    ).raise_for_failures()
    expected = (example_hub / TINYNET_17).read_bytes()
    async with AsyncHub(config(tmp_path, cache_dir=tmp_path / "c1")) as client:
        model = await client.load("TinyNet", repo=str(dest))
    assert model is not None and model.SerializeToString() == expected
    async with (
        serving(dest) as url,
        AsyncHub(config(tmp_path, cache_dir=tmp_path / "c2")) as client,
    ):
        model = await client.load("TinyNet", repo=url, opset=13, silent=True)
    assert model is not None
    assert model.SerializeToString() == (example_hub / TINYNET_13).read_bytes()


async def test_one_permanently_failing_file_does_not_stop_the_others(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    broken = {TINYNET_13: Behavior(fail_first=10**6, fail_status=404)}
    async with hosted(example_hub, broken) as (_, url):
        report = await amirror(dest, url, silent=True, config=config(tmp_path))
    assert [f.path for f in report.failed] == [TINYNET_13]
    assert report.failed[0].error == "RemoteFileNotFoundError"
    assert report.files_done == 11 and not report.manifest_written
    assert not (dest / MANIFEST).exists()  # a half mirror is not a hub
    assert set(hub_files(dest)) == set(hub_files(example_hub)) - {TINYNET_13}
    with pytest.raises(MirrorError, match="1 of 12 files failed") as caught:
        report.raise_for_failures()
    assert caught.value.failures == report.failed

    async with hosted(example_hub) as (server, url):  # the server is fixed
        rerun = await amirror(dest, url, silent=True, config=config(tmp_path))
    assert rerun.ok and [f.path for f in rerun.done] == [TINYNET_13]
    assert file_gets(server) == [f"/hub/{TINYNET_13}"]
    assert (
        rerun.manifest_written
        and manifest_of(dest).to_json() == manifest_of(example_hub).to_json()
    )


def big_hub(root: Path, size: int = 3 * 1024 * 1024) -> bytes:
    """A hub with one large file (content is opaque to a mirror)."""
    data = os.urandom(size)
    path = "big/model/big-13.onnx"
    (root / "big/model").mkdir(parents=True)
    (root / path).write_bytes(data)
    entry = {
        "model": "Big",
        "model_path": path,
        "opset_version": 13,
        "metadata": {
            "model_sha": hashlib.sha256(data).hexdigest(),
            "model_bytes": size,
        },
    }
    (root / MANIFEST).write_text(json.dumps([entry]))
    return data


async def test_interrupted_mirror_resumes(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "mirror"
    data = big_hub(source)
    path = "big/model/big-13.onnx"
    half = 1024 * 1024  # the engine reports progress in 1 MiB batches
    slow = {path: Behavior(stall_after=5 * half // 2)}
    got_some = anyio.Event()

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, FileProgress) and event.done >= half:
            got_some.set()

    async def run_until_cancelled(url: str) -> None:
        await amirror(
            dest, url, silent=True, config=config(tmp_path), progress=progress
        )

    async with hosted(source, slow) as (server, url):
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(run_until_cancelled, url)
                await got_some.wait()
                group.cancel_scope.cancel()  # Ctrl-C in the middle of the file
        assert not (dest / path).exists() and not (dest / MANIFEST).exists()
        first = server.stats(f"/hub/{path}").bytes_served
        assert half <= first < len(data)

        report = await amirror(dest, url, silent=True, config=config(tmp_path))
    assert report.ok and report.manifest_written
    (done,) = report.done
    assert half <= done.resumed <= first
    assert done.downloaded == len(data) - done.resumed
    second = server.stats(f"/hub/{path}").requests[-1]
    assert second.range == f"bytes={done.resumed}-{len(data) - 1}"
    assert (dest / path).read_bytes() == data


async def test_truncated_transfer_is_a_failure_then_resumes(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "mirror"
    data = big_hub(source)
    path = "big/model/big-13.onnx"
    cut = {path: Behavior(truncate_after=1024 * 1024)}
    once = config(tmp_path, retry=RetryPolicy(attempts=1))
    async with hosted(source, cut) as (server, url):
        failed = await amirror(dest, url, silent=True, config=once)
        assert [f.path for f in failed.failed] == [path]
        resumed = await amirror(dest, url, silent=True, config=once)
    assert resumed.ok and resumed.done[0].resumed > 0
    assert server.stats(f"/hub/{path}").requests[-1].range is not None
    assert (dest / path).read_bytes() == data


async def test_shards_fetch_each_file_once_and_the_last_writes_the_manifest(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "shared"
    reports: list[MirrorReport] = []
    async with hosted(example_hub) as (server, url):
        for index in range(3):
            reports.append(
                await amirror(
                    dest, url, shard=f"{index}/3", silent=True, config=config(tmp_path)
                )
            )
        gets = file_gets(server)
    fetched = [f.path for r in reports for f in r.done]
    assert sorted(fetched) == sorted(hub_files(example_hub))  # exactly once
    assert sorted(gets) == sorted(f"/hub/{p}" for p in fetched)
    assert [r.manifest_written for r in reports] == [False, False, True]
    assert [r.shard for r in reports] == [(0, 3), (1, 3), (2, 3)]
    assert manifest_of(dest).to_json() == manifest_of(example_hub).to_json()


async def test_corrupt_file_with_same_size_and_mtime_needs_verify_existing(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    cfg = config(tmp_path)
    await amirror(dest, str(example_hub), with_data=False, config=cfg)
    target = dest / TINYNET_17
    before = target.stat()
    damaged = bytearray(target.read_bytes())
    damaged[-1] ^= 0xFF
    target.write_bytes(bytes(damaged))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))

    trusting = await amirror(dest, str(example_hub), with_data=False, config=cfg)
    assert trusting.files_done == 0  # the marker vouches for size, mtime, inode
    checked = await amirror(
        dest, str(example_hub), with_data=False, config=cfg, verify_existing=True
    )
    assert [f.path for f in checked.done] == [TINYNET_17]
    assert target.read_bytes() == (example_hub / TINYNET_17).read_bytes()


async def test_changed_file_is_fetched_again_and_old_manifest_retired(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    cfg = config(tmp_path)
    await amirror(dest, str(example_hub), with_data=False, config=cfg)
    (dest / TINYNET_13).write_bytes(b"not a model")
    broken = {TINYNET_13: Behavior(fail_first=10**6, fail_status=404)}
    async with hosted(example_hub, broken) as (_, url):
        report = await amirror(dest, url, with_data=False, silent=True, config=cfg)
    assert [f.path for f in report.failed] == [TINYNET_13]
    assert not (dest / MANIFEST).exists()  # it listed a file that is wrong now


async def test_free_space_is_checked_before_anything_moves(tmp_path: Path) -> None:
    source, dest = tmp_path / "source", tmp_path / "mirror"
    big_hub(source, size=1024)
    raw = json.loads((source / MANIFEST).read_text())
    raw[0]["metadata"]["model_bytes"] = 2**40  # the manifest maximum, 1 TiB
    if shutil.disk_usage(tmp_path).free > 2**40:
        pytest.skip("this disk has more than 1 TiB free")
    (source / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(DiskFullError, match="free but the files still to fetch") as e:
        await amirror(dest, str(source), config=config(tmp_path))
    assert "check_space=False" in (e.value.hint or "")
    assert not dest.exists()
    report = await amirror(
        dest, str(source), config=config(tmp_path), check_space=False
    )
    assert len(report.failed) == 1  # it tried: the server's file is smaller


async def test_dry_run_plans_and_writes_nothing(
    example_hub: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "mirror"
    report = await amirror(
        dest, str(example_hub), dry_run=True, latest_only=True, config=config(tmp_path)
    )
    files = hub_files(example_hub)
    kept = {p: f for p, f in files.items() if "tinynet-13" not in p}
    assert report.dry_run and report.to_fetch_files == 10 and report.models == 5
    assert report.to_fetch_bytes == sum(f.stat().st_size for f in kept.values())
    assert report.done == [] and not dest.exists()
    assert report.summary().startswith("would fetch 10 files")


async def test_untrusted_repo_needs_consent(example_hub: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    async with hosted(example_hub) as (server, url):
        with pytest.raises(UntrustedRepoError, match="not on the trusted list"):
            await amirror(dest, url, config=config(tmp_path))
        strict = config(tmp_path, trust="strict")
        with pytest.raises(UntrustedRepoError, match="strict"):
            await amirror(dest, url, config=strict, silent=True)
        listed = config(tmp_path, trust="strict", trusted_repos=(url,))
        assert (await amirror(dest, url, config=listed, with_data=False)).ok
        assert len(file_gets(server)) == 6


async def test_hostile_paths_are_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    source, dest = tmp_path / "source", tmp_path / "mirror"
    big_hub(source, size=100)
    raw = json.loads((source / MANIFEST).read_text())
    raw[0]["metadata"]["model_with_data_path"] = ".asynchub/verified/evil.tar.gz"
    (source / MANIFEST).write_text(json.dumps(raw))
    with pytest.raises(UnsafePathError):
        await amirror(dest, str(source), config=config(tmp_path))
    assert not dest.exists()
    for reserved in (MANIFEST, "a/.git/config.onnx", "../x.onnx"):
        with pytest.raises(UnsafePathError):
            check_mirror_path(reserved)
    assert check_mirror_path("a/b.onnx") == "a/b.onnx"


async def test_report_json_has_counts(example_hub: Path, tmp_path: Path) -> None:
    report = await amirror(tmp_path / "m", str(example_hub), config=config(tmp_path))
    data = json.loads(report.to_json())
    assert data["files_done"] == 12 and data["ok"] is True
    assert data["bytes_done"] == sum(
        p.stat().st_size for p in hub_files(example_hub).values()
    )
    assert data["throughput"] > 0 and data["failed"] == []
    assert MirrorReport.model_validate_json(report.to_json()) == report


def test_sync_mirror_bridge(example_hub: Path, tmp_path: Path) -> None:
    report = mirror(
        tmp_path / "m", str(example_hub), models=["echo-qa"], config=config(tmp_path)
    )
    assert report.ok and report.files_done == 2


# ------------------------------------------------------------------ the cache


async def test_download_fills_the_cache_for_offline_use(
    example_hub: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    async with hosted(example_hub) as (_, url):
        report = await adownload(
            url,
            models=["TinyNet"],
            latest_only=True,
            with_data=True,
            silent=True,
            config=cfg,
        )
    assert report.mode == "cache" and report.ok
    assert sorted(f.path for f in report.done) == [
        TINYNET_17,
        TINYNET_17.replace(".onnx", ".tar.gz"),
    ]
    sha = hashlib.sha256((example_hub / TINYNET_17).read_bytes()).hexdigest()
    cached = (
        cfg.resolved_cache_dir() / Path(TINYNET_17).parent / f"{sha}_tinynet-17.onnx"
    )
    assert cached.read_bytes() == (example_hub / TINYNET_17).read_bytes()

    offline = cfg.model_copy(update={"offline": True})  # the server is gone now
    async with AsyncHub(offline) as client:
        model = await client.load("TinyNet", repo=url, silent=True)
        folder = await client.download_model_with_test_data(
            "TinyNet", repo=url, silent=True
        )
    assert model is not None and model.SerializeToString() == cached.read_bytes()
    assert folder is not None and (Path(folder) / "test_data_set_0").is_dir()


async def test_download_skips_what_the_cache_has(
    example_hub: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path)
    first = await adownload(str(example_hub), config=cfg)
    assert first.files_done == 6 and first.total_files == 6  # no tarballs by default
    again = await adownload(str(example_hub), config=cfg)
    assert again.files_done == 0 and len(again.skipped) == 6


async def test_a_file_that_cannot_be_written_fails_alone(
    example_hub: Path, tmp_path: Path
) -> None:
    """A file whose folder cannot be created fails alone (a file blocks the path)."""
    cfg = config(tmp_path)
    blocker = cfg.resolved_cache_dir() / "text"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where a folder should be")
    report = await adownload(str(example_hub), config=cfg)
    assert sorted(f.path.split("/")[0] for f in report.failed) == ["text", "text"]
    assert report.files_done == 4
    shutil.rmtree(cfg.resolved_cache_dir())


@pytest.mark.parametrize(("sync", "async_"), [(mirror, amirror), (download, adownload)])
def test_sync_twins_have_the_same_parameters(
    sync: Callable[..., object], async_: Callable[..., object]
) -> None:
    assert inspect.signature(sync).parameters == inspect.signature(async_).parameters


async def test_verified_markers_are_written_in_batches(
    example_hub: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_stamps: None
) -> None:
    from asynchub.mirror import _run as _mirror_run

    batches: list[int] = []
    real = _mirror_run.write_markers

    def counting(root: Path, verified: list[tuple[Path, str]]) -> None:
        batches.append(len(verified))
        real(root, verified)

    monkeypatch.setattr(_mirror_run, "MARKER_BATCH", 5)
    monkeypatch.setattr(_mirror_run, "write_markers", counting)
    dest = tmp_path / "mirror"
    report = await amirror(dest, str(example_hub), config=config(tmp_path))
    assert report.ok and report.files_done == 12
    assert sorted(batches) == [2, 5, 5]
    assert len(list((dest / ".asynchub" / "verified").glob("*.json"))) == 12
