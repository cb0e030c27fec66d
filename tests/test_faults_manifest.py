"""Hostile and broken manifests (rows M1-M5), and the trust policy.

Each bad manifest is checked twice where it matters: by :meth:`Manifest.parse` (the
exact error and the entry it names) and through the public path, served over HTTP,
where the error must come before any model file is requested or written.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asynchub import AsyncHub, Hub, HubConfig
from asynchub._fs.stamp import NAME, is_stamped
from asynchub.cache._layout import STATE_DIR, cache_path
from asynchub.cache._trust import add_trusted, is_allowlisted, load_persisted
from asynchub.errors import (
    ManifestNotFoundError,
    ManifestParseError,
    UnsafePathError,
    UntrustedRepoError,
)
from asynchub.manifest import Manifest, check_relative_path
from asynchub.sources import resolve_repo

from .harness import (
    Server,
    cache_files,
    entry,
    fast_config,
    serve,
    sha,
    status,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MODEL = b"\x08\x07" + bytes(range(256)) * 4  # any bytes: download_model never parses
PATH = "vision/m/m.onnx"


def e(**fields: Any) -> dict[str, Any]:
    """A valid entry, with ``fields`` replaced."""
    item = entry("m", PATH, MODEL)
    item.update(fields)
    return item


def parse(items: object) -> Manifest:
    return Manifest.parse(json.dumps(items).encode(), source="M")


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as srv:
        yield srv


def publish(server: Server, manifest: bytes | list[dict[str, Any]]) -> str:
    """Serve ``manifest`` and the model file; return the repo URL."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    server.hub({PATH: MODEL}, manifest=raw)
    return server.hub_url


def file_requests(server: Server) -> list[str]:
    return [r.path for r in server.requests if not r.path.endswith(".json")]


