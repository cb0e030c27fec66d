"""``hf://`` repos against a local fake Hugging Face (tests/fake_hf.py)."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynchub import AsyncHub, Hub, HubConfig
from asynchub.config import Limits, RetryPolicy, Timeouts
from asynchub.errors import (
    HubAuthError,
    IntegrityError,
    OfflineCacheMissError,
    RepoSpecError,
)
from asynchub.mirror import amirror
from asynchub.sources import hf, resolve_repo
from asynchub.sources.hf_listing import Listing, build_manifest, next_link, parse_name

from .fake_hf import TOKEN, FakeHF, FakeRepo, big_model, model_files

COMMIT_A = "a1" * 20
COMMIT_B = "b2" * 20
ZOO = "hf://onnxmodelzoo/legacy_models"

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


@pytest.fixture(scope="module")
def _fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeHF]:
    from asynchub.hosting._example import build_example_hub

    hub = build_example_hub(tmp_path_factory.mktemp("hf_example"))
    fake = FakeHF()
    files = model_files(hub)
    tiny = files["vision/classification/tinynet/model/tinynet-13.onnx"]
    legacy = {f"validated/{p}": d for p, d in files.items()}
    legacy["Computer_Vision/resnet18_Opset18_timm/resnet18_Opset18_timm.onnx"] = tiny
    legacy["Computer_Vision/misc/model.onnx"] = tiny  # no opset in the name
    legacy["Computer_Vision/misc/broken.onnx"] = b"not a model"  # nor in its bytes
    legacy["Natural_Language_Processing/x/onnx/model.onnx"] = big_model()
    legacy["README.md"] = b"# legacy models\n"
    plain = {"README.md", "Computer_Vision/misc/broken.onnx"}
    fake.add("onnxmodelzoo/legacy_models", FakeRepo(legacy, COMMIT_A, plain))
    fake.add(
        "onnxmodelzoo/mnist-8",
        FakeRepo({"mnist-8.onnx": tiny, "README.md": b"# mnist\n"}, COMMIT_B),
    )
    with_manifest = {
        **files,
        "ONNX_HUB_MANIFEST.json": (hub / "ONNX_HUB_MANIFEST.json").read_bytes(),
    }
    fake.add("acme/with-manifest", FakeRepo(with_manifest, COMMIT_A))
    big = big_model()
    fake.add("acme/big", FakeRepo({"big-13.onnx": big}, COMMIT_B))
    fake.add("acme/gated", FakeRepo({"big-13.onnx": big}, COMMIT_A, gated=True))
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(_fake: FakeHF, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHF]:
    _fake.requests.clear()
    _fake.ranges.clear()
    _fake.violations.clear()
    _fake.ttl, _fake.max_ranged, _fake.burst_429 = 3600.0, None, 0
    _fake.lying_etag = False
    _fake.chunk_delay, _fake.expired, _fake.refused_ranged = 0.001, 0, 0
    monkeypatch.setenv("ASYNCHUB_HF_ENDPOINT", _fake.base)
    yield _fake
    assert _fake.violations == [], "the CDN received an Authorization header"


def _config(**overrides: object) -> HubConfig:
    limits = Limits(
        part_size=64 * 1024, split_threshold=64 * 1024, max_parts_per_file=4
    )
    return HubConfig.from_env(
        limits=limits,
        retry=RetryPolicy(attempts=4, backoff_base=0.01, backoff_max=0.05),
        timeouts=Timeouts(connect=2.0, read=5.0),
        fsync=False,
        **overrides,
    )


# listing rules ------------------------------------------------------------
def test_names_give_name_and_opset_or_nothing() -> None:
    assert parse_name("mnist-8.onnx") == ("mnist", 8)
    assert parse_name("resnet50-v1-12-int8.onnx") == ("resnet50-v1-int8", 12)
    assert parse_name("adv_inception_v3_Opset16.onnx") == ("adv_inception_v3", 16)
    assert parse_name("resnet18_Opset18_timm.onnx") == ("resnet18_timm", 18)
    assert parse_name("efficientnet-lite4-11.onnx") == ("efficientnet-lite4", 11)
    assert parse_name("model.onnx") is None
    assert parse_name("decoder_model_merged.onnx") is None


def test_listing_shaped_like_the_real_one_builds_a_manifest() -> None:
    sha = "ab" * 32
    listing = Listing()
    listing.add_page(
        [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": "validated"},
            {
                "type": "file",
                "path": "validated/vision/classification/mnist/model/mnist-8.onnx",
                "size": 26454,
                "oid": "1" * 40,
                "lfs": {"oid": sha, "size": 26454, "pointerSize": 134},
            },
            {
                "type": "file",
                "path": "validated/vision/classification/mnist/model/mnist-8.tar.gz",
                "size": 9,
                "oid": "2" * 40,
                "lfs": {"oid": "cd" * 32, "size": 9, "pointerSize": 130},
            },
            {
                "type": "file",
                "path": "x/tiny_Opset16.onnx",
                "size": 100,
                "oid": "3" * 40,
            },
            {"type": "file", "path": "onnx/model.onnx", "size": 5, "oid": "4" * 40},
            {"type": "file", "path": "../evil-9.onnx", "size": 5, "oid": "5" * 40},
        ]
    )
    manifest = build_manifest(listing)
    by_name = {e.model: e for e in manifest}
    mnist = by_name["mnist"]
    assert (mnist.opset_version, mnist.metadata.model_sha) == (8, sha)
    assert mnist.metadata.model_bytes == 26454
    assert mnist.metadata.tags == ["vision", "classification", "mnist"]
    assert mnist.metadata.model_with_data_path.endswith("mnist-8.tar.gz")  # type: ignore[union-attr]
    assert mnist.metadata.model_with_data_sha == "cd" * 32
    tiny = by_name["tiny"]  # a plain git file: size, but no SHA-256 (not a git oid)
    assert (tiny.opset_version, tiny.metadata.model_sha) == (16, None)
    assert tiny.metadata.model_bytes == 100
    assert set(by_name) == {"mnist", "tiny"}
    assert len(listing.skipped) == 2  # model.onnx (no opset), ../evil (unsafe)


def _opset_by_windows(data: bytes) -> int | None:
    """What the ranged reads see: windows of the file, as scan() asks for them."""
    from asynchub.sources.hf_opset import WINDOW, scan

    offset = 0
    for _ in range(3):
        window = data[offset : offset + WINDOW]
        found = scan(window, offset)
        if found.opset is not None or found.resume is None or len(window) < WINDOW:
            return found.opset
        offset = found.resume
    return None


def test_the_opset_is_read_from_a_few_windows_of_the_model() -> None:
    import onnx
    from onnx import helper

    assert _opset_by_windows(big_model()) == 13  # graph > one window: two reads
    model = onnx.load_from_string(big_model(1000))
    model.opset_import[0].version = 17
    model.opset_import.insert(0, helper.make_opsetid("com.microsoft", 1))
    model.doc_string = "x" * 200_000  # a field before the graph, longer than a window
    assert _opset_by_windows(model.SerializeToString()) == 17
    del model.opset_import[1]  # only a custom domain: no default opset
    assert _opset_by_windows(model.SerializeToString()) is None
    assert _opset_by_windows(b"<html>not a model</html>") is None
    assert _opset_by_windows(b"") is None


def test_next_link_and_repo_strings() -> None:
    assert (
        next_link('<https://h/api/x?cursor=2>; rel="next"')
        == "https://h/api/x?cursor=2"
    )
    assert next_link(None) is None
    assert hf.parse("hf://onnxmodelzoo/mnist-8") == ("onnxmodelzoo/mnist-8", "main")
    assert hf.parse("hf://a/b@refs/pr/1") == ("a/b", "refs/pr/1")
    for bad in ("hf://a", "hf://a/b/c", "hf://a/b@..", "hf://datasets/x"):
        with pytest.raises(RepoSpecError):
            resolve_repo(bad, HubConfig())


# list, load, offline ------------------------------------------------------------
def test_load_from_an_hf_repo_sync_pins_one_commit(
    fake: FakeHF, cache_dir: Path
) -> None:
    with Hub(_config(), confirm=None) as hub:
        model = hub.load("mnist", repo="hf://onnxmodelzoo/mnist-8")
    assert model is not None and model.graph.node
    data = fake.repos["onnxmodelzoo/mnist-8"].files["mnist-8.onnx"]
    sha = hashlib.sha256(data).hexdigest()
    assert (cache_dir / f"{sha}_mnist-8.onnx").read_bytes() == data  # onnx.hub layout
    assert len(fake.hub_requests("/revision/main")) == 1
    assert fake.hub_requests(
        f"/resolve/{COMMIT_B}/mnist-8.onnx"
    )  # pinned to the commit
    assert len(fake.hub_requests("/tree/")) == 1  # two files: one page
    assert fake.cdn_requests()


async def test_list_models_paginates_then_works_offline(
    fake: FakeHF, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "asynchub"):
        async with AsyncHub(_config()) as hub:
            models = await hub.list_models(ZOO)
            tagged = await hub.list_models(ZOO, tags=["text"])
    names = {(m.model, m.opset) for m in models}
    assert ("tinynet", 13) in names and ("tinynet", 17) in names
    assert ("resnet18_timm", 18) in names
    assert ("TinyMLP-preproc", 18) in names
    # no opset in the name: read from the model (the big one needs a second window
    # after its graph); the stem repeats, so the names are the paths
    assert ("Computer_Vision/misc/model", 13) in names
    assert ("Natural_Language_Processing/x/onnx/model", 13) in names
    assert "broken.onnx: no opset in its name or its header" in caplog.text
    windows = [r for r in fake.ranges if r.startswith("bytes=")]
    assert "bytes=0-65535" in windows  # the head of each unnamed model
    assert any(not r.startswith("bytes=0-") for r in windows)  # after the big graph
    assert len(windows) <= 2 * 2  # two LFS models, at most two windows each
    big = next(m for m in models if m.model.endswith("onnx/model"))
    assert big.metadata["model_bytes"] == len(
        fake.repos["onnxmodelzoo/legacy_models"].files[big.model_path]
    )
    assert {m.model for m in tagged} == {"tinytext", "echo-qa"}
    tiny = next(m for m in models if m.model == "tinynet" and m.opset == 13)
    assert tiny.metadata["model_with_data_path"].endswith("tinynet-13.tar.gz")
    pages = fake.hub_requests("/tree/")
    assert len(pages) > 3 and all(COMMIT_A in p for p in pages)  # Link followed
    fake.requests.clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    async with AsyncHub() as offline:
        assert offline.config.offline
        again = await offline.list_models(ZOO)
        assert {(m.model, m.opset) for m in again} == names
        with pytest.raises(OfflineCacheMissError):
            await offline.load("tinynet", ZOO)  # the manifest is cached, the model not
    assert fake.requests == []


def test_info_and_test_data_from_an_hf_repo_sync(fake: FakeHF, cache_dir: Path) -> None:
    with Hub(_config(), confirm=None) as hub:
        info = hub.get_model_info("TinyNet", ZOO, opset=17)
        folder = hub.download_model_with_test_data("tinynet", ZOO, opset=13)
    assert info.model_path.endswith("tinynet-17.onnx") and info.opset == 17
    assert folder is not None
    assert (Path(folder) / "model.onnx").is_file()
    assert list(Path(folder).glob("test_data_set_0/input_0.pb"))


async def test_warm_list_reads_no_listing_and_load_works_offline(
    fake: FakeHF, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncHub(_config()) as hub:
        await hub.list_models("hf://onnxmodelzoo/mnist-8")
        await hub.load("mnist", "hf://onnxmodelzoo/mnist-8")
    fake.requests.clear()
    async with AsyncHub(_config()) as warm:  # a new client: only the revision API
        await warm.list_models("hf://onnxmodelzoo/mnist-8")
    assert fake.hub_requests() == ["/api/models/onnxmodelzoo/mnist-8/revision/main"]
    async with AsyncHub(_config(offline=True)) as offline:
        assert (await offline.load("mnist", "hf://onnxmodelzoo/mnist-8")) is not None


async def test_a_repo_manifest_is_used_when_present(fake: FakeHF) -> None:
    async with AsyncHub(_config()) as hub:
        models = await hub.list_models("hf://acme/with-manifest")
        model = await hub.load("TinyNet", "hf://acme/with-manifest", silent=True)
    assert {m.model for m in models} >= {"TinyNet", "TinyMLP-preproc"}
    assert model is not None
    assert fake.hub_requests("/tree/") == []
    assert fake.hub_requests(f"/resolve/{COMMIT_A}/ONNX_HUB_MANIFEST.json")


def test_an_unknown_hf_repo_is_not_trusted_without_asking(fake: FakeHF) -> None:
    from asynchub.errors import UntrustedRepoError

    with Hub(_config(), confirm=None) as hub, pytest.raises(UntrustedRepoError):
        hub.load("big", "hf://acme/big")


# tokens and gated repos ---------------------------------------------------------
async def test_gated_repo_needs_a_token_sent_to_the_hub_only(
    fake: FakeHF, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    async with AsyncHub(_config()) as hub:
        with pytest.raises(HubAuthError) as info:
            await hub.list_models("hf://acme/gated")
    assert "hf auth login" in str(info.value) and "HF_TOKEN" in str(info.value)
    (tmp_path / "hf_home").mkdir()
    (tmp_path / "hf_home" / "token").write_text(TOKEN + "\n")
    config = _config()
    assert TOKEN not in repr(config) and TOKEN not in config.model_dump_json()
    async with AsyncHub(config) as hub:
        model = await hub.load("big", "hf://acme/gated", silent=True)
    assert model is not None
    assert fake.cdn_requests()  # the CDN got no token (checked by the fixture)


async def test_a_wrong_token_is_never_shown(
    fake: FakeHF, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "hf_wrong_token_that_must_stay_secret"
    monkeypatch.setenv("HF_TOKEN", wrong)
    with caplog.at_level(logging.DEBUG):
        async with AsyncHub(_config()) as hub:
            with pytest.raises(HubAuthError) as info:
                await hub.list_models("hf://acme/gated")
        with pytest.raises(HubAuthError) as mirrored:
            await amirror(
                Path(os.environ["ONNX_HOME"]) / "m",
                "hf://acme/gated",
                config=_config(),
                silent=True,
            )
    assert info.value.status == 401
    assert wrong not in str(info.value) + str(mirrored.value) + caplog.text
    assert "Authorization" not in caplog.text


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_token_from_the_environment(
    fake: FakeHF, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv(name, TOKEN)
    monkeypatch.delenv("ASYNCHUB_HF_ENDPOINT")
    monkeypatch.setenv("HF_ENDPOINT", fake.base)  # the alias
    with Hub(_config(), confirm=None) as hub:
        assert hub.list_models("hf://acme/gated")[0].model == "big"


# the CDN: expiry, refused connections, 429 --------------------------------------
async def test_expired_signed_urls_are_resolved_again(fake: FakeHF) -> None:
    fake.ttl, fake.chunk_delay = 0.1, 0.03  # parts outlive their signature
    async with AsyncHub(_config()) as hub:
        model = await hub.load("big", "hf://acme/big", silent=True)
    assert model is not None
    assert fake.expired > 0
    assert len(fake.hub_requests("/resolve/")) > 1


async def test_a_cdn_refusing_a_third_ranged_connection_gets_fewer(
    fake: FakeHF,
) -> None:
    fake.max_ranged, fake.chunk_delay = 2, 0.005
    async with AsyncHub(_config()) as hub:
        model = await hub.load("big", "hf://acme/big", silent=True)
    assert model is not None
    assert fake.refused_ranged > 0


async def test_an_advertised_sha_that_disagrees_is_refused(
    fake: FakeHF, cache_dir: Path
) -> None:
    fake.lying_etag = True
    async with AsyncHub(_config()) as hub:
        with pytest.raises(IntegrityError, match="advertises SHA-256 0000"):
            await hub.load("mnist", "hf://onnxmodelzoo/mnist-8")
    assert fake.cdn_requests() == []  # refused before a byte was fetched
    assert not list(cache_dir.glob("*mnist-8.onnx"))


async def test_429_bursts_are_waited_out(fake: FakeHF) -> None:
    fake.burst_429 = 3
    async with AsyncHub(_config()) as hub:
        models = await hub.list_models("hf://onnxmodelzoo/mnist-8")
    assert [m.model for m in models] == ["mnist"]
    assert len(fake.hub_requests("/revision/")) == 4


# mirror and CLI ---------------------------------------------------------------------
async def test_mirror_an_hf_repo(fake: FakeHF, tmp_path: Path) -> None:
    report = await amirror(tmp_path / "m", ZOO, config=_config(), with_data=True)
    assert report.ok, report.failed
    assert (tmp_path / "m" / "ONNX_HUB_MANIFEST.json").is_file()
    path = "validated/vision/classification/tinynet/model/tinynet-13.tar.gz"
    assert (tmp_path / "m" / path).read_bytes() == fake.repos[
        "onnxmodelzoo/legacy_models"
    ].files[path]


def test_cli_lists_and_downloads_an_hf_repo(fake: FakeHF, cache_dir: Path) -> None:
    env = {**os.environ, "HF_TOKEN": TOKEN}
    listed = subprocess.run(
        [sys.executable, "-m", "asynchub", "list", "--repo", ZOO],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "resnet18_timm" in listed.stdout and "tinynet" in listed.stdout
    assert TOKEN not in listed.stdout + listed.stderr
    fetched = subprocess.run(
        [
            sys.executable,
            "-m",
            "asynchub",
            "download",
            "mnist",
            "--repo",
            "hf://onnxmodelzoo/mnist-8",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert fetched.returncode == 0, fetched.stderr
    assert list(cache_dir.glob("*_mnist-8.onnx"))


# the official zoo, honestly ---------------------------------------------------------
TAR_13 = "vision/classification/tinynet/model/tinynet-13.tar.gz"


@pytest.fixture
def zoo_without_archive(
    tmp_path: Path, example_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The official zoo's layouts (GitHub raw, LFS media, HF mirror) served by one
    server from a copy of the example hub that lacks one test-data archive."""
    import shutil

    from .hub_server import HubServer

    root = tmp_path / "zoo"
    shutil.copytree(example_hub, root)
    (root / TAR_13).unlink()
    server = HubServer(root).start()
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    yield root
    server.stop()


