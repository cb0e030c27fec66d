"""One composition root and one selection value (issue 10).

A hub's mirror and cache fill run on the hub's own engine and trust gate; a
:class:`Selection` is one value the API, the CLI and the report share; the keyword
shortcuts are checked in one place.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from asynchub import AsyncHub, Hub, HubConfig, Selection, hub
from asynchub._transfer import engine as engine_module
from asynchub.errors import ConfigError, UntrustedRepoError
from asynchub.hosting._serve import serving
from asynchub.mirror import amirror

pytestmark = pytest.mark.anyio


def test_selection_copies_and_checks_what_it_is_given() -> None:
    tags = ["vision"]
    selection = Selection(tags=tags, opsets=["12"], shard="1/4")  # type: ignore[list-item]
    tags.append("text")
    assert selection.tags == ("vision",) and selection.opsets == (12,)
    assert selection.shard == (1, 4) and selection.shard_pair == (1, 4)
    with pytest.raises(ConfigError, match="out of range"):
        Selection(shard=(4, 4))
    with pytest.raises(AttributeError):
        selection.tags = ("x",)  # type: ignore[misc]
    assert Selection().data_for(True) and not Selection().data_for(False)
    assert not Selection(with_data=False).data_for(True)


def test_selection_include_and_exclude() -> None:
    selection = Selection(include=["vision/*"], exclude=["*.tar.gz"])
    assert selection.wants("vision/a/b.onnx")
    assert not selection.wants("vision/a/b.tar.gz")
    assert not selection.wants("text/a.onnx")
    assert Selection().wants("anything") and not Selection().filters_paths


async def test_a_misspelled_keyword_is_a_type_error_naming_the_closest(
    tmp_path: Path, example_hub: Path
) -> None:
    with pytest.raises(TypeError, match=r"'tag'.*did you mean 'tags'"):
        await amirror(tmp_path / "m", str(example_hub), tag=["vision"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="not both"):
        await amirror(
            tmp_path / "m", str(example_hub), selection=Selection(), tags=["vision"]
        )
    assert not (tmp_path / "m").exists()


async def test_selection_value_and_shortcuts_select_the_same(
    tmp_path: Path, example_hub: Path
) -> None:
    config = HubConfig(cache_dir=tmp_path / "cache")
    by_value = await amirror(
        tmp_path / "a",
        str(example_hub),
        selection=Selection(tags=["text"], with_data=False),
        config=config,
    )
    by_keywords = await amirror(
        tmp_path / "b", str(example_hub), tags=["text"], with_data=False, config=config
    )
    assert by_value.ok and by_keywords.ok and by_value.files_done == 2
    assert [f.path for f in by_value.done] == [f.path for f in by_keywords.done]


async def test_load_mirror_and_download_share_the_hubs_one_engine(
    tmp_path: Path, example_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[object] = []
    original = engine_module.Engine.__init__

    def counting(self: engine_module.Engine, *args: object, **kwargs: object) -> None:
        made.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(engine_module.Engine, "__init__", counting)
    async with (
        serving(example_hub) as url,
        AsyncHub(HubConfig(cache_dir=tmp_path / "cache")) as client,
    ):
        assert await client.load("TinyNet", repo=url, opset=13, silent=True)
        mirrored = await client.mirror(tmp_path / "m", url, tags=["text"], silent=True)
        filled = await client.download(url, models=["TinyText"], silent=True)
    assert mirrored.ok and filled.ok and filled.files_done == 1
    assert len(made) == 1  # one engine, so one HTTP session and one budget


async def test_one_trust_gate_one_message_for_load_and_mirror(
    tmp_path: Path, example_hub: Path
) -> None:
    async with (
        serving(example_hub) as url,
        AsyncHub(HubConfig(cache_dir=tmp_path / "cache")) as client,
    ):
        with pytest.raises(UntrustedRepoError) as loading:
            await client.load("TinyNet", repo=url, opset=13)
        with pytest.raises(UntrustedRepoError) as mirroring:
            await client.mirror(tmp_path / "m", url)
    assert str(loading.value) == str(mirroring.value)
    assert "is not trusted" in str(loading.value) and "silent=True" in str(
        loading.value
    )
    assert not (tmp_path / "m" / "ONNX_HUB_MANIFEST.json").exists()


def test_sync_hub_mirrors_through_its_async_twin(
    tmp_path: Path, example_hub: Path
) -> None:
    with Hub(HubConfig(cache_dir=tmp_path / "cache")) as client:
        report = client.mirror(tmp_path / "m", str(example_hub), models=["TinyText"])
    assert report.ok and report.models == 1
    assert "amirror" in hub.__all__ and "mirror" in hub.__all__