# M1 malformed JSON ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(b"", "M is not valid JSON: Expecting value", id="empty"),
        pytest.param(b'[{"model": "m",', "M is not valid JSON", id="truncated"),
        pytest.param(b"\xff\xfe[]", "M is not valid JSON", id="not-utf8"),
        pytest.param(
            b'{"model": "m"}', "M must be a JSON list of entries", id="object"
        ),
        pytest.param(b"null", "M must be a JSON list of entries", id="null"),
        pytest.param(
            b"[5]", "M: entry 0 (None) field '(entry)'", id="entry-not-object"
        ),
    ],
)
def test_malformed_json_is_a_parse_error(raw: bytes, message: str) -> None:
    with pytest.raises(
        ManifestParseError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        Manifest.parse(raw, source="M")


def test_utf8_bom_is_accepted() -> None:
    """json.loads detects a UTF-8 BOM on bytes; the entries are unchanged."""
    manifest = Manifest.parse(b"\xef\xbb\xbf" + json.dumps([e()]).encode())
    assert [x.model_path for x in manifest] == [PATH]


async def test_malformed_manifest_over_http_downloads_nothing(
    server: Server, cache_dir: Path
) -> None:
    repo = publish(server, b'[{"model": "m", "model_path": ')
    async with AsyncHub(fast_config(cache_dir)) as hub:
        with pytest.raises(
            ManifestParseError, match="ONNX_HUB_MANIFEST.json is not valid"
        ):
            await hub.download_model("m", repo=repo, silent=True)
    assert file_requests(server) == []
    assert cache_files(cache_dir) == []


# M2 missing fields, wrong types ------------------------------------------------------


@pytest.mark.parametrize(
    ("item", "field", "why"),
    [
        ({"model": "m", "opset_version": 1}, "model_path", "Field required"),
        ({"model": "m", "model_path": PATH}, "opset_version", "Field required"),
        ({"model_path": PATH, "opset_version": 1}, "model", "Field required"),
        (e(opset_version="abc"), "opset_version", "valid integer"),
        (e(opset_version=13.5), "opset_version", "fractional part"),
        (e(opset_version=0), "opset_version", "greater than or equal to 1"),
        (e(metadata=[1]), "metadata", "valid dictionary"),
        (e(metadata={"tags": "vision"}), "metadata.tags", "valid list"),
        (e(metadata={"model_sha": "xyz"}), "metadata.model_sha", "64 hexadecimal"),
        (
            e(metadata={"model_bytes": -1}),
            "metadata.model_bytes",
            "greater than or equal",
        ),
        (e(model_path="vision/m/m.txt"), "model_path", "must end with '.onnx'"),
        (e(onnx_version="latest"), "onnx_version", "must look like '1.9'"),
        (e(model=""), "model", "at least 1 character"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_entry_names_the_entry_and_field(
    item: dict[str, Any], field: str, why: str
) -> None:
    good = entry("ok", "other/ok.onnx", MODEL)
    with pytest.raises(ManifestParseError) as exc:
        parse([good, item])
    message = str(exc.value)
    assert message.startswith(f"M: entry 1 ({item.get('model')!r}) field {field!r}: ")
    assert why in message
    assert not isinstance(exc.value, UnsafePathError)


# M3 duplicates ----------------------------------------------------------------------


def test_same_name_and_opset_twice_first_wins() -> None:
    """onnx.hub-compatible: the 2021 official manifest has such pairs."""
    manifest = parse([e(), e(model_path="other/m.onnx")])
    assert manifest.find("m", 13).model_path == PATH


@pytest.mark.parametrize(
    "twin",
    ["M", "Caf\u00e9", "Cafe\u0301", "ｍ"],
    ids=["case", "nfc", "nfd", "fullwidth"],
)
def test_names_differing_by_case_or_normalisation_are_refused(twin: str) -> None:
    first = (
        "m"
        if twin in ("M", "ｍ")
        else ("Cafe\u0301" if twin == "Caf\u00e9" else "Caf\u00e9")
    )
    with pytest.raises(
        ManifestParseError, match="differ only by case or Unicode"
    ) as exc:
        parse([e(model=first), e(model=twin, model_path="other/m.onnx")])
    assert f"entry 1 ({twin!r}, opset 13)" in str(exc.value)


def test_repeated_model_path_is_refused() -> None:
    with pytest.raises(ManifestParseError, match=r"entry 1 \('n'\) repeats model_path"):
        parse([e(), e(model="n")])


def test_model_paths_differing_only_by_case_are_refused() -> None:
    with pytest.raises(ManifestParseError, match="model_path"):
        parse([e(model_path="vision/M.onnx"), e(model="n", model_path="vision/m.onnx")])


# M4 unsafe paths ---------------------------------------------------------------------


UNSAFE = [
    ("../../x.onnx", "'..' segment"),
    ("vision/../../x.onnx", "'..' segment"),
    ("vision/%2e%2e/%2e%2e/x.onnx", "percent-encoding"),
    ("%2E%2E/x.onnx", "percent-encoding"),
    ("/etc/x.onnx", "it is absolute"),
    ("//evil.example/x.onnx", "it is absolute"),
    ("https://evil.example/x.onnx", "contains ':'"),
    ("a\\..\\..\\x.onnx", "backslash"),
    ("\\\\host\\share\\x.onnx", "backslash"),
    ("C:/x.onnx", "it is absolute"),
    ("C:x.onnx", "it is absolute"),
    ("a/D:x.onnx", "contains ':'"),
    ("a//x.onnx", "'empty' segment"),
    ("a/./x.onnx", "'.' segment"),
    ("a/x\x00.onnx", "control character"),
    ("a/x\n.onnx", "control character"),
    (".asynchub/x.onnx", "hidden"),
    ("a/.x/m.onnx", "hidden"),
    ("Cafe\u0301/x.onnx", "not in Unicode NFC"),
    ("a/" + "x" * 300 + ".onnx", "longer than 255 bytes"),
]


@pytest.mark.parametrize(("path", "why"), UNSAFE, ids=[p for p, _ in UNSAFE])
def test_unsafe_model_path_is_refused(path: str, why: str) -> None:
    with pytest.raises(UnsafePathError, match="field 'model_path'") as exc:
        parse([entry("ok", "ok.onnx", MODEL), e(model_path=path)])
    assert "entry 1 ('m')" in str(exc.value)
    assert why in str(exc.value)
    assert "nothing was written to disk" in str(exc.value)


@pytest.mark.parametrize(("path", "why"), UNSAFE[:12], ids=[p for p, _ in UNSAFE[:12]])
def test_unsafe_tarball_path_is_refused(path: str, why: str) -> None:
    bad = e(metadata={"model_with_data_path": path.replace(".onnx", ".tar.gz")})
    with pytest.raises(UnsafePathError, match="field 'metadata.model_with_data_path'"):
        parse([bad])


@pytest.mark.parametrize(("path", "why"), UNSAFE, ids=[p for p, _ in UNSAFE])
def test_source_refuses_unsafe_paths_before_building_urls(path: str, why: str) -> None:
    """The second layer: file_urls() checks again (yarl would resolve '..')."""
    source = resolve_repo("http://127.0.0.1:9/hub/", HubConfig())
    with pytest.raises(UnsafePathError, match=why.replace("(", r"\(")):
        source.file_urls(path)
    assert check_relative_path("vision/m/m.onnx") == "vision/m/m.onnx"


@pytest.mark.parametrize(
    "path",
    [
        "../../../escaped.onnx",
        "vision/%2e%2e/%2e%2e/escaped.onnx",
        "//127.0.0.2/x.onnx",
    ],
)
async def test_unsafe_path_over_http_fails_before_any_file_io(
    server: Server, cache_dir: Path, path: str
) -> None:
    bad = [entry("ok", "ok.onnx", MODEL), e(model_path=path)]
    repo = publish(server, bad)
    async with AsyncHub(fast_config(cache_dir)) as hub:
        with pytest.raises(UnsafePathError, match="entry 1 \\('m'\\)"):
            await hub.download_model("ok", repo=repo, silent=True)
    assert file_requests(server) == []  # the whole manifest is refused
    assert cache_files(cache_dir) == []
    assert not (cache_dir.parent / "escaped.onnx").exists()


async def test_manifest_cannot_write_asynchubs_own_state(
    server: Server, cache_dir: Path
) -> None:
    evil_list = json.dumps(["acme/evil:main"]).encode()
    item = e(metadata={"model_with_data_path": f"{STATE_DIR}/trusted_repos.json"})
    server.hub({PATH: MODEL, f"{STATE_DIR}/trusted_repos.json": evil_list}, [item])
    config = fast_config(cache_dir)
    async with AsyncHub(config) as hub:
        with pytest.raises(UnsafePathError, match="hidden"):
            await hub.download_model_with_test_data(
                "m", repo=server.hub_url, silent=True
            )
    assert file_requests(server) == []
    assert load_persisted(config) == []
    strict = config.model_copy(update={"trust": "strict"})
    assert not is_allowlisted(resolve_repo("acme/evil:main", strict), strict)


# M5 huge manifest -------------------------------------------------------------------


async def test_manifest_over_the_size_cap_is_refused(
    server: Server, cache_dir: Path
) -> None:
    items = [entry(f"m{i}", f"v/m{i}.onnx", MODEL) for i in range(40)]
    raw = json.dumps(items).encode()
    assert len(raw) > 4096
    repo = publish(server, raw)
    limits = fast_config(cache_dir).limits.model_copy(
        update={"max_manifest_bytes": 4096}
    )
    async with AsyncHub(fast_config(cache_dir, limits=limits)) as hub:
        with pytest.raises(ManifestNotFoundError, match="sent more than 4096 bytes"):
            await hub.list_models(repo=repo)
    assert file_requests(server) == []


async def test_manifest_without_content_length_stops_at_the_cap(
    server: Server, cache_dir: Path
) -> None:
    """A chunked 32 MiB manifest is refused at the cap; the client hangs up long
    before the end (the server counts what it pushed into socket buffers)."""
    from .harness import chunked

    raw = b"[" + b" " * (32 * 1024 * 1024) + b"]"
    server.route("/hub/ONNX_HUB_MANIFEST.json", chunked(raw, piece=256 * 1024))
    limits = fast_config(cache_dir).limits.model_copy(
        update={"max_manifest_bytes": 4096}
    )
    async with AsyncHub(fast_config(cache_dir, limits=limits)) as hub:
        with pytest.raises(ManifestNotFoundError, match="sent more than 4096 bytes"):
            await hub.list_models(repo=server.hub_url)
    (req,) = server.log("/hub/ONNX_HUB_MANIFEST.json")
    assert req.sent < 16 * 1024 * 1024  # stopped reading long before the end


# SHA-less entries ---------------------------------------------------------------------


async def test_entry_without_sha_warns_and_records_the_hash(
    server: Server, cache_dir: Path, caplog: pytest.LogCaptureFixture, stamps: None
) -> None:
    item = e()
    del item["metadata"]["model_sha"]
    repo = publish(server, [item])
    with caplog.at_level(logging.WARNING, logger="asynchub"):
        async with AsyncHub(fast_config(cache_dir)) as hub:
            path = await hub.download_model("m", repo=repo, silent=True)
    assert path == cache_path(cache_dir, PATH, None)
    assert path is not None and path.read_bytes() == MODEL
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("has no SHA-256" in w and sha(MODEL) in w for w in warning)
    assert is_stamped(path, sha(MODEL)) and not is_stamped(path, sha(b"other"))


async def test_entry_without_sha_records_the_hash_in_a_marker_without_stamps(
    server: Server, cache_dir: Path, no_stamps: None
) -> None:
    item = e()
    del item["metadata"]["model_sha"]
    repo = publish(server, [item])
    async with AsyncHub(fast_config(cache_dir)) as hub:
        path = await hub.download_model("m", repo=repo, silent=True)
    assert path is not None and NAME not in os.listxattr(path)
    markers = list((cache_dir / STATE_DIR / "verified").glob("*.json"))
    assert [json.loads(m.read_text())["sha256"] for m in markers] == [sha(MODEL)]


# Trust policy ------------------------------------------------------------------------


async def test_compat_untrusted_without_silent_is_refused(
    server: Server, cache_dir: Path
) -> None:
    repo = publish(server, [e()])
    async with AsyncHub(fast_config(cache_dir)) as hub:
        with pytest.raises(UntrustedRepoError, match="is not trusted") as exc:
            await hub.download_model("m", repo=repo)
    assert isinstance(exc.value, PermissionError)
    assert file_requests(server) == []
    assert cache_files(cache_dir) == []


async def test_compat_silent_downloads_as_onnx_hub_did(
    server: Server, cache_dir: Path
) -> None:
    repo = publish(server, [e()])
    async with AsyncHub(fast_config(cache_dir)) as hub:
        path = await hub.download_model("m", repo=repo, silent=True)
    assert path is not None and path.read_bytes() == MODEL


async def test_compat_prompt_declined_returns_none(
    server: Server, cache_dir: Path
) -> None:
    repo = publish(server, [e()])
    asked: list[str] = []

    def decline(message: str) -> bool:
        asked.append(message)
        return False

    async with AsyncHub(fast_config(cache_dir), confirm=decline) as hub:
        assert await hub.download_model("m", repo=repo) is None
    assert len(asked) == 1 and repo in asked[0]
    assert file_requests(server) == []


@pytest.mark.parametrize("silent", [False, True])
async def test_strict_refuses_unlisted_repo_whatever_silent_says(
    server: Server, cache_dir: Path, silent: bool
) -> None:
    """CVE-2026-28500: ``silent`` must never bypass the trust check."""
    tarball = {"model_with_data_path": "vision/m/m.tar.gz"}
    repo = publish(server, [e(metadata={**e()["metadata"], **tarball})])
    asked: list[str] = []
    config = fast_config(cache_dir, trust="strict")
    async with AsyncHub(config, confirm=lambda m: asked.append(m) or True) as hub:
        with pytest.raises(UntrustedRepoError, match="strict trust mode"):
            await hub.download_model("m", repo=repo, silent=silent)
        with pytest.raises(UntrustedRepoError, match="strict trust mode"):
            await hub.download_model_with_test_data("m", repo=repo, silent=silent)
    assert asked == []  # no prompt can say yes in strict mode
    assert file_requests(server) == []
    assert cache_files(cache_dir) == []


async def test_strict_from_environment_applies_to_the_sync_api(
    server: Server, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = publish(server, [e()])
    monkeypatch.setenv("ASYNCHUB_TRUST", "strict")
    config = HubConfig.from_env(cache_dir=cache_dir)
    assert config.trust == "strict"
    with (
        Hub(config, confirm=lambda m: True) as hub,
        pytest.raises(UntrustedRepoError, match="strict trust mode"),
    ):
        hub.download_model("m", repo=repo, silent=True)
    assert file_requests(server) == []


@pytest.mark.parametrize("how", ["config", "env", "persisted"])
async def test_strict_allows_listed_repo(
    server: Server,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    repo = publish(server, [e()])
    if how == "env":
        monkeypatch.setenv("ASYNCHUB_TRUSTED_REPOS", f"acme/other, {repo}")
        config = HubConfig.from_env(cache_dir=cache_dir, trust="strict")
    else:
        repos = (repo,) if how == "config" else ()
        config = fast_config(cache_dir, trust="strict", trusted_repos=repos)
        if how == "persisted":
            assert add_trusted(config, repo) == repo
            assert load_persisted(config) == [repo]
    async with AsyncHub(config) as hub:
        path = await hub.download_model("m", repo=repo)
    assert path is not None and path.read_bytes() == MODEL


async def test_strict_refuses_local_folder_that_compat_trusts(
    tmp_path: Path, cache_dir: Path
) -> None:
    folder = tmp_path / "zoo"
    (folder / "vision/m").mkdir(parents=True)
    (folder / PATH).write_bytes(MODEL)
    (folder / "ONNX_HUB_MANIFEST.json").write_text(json.dumps([e()]))
    async with AsyncHub(fast_config(cache_dir)) as hub:
        assert await hub.download_model("m", repo=str(folder)) is not None
    async with AsyncHub(fast_config(cache_dir, trust="strict")) as hub:
        with pytest.raises(UntrustedRepoError, match="strict trust mode"):
            await hub.download_model("m", repo=str(folder), force_reload=True)


def test_official_repo_trusted_only_on_main() -> None:
    config = HubConfig(trust="strict")
    main = resolve_repo("onnx/models", config)
    other = resolve_repo("onnx/models:some-branch", config)
    assert is_allowlisted(main, config)
    assert not is_allowlisted(other, config)


def test_unusable_allow_list_entries_trust_nothing(cache_dir: Path) -> None:
    config = HubConfig(
        cache_dir=cache_dir, trust="strict", trusted_repos=("a/b/c", " ")
    )
    assert not is_allowlisted(resolve_repo("a/b", config), config)
    bad = cache_dir / STATE_DIR / "trusted_repos.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert load_persisted(config) == []


def test_trust_canonicalises_refs() -> None:
    config = HubConfig(trust="strict", trusted_repos=("acme/zoo",))
    assert is_allowlisted(resolve_repo("acme/zoo:main", config), config)
    assert not is_allowlisted(resolve_repo("acme/zoo:dev", config), config)
    assert not is_allowlisted(resolve_repo("acme/zoo2", config), config)


async def test_trust_add_on_the_command_line_persists_for_strict_mode(
    server: Server, cache_dir: Path
) -> None:
    import anyio

    from asynchub.cli import _main as cli

    repo = publish(server, [e()])
    argv = ["--cache-dir", str(cache_dir), "trust", "add", repo]
    assert await anyio.to_thread.run_sync(cli.main, argv) == 0
    config = fast_config(cache_dir, trust="strict")
    assert load_persisted(config) == [repo]
    async with AsyncHub(config) as hub:
        path = await hub.download_model("m", repo=repo)
    assert path is not None and path.read_bytes() == MODEL


# Ref pinning ------------------------------------------------------------------------


COMMIT_A, COMMIT_B = "a" * 40, "b" * 40


def _github_zoo(server: Server, commit_answers: list[bytes]) -> HubConfig:
    """acme/zoo laid out like GitHub under raw/media/api on ``server``."""
    manifest = json.dumps([e()]).encode()
    api = "/api/repos/acme/zoo/commits/main"
    server.route(api, *[status(200, {}, body) for body in commit_answers])
    for at, data in ((COMMIT_A, MODEL), (COMMIT_B, b"B" * 10), ("main", b"M" * 10)):
        server.route(f"/raw/acme/zoo/{at}/ONNX_HUB_MANIFEST.json", serve(manifest))
        server.route(f"/media/acme/zoo/{at}/{PATH}", serve(data))
    return HubConfig(
        github_api=server.url("/api"),
        github_raw=server.url("/raw"),
        github_media=server.url("/media"),
    )


async def test_manifest_and_files_are_pinned_to_one_commit(
    server: Server, cache_dir: Path
) -> None:
    """The branch moves (A, then B) after the manifest was read: files still come
    from commit A, and the API was asked with the GitHub SHA media type."""
    urls = _github_zoo(server, [COMMIT_A.encode(), COMMIT_B.encode()])
    config = fast_config(cache_dir).model_copy(
        update=urls.model_dump(include={"github_api", "github_raw", "github_media"})
    )
    async with AsyncHub(config) as hub:
        path = await hub.download_model("m", repo="acme/zoo", silent=True)
    assert path is not None and path.read_bytes() == MODEL
    paths = [r.path for r in server.requests]
    assert paths == [
        "/api/repos/acme/zoo/commits/main",
        f"/raw/acme/zoo/{COMMIT_A}/ONNX_HUB_MANIFEST.json",
        f"/media/acme/zoo/{COMMIT_A}/{PATH}",
    ]
    assert server.requests[0].header("accept") == "application/vnd.github.sha"


@pytest.mark.parametrize(
    "answer",
    [b"../../evil/zoo/" + COMMIT_A.encode(), b"<html>rate limited</html>", b""],
    ids=["path-injection", "html", "empty"],
)
async def test_a_hostile_commit_answer_is_not_used_in_urls(
    server: Server, cache_dir: Path, answer: bytes
) -> None:
    urls = _github_zoo(server, [answer])
    server.route(f"/media/acme/zoo/main/{PATH}", serve(MODEL))
    config = fast_config(cache_dir).model_copy(
        update=urls.model_dump(include={"github_api", "github_raw", "github_media"})
    )
    async with AsyncHub(config) as hub:
        path = await hub.download_model("m", repo="acme/zoo", silent=True)
    assert path is not None and path.read_bytes() == MODEL
    assert [r.path for r in server.requests][1:] == [
        "/raw/acme/zoo/main/ONNX_HUB_MANIFEST.json",
        f"/media/acme/zoo/main/{PATH}",
    ]