async def test_an_archive_no_source_serves_gets_its_own_error(
    zoo_without_archive: Path,
) -> None:
    from asynchub.errors import ArchiveUnavailableError, RemoteFileNotFoundError

    async with AsyncHub(_config()) as hub:
        with pytest.raises(ArchiveUnavailableError) as info:
            await hub.download_model_with_test_data("TinyNet", opset=13)
        assert await hub.load("TinyNet", opset=13) is not None  # load still works
        assert await hub.download_model_with_test_data("TinyNet", opset=17)
    assert isinstance(info.value, RemoteFileNotFoundError)
    text = str(info.value)
    assert "not on the Hugging Face mirror" in text and "GitHub LFS" in text
    assert "load() still works" in text


async def test_mirror_counts_unavailable_archives_apart(
    zoo_without_archive: Path, tmp_path: Path
) -> None:
    report = await amirror(tmp_path / "m", config=_config(), with_data=True)
    assert report.ok and report.failed == []
    assert [u.path for u in report.unavailable] == [TAR_13]
    assert report.files_unavailable == 1
    assert "unavailable upstream 1" in report.summary()
    report.raise_for_failures()  # unavailable files are not failures


def test_cli_mirror_exits_0_when_only_archives_are_unavailable(
    zoo_without_archive: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "asynchub",
            "mirror",
            str(tmp_path / "m"),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{TAR_13}: unavailable upstream" in done.stderr
