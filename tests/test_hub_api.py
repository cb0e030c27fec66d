"""The onnx.hub-compatible API, sync and async, against a local hub server."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import onnx
import pytest

from asynchub import (
    AsyncHub,
    Hub,
    HubConfig,
    ManifestNotFoundError,
    ModelNotFoundError,
    OfflineCacheMissError,
    OpsetNotFoundError,
    UntrustedRepoError,
    hub,
)
from asynchub.cache import _admin as _cache_admin
from asynchub.cache._layout import cache_path, sha256_file
from asynchub.manifest import Manifest

from .hub_server import COMMIT, HubServer

UNTRUSTED = "acme/zoo"


def _manifest(example_hub: Path) -> Manifest:
    return Manifest.parse((example_hub / "ONNX_HUB_MANIFEST.json").read_bytes())


def _entry(example_hub: Path, name: str, opset: int | None = None):  # type: ignore[no-untyped-def]
    return _manifest(example_hub).find(name, opset)


# listing and inspecting ------------------------------------------------------


def test_list_models_matches_manifest(hub_server: HubServer, example_hub: Path) -> None:
    infos = hub.list_models()
    assert [i.model_path for i in infos] == [
        e.model_path for e in _manifest(example_hub)
    ]
    assert {i.model for i in hub.list_models(model="tinynet")} == {"TinyNet"}
    assert [i.opset for i in hub.list_models(model="TINYNET")] == [13, 17]


def test_list_models_tags_match_any_case_insensitive(hub_server: HubServer) -> None:
    text = hub.list_models(tags=["TEXT"])
    assert {i.model for i in text} == {"TinyText", "echo-qa"}
    both = hub.list_models(tags=["text", "nonexistent", "Vision"])
    assert len(both) == len(hub.list_models())
    assert hub.list_models(tags=["nothing"]) == []


def test_get_model_info_highest_opset_and_exact(hub_server: HubServer) -> None:
    assert hub.get_model_info("TinyNet").opset == 17
    info = hub.get_model_info("tinynet", opset=13)
    assert info.opset == 13 and info.model == "TinyNet"
    assert info.model_path.endswith("tinynet-13.onnx")
    assert info.model_sha == info.metadata["model_sha"]
    assert "vision" in info.tags


def test_opset_and_model_errors_are_assertion_errors(hub_server: HubServer) -> None:
    with pytest.raises(OpsetNotFoundError, match=r"Valid opsets: \[13, 17\]") as exc:
        hub.get_model_info("TinyNet", opset=99)
    assert isinstance(exc.value, AssertionError)
    with pytest.raises(AssertionError, match="No models found with name nope"):
        hub.get_model_info("nope")
    with pytest.raises(ModelNotFoundError):
        hub.load("nope")


def test_manifest_not_found(hub_server: HubServer) -> None:
    with pytest.raises(ManifestNotFoundError, match="Could not find manifest at") as e:
        hub.list_models(repo="nobody/nothing:main")
    assert isinstance(e.value, AssertionError)
    assert "/raw/nobody/nothing/main/ONNX_HUB_MANIFEST.json" in str(e.value)


def test_model_info_str_keeps_onnx_hub_form(hub_server: HubServer) -> None:
    info = hub.get_model_info("TinyNet", opset=13)
    assert str(info) == (
        f"ModelInfo(model=TinyNet, opset=13, path={info.model_path}, "
        f"metadata={info.metadata})"
    )
    assert info.raw_model_info["opset_version"] == 13


# loading and the cache ------------------------------------------------------------


def test_load_downloads_once_then_uses_cache(
    hub_server: HubServer, example_hub: Path, cache_dir: Path
) -> None:
    entry = _entry(example_hub, "TinyNet")
    model = hub.load("TinyNet")
    assert isinstance(model, onnx.ModelProto)
    expected = onnx.load(str(example_hub / entry.model_path))
    assert model == expected
    cached = cache_path(cache_dir, entry.model_path, entry.model_sha)
    assert cached.name == f"{entry.model_sha}_{Path(entry.model_path).name}"
    assert sha256_file(cached) == entry.model_sha
    assert len(hub_server.file_requests()) == 2  # the HF URL and its redirect
    assert hub.load("tinynet") == expected
    assert len(hub_server.file_requests()) == 2  # served from the cache


def test_official_repo_uses_hugging_face_mirror_first(hub_server: HubServer) -> None:
    hub.load("TinyNet", opset=13)
    paths = hub_server.file_requests()
    assert paths[0].startswith("/hf/onnxmodelzoo/legacy_models/resolve/main/")
    assert paths[1].startswith("/cdn/")  # the redirect was followed
    assert len(paths) == 2


def test_official_repo_falls_back_to_github_media(hub_server: HubServer) -> None:
    hub_server.down.add("hf")
    assert hub.load("TinyNet", opset=13) is not None
    media = f"/media/onnx/models/{COMMIT}/"
    assert any(p.startswith(media) for p in hub_server.file_requests())


def test_force_reload_downloads_again(hub_server: HubServer) -> None:
    hub.load("TinyText")
    hub.load("TinyText", force_reload=True)
    assert len([p for p in hub_server.file_requests() if "/cdn/" in p]) == 2


def test_corrupted_cached_file_is_replaced(
    hub_server: HubServer, example_hub: Path, cache_dir: Path
) -> None:
    entry = _entry(example_hub, "TinyText")
    hub.load("TinyText")
    cached = cache_path(cache_dir, entry.model_path, entry.model_sha)
    cached.write_bytes(b"corrupted later")
    assert hub.load("TinyText") == onnx.load(str(example_hub / entry.model_path))
    assert sha256_file(cached) == entry.model_sha


def test_old_cache_without_marker_is_reused(
    hub_server: HubServer, example_hub: Path, cache_dir: Path
) -> None:
    entry = _entry(example_hub, "echo-qa")
    cached = cache_path(cache_dir, entry.model_path, entry.model_sha)
    cached.parent.mkdir(parents=True)
    cached.write_bytes((example_hub / entry.model_path).read_bytes())
    assert hub.load("echo-qa") is not None
    assert hub_server.file_requests() == []


def test_set_dir_and_get_dir(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub.set_dir(str(tmp_path / "mine"))
    assert hub.get_dir() == str(tmp_path / "mine")
    hub.load("echo-qa")
    assert list((tmp_path / "mine").rglob("*_echo-qa-12.onnx"))


def test_default_dir_follows_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ONNX_HOME", str(tmp_path / "a"))
    assert hub.get_dir() == str(tmp_path / "a" / "hub")
    monkeypatch.delenv("ONNX_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert hub.get_dir() == str(tmp_path / "x" / "onnx" / "hub")
    monkeypatch.delenv("XDG_CACHE_HOME")
    expected = os.path.join(os.path.expanduser("~"), ".cache", "onnx", "hub")
    assert hub.get_dir() == expected


def test_cache_shared_across_hub_instances(
    hub_server: HubServer, tmp_path: Path
) -> None:
    config = HubConfig.from_env(cache_dir=tmp_path)
    with Hub(config) as first:
        assert first.load("TinyText") is not None
    with Hub(config) as second:
        assert second.load("TinyText") is not None
    assert len(hub_server.file_requests()) == 2  # hf + its redirect, once


# other repo kinds -------------------------------------------------------------


def test_http_url_repo(hub_server: HubServer) -> None:
    repo = f"{hub_server.base}/plain/"
    assert [i.model for i in hub.list_models(repo=repo, model="TinyNet")] == [
        "TinyNet",
        "TinyNet",
    ]
    assert hub.load("TinyNet", repo=repo, silent=True) is not None
    assert hub_server.file_requests() == [
        "/plain/vision/classification/tinynet/model/tinynet-17.onnx"
    ]


@pytest.mark.parametrize("as_url", [False, True])
def test_local_folder_repo(example_hub: Path, as_url: bool, cache_dir: Path) -> None:
    repo = example_hub.as_uri() if as_url else str(example_hub)
    model = hub.load("TinyNet", repo=repo, opset=13)
    assert model == onnx.load(
        str(example_hub / _entry(example_hub, "TinyNet", 13).model_path)
    )
    assert list(cache_dir.rglob("*_tinynet-13.onnx"))


# trust -------------------------------------------------------------------------


def test_untrusted_repo_prompt_declined_returns_none(
    hub_server: HubServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    assert hub.load("TinyNet", repo=UNTRUSTED) is None
    assert "is not trusted" in capsys.readouterr().err
    assert hub_server.file_requests() == []


def test_untrusted_repo_prompt_accepted(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert hub.load("TinyNet", repo=UNTRUSTED) is not None
    assert hub_server.file_requests()[0].startswith(f"/media/acme/zoo/{COMMIT}/")


def test_untrusted_repo_silent_downloads_without_prompt(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # input() would raise EOFError
    assert hub.load("TinyNet", repo=UNTRUSTED, silent=True) is not None


@pytest.mark.anyio
async def test_async_api_refuses_untrusted_repo(hub_server: HubServer) -> None:
    with pytest.raises(UntrustedRepoError, match="acme/zoo:main is not trusted"):
        await hub.aload("TinyNet", repo=UNTRUSTED)
    assert await hub.aload("TinyNet", repo=UNTRUSTED, silent=True) is not None
    await hub.aclose()


def test_strict_trust_ignores_silent(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCHUB_TRUST", "strict")
    with pytest.raises(UntrustedRepoError, match="strict"):
        hub.load("TinyNet", repo=UNTRUSTED, silent=True)
    monkeypatch.setenv("ASYNCHUB_TRUSTED_REPOS", "acme/zoo")
    assert hub.load("TinyNet", repo=UNTRUSTED) is not None


# offline and the shipped manifest --------------------------------------------------


def test_offline_uses_cache_only(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = hub.load("TinyNet")
    monkeypatch.setenv("ASYNCHUB_OFFLINE", "1")
    hub_server.down.update({"raw", "media", "hf", "cdn"})
    hub_server.requests.clear()
    assert hub.load("TinyNet") == expected
    with pytest.raises(OfflineCacheMissError, match="not in the cache"):
        hub.load("TinyText")
    assert hub_server.requests == []


def test_shipped_manifest_when_network_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCHUB_GITHUB_RAW", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("ASYNCHUB_CONNECT_TIMEOUT", "2")
    monkeypatch.setenv("ASYNCHUB_OFFLINE", "1")
    models = hub.list_models()
    assert len(models) == 184
    assert hub.get_model_info("mnist", opset=8).model_sha == (
        "2f06e72de813a8635c9bc0397ac447a601bdbfa7df4bebc278723b958831c9bf"
    )


# tarballs and composite models -------------------------------------------------------


def test_download_model_with_test_data(hub_server: HubServer, cache_dir: Path) -> None:
    folder = Path(hub.download_model_with_test_data("TinyNet") or "")
    assert (folder / "model.onnx").is_file()
    assert (folder / "test_data_set_0" / "input_0.pb").is_file()
    assert folder.is_relative_to(cache_dir)
    assert hub.download_model_with_test_data("TinyNet") == str(folder)
    assert len(hub_server.file_requests(".tar.gz")) == 2  # hf + redirect, once
    again = hub.download_model_with_test_data("TinyNet", force_reload=True)
    assert again == str(folder) and (folder / "model.onnx").is_file()


def test_cache_verify_compares_extracted_folders_with_their_tarball(
    hub_server: HubServer,
) -> None:
    folder = Path(hub.download_model_with_test_data("TinyNet") or "")
    root = Path(hub.get_dir())
    clean = _cache_admin.verify(root)
    assert clean.ok and clean.checked == 2 and clean.unverifiable == []
    tampered = folder / "test_data_set_0" / "input_0.pb"
    tampered.write_bytes(b"tampered")
    (bad,) = _cache_admin.verify(root).corrupt
    assert bad.member is not None and bad.member.endswith("test_data_set_0/input_0.pb")
    assert bad.actual == sha256_file(tampered) and (root / bad.path).is_dir()
    assert _cache_admin.verify(root, fix=True).removed == [bad.path]
    fetched = len(hub_server.file_requests(".tar.gz"))
    again = Path(hub.download_model_with_test_data("TinyNet") or "")
    assert (again / "test_data_set_0" / "input_0.pb").read_bytes() != b"tampered"
    assert len(hub_server.file_requests(".tar.gz")) == fetched  # from the cache
    assert _cache_admin.verify(root).ok


def test_load_composite_model(hub_server: HubServer) -> None:
    merged = hub.load_composite_model("TinyMLP", "TinyMLP-preproc")
    assert isinstance(merged, onnx.ModelProto)
    onnx.checker.check_model(merged)
    assert {o.domain or "ai.onnx": o.version for o in merged.opset_import}[
        "ai.onnx"
    ] == 18


# sync bridge and concurrency -------------------------------------------------------


@pytest.mark.anyio
async def test_sync_api_inside_running_loop(hub_server: HubServer) -> None:
    """A Jupyter cell calls the sync API from a thread running an event loop."""
    asyncio.get_running_loop()
    assert hub.load("echo-qa") is not None
    assert hub.get_model_info("TinyNet").opset == 17


@pytest.mark.anyio
async def test_async_twins(hub_server: HubServer) -> None:
    assert len(await hub.alist_models(model="tinynet")) == 2
    assert (await hub.aget_model_info("TinyNet", opset=13)).opset == 13
    assert await hub.aload("TinyText") is not None
    folder = await hub.adownload_model_with_test_data("echo-qa")
    assert folder is not None and Path(folder, "model.onnx").is_file()
    assert await hub.aload_composite_model("TinyMLP", "TinyMLP-preproc") is not None
    await hub.aclose()


@pytest.mark.anyio
async def test_concurrent_aload_downloads_once(hub_server: HubServer) -> None:
    async with AsyncHub() as client:
        models = await asyncio.gather(*(client.load("TinyNet") for _ in range(8)))
    assert all(m == models[0] for m in models)
    assert len([p for p in hub_server.file_requests() if p.startswith("/cdn/")]) == 1


def test_manifest_cached_with_etag_revalidation(
    hub_server: HubServer, cache_dir: Path
) -> None:
    with Hub() as client:
        client.list_models()
    with Hub() as client:  # a new client: revalidates with If-None-Match
        client.list_models()
    manifests = [
        p for _, p in hub_server.requests if p.endswith("ONNX_HUB_MANIFEST.json")
    ]
    assert len(manifests) == 2
    meta = list((cache_dir / ".asynchub" / "manifests").glob("*.meta.json"))
    assert meta and json.loads(meta[0].read_text())["etag"]


# commit pinning -------------------------------------------------------------------


def test_github_ref_is_pinned_to_a_commit(hub_server: HubServer) -> None:
    assert hub.load("TinyNet", repo=UNTRUSTED, silent=True) is not None
    paths = [p for _, p in hub_server.requests]
    assert paths[0] == "/api/repos/acme/zoo/commits/main"
    assert paths[1] == f"/raw/acme/zoo/{COMMIT}/ONNX_HUB_MANIFEST.json"
    assert paths[2].startswith(f"/media/acme/zoo/{COMMIT}/")


def test_pinning_falls_back_to_the_ref(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.down.add("api")
    assert hub.load("TinyNet", repo=UNTRUSTED, silent=True) is not None
    assert hub_server.file_requests()[0].startswith("/media/acme/zoo/main/")
    hub_server.requests.clear()
    monkeypatch.setenv("ASYNCHUB_PIN_REFS", "0")
    hub.list_models(repo="acme/zoo:dev")
    assert [p for _, p in hub_server.requests] == [
        "/raw/acme/zoo/dev/ONNX_HUB_MANIFEST.json"
    ]


def test_commit_refs_are_not_looked_up(hub_server: HubServer) -> None:
    hub.list_models(repo=f"acme/zoo:{COMMIT}")
    assert [p for _, p in hub_server.requests] == [
        f"/raw/acme/zoo/{COMMIT}/ONNX_HUB_MANIFEST.json"
    ]


def test_strict_trust_does_not_read_unlisted_manifests(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASYNCHUB_TRUST", "strict")
    with pytest.raises(UntrustedRepoError, match="manifest is not read"):
        hub.list_models(repo=UNTRUSTED)
    assert hub_server.requests == []
    assert len(hub.list_models()) > 0  # onnx/models:main stays trusted
