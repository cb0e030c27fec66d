"""The manifest model: the real official manifest, malformed input, unsafe paths."""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynchub import manifest as manifest_module
from asynchub.errors import ManifestParseError, UnsafePathError
from asynchub.manifest import Manifest, ModelInfo, check_relative_path

DATA = Path(__file__).resolve().parent / "data"
OLDEST_SHA = "b16629042bcda56b26f1108ff16bcb635fb5124c9777c376f5f5ce57bef07ff3"
SHIPPED_SHA = "569ccd009a5cdc885bac88a1ceaf72e69e69262f0e1c9d16ef5a7339021a2904"


def _shipped() -> bytes:
    return (
        resources.files("asynchub") / "data" / "ONNX_HUB_MANIFEST.json"
    ).read_bytes()


def _entries() -> list[dict[str, Any]]:
    return json.loads(_shipped())  # type: ignore[no-any-return]


def test_shipped_manifest_is_the_official_one() -> None:
    assert hashlib.sha256(_shipped()).hexdigest() == SHIPPED_SHA


def test_every_official_entry_parses_and_round_trips() -> None:
    manifest = Manifest.parse(_shipped())
    assert len(manifest) == 184
    assert json.loads(manifest.to_json()) == _entries()
    extra = [e for e in manifest if e.metadata.model_extra]
    assert extra and "extra_ports" in extra[0].metadata.model_extra  # kept


@pytest.mark.parametrize("which", ["shipped", "oldest"])
def test_real_manifests_parse(which: str) -> None:
    """The manifest the package ships and the oldest official one (kept under
    tests/data/, see its README) both parse entry for entry."""
    if which == "shipped":
        data = _shipped()
    else:
        data = (DATA / "onnx_hub_manifest_oldest.json").read_bytes()
        assert hashlib.sha256(data).hexdigest() == OLDEST_SHA
    assert len(Manifest.parse(data)) == len(json.loads(data)) > 100


def test_shapes_accept_int_str_and_null() -> None:
    dims = {
        type(d).__name__
        for e in Manifest.parse(_shipped())
        if e.metadata.io_ports
        for port in e.metadata.io_ports.inputs
        for d in (port.shape or [])
    }
    assert dims == {"int", "str", "NoneType"}


def test_onnx_version_forms() -> None:
    versions = {e.onnx_version for e in Manifest.parse(_shipped())}
    assert {"1.9", "1.9.0"} <= versions


def _variant(entry: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy of ``entry`` with ``changes`` and no tarball (whose path would clash)."""
    out = copy.deepcopy(entry)
    out.update(changes)
    for key in ("model_with_data_path", "model_with_data_sha", "model_with_data_bytes"):
        out["metadata"].pop(key, None)
    return out


def _bad(mutate: Any) -> bytes:
    entries = copy.deepcopy(_entries()[:3])
    mutate(entries)
    return json.dumps(entries).encode()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda e: e[1].pop("model_path"),
            r"entry 1 \('.+'\) field 'model_path': Field required",
        ),
        (
            lambda e: e[2].update(opset_version="ten"),
            r"entry 2 .* field 'opset_version'",
        ),
        (
            lambda e: e[0]["metadata"].update(model_sha="xyz"),
            r"field 'metadata.model_sha'",
        ),
        (lambda e: e[0]["metadata"].update(model_bytes=-1), r"metadata.model_bytes"),
        (lambda e: e[0].update(onnx_version="one"), r"field 'onnx_version'"),
        (lambda e: e[0].update(opset_version=True), r"not a boolean"),
        (lambda e: e[0].update(model=""), r"field 'model'"),
        (lambda e: e.append(copy.deepcopy(e[0])), r"entry 3 .* repeats model_path"),
        (
            lambda e: e.append(
                _variant(e[0], model=e[0]["model"].upper(), model_path="x/y.onnx")
            ),
            r"differ only by case",
        ),
        (lambda e: e[0].update(model_path="a/b.txt"), r"must end with '.onnx'"),
    ],
)
def test_malformed_entries_name_entry_and_field(mutate: Any, expected: str) -> None:
    with pytest.raises(ManifestParseError, match=expected):
        Manifest.parse(_bad(mutate))


def test_not_json_and_not_a_list() -> None:
    with pytest.raises(ManifestParseError, match="not valid JSON"):
        Manifest.parse(b"{nope")
    with pytest.raises(ManifestParseError, match="JSON list"):
        Manifest.parse(b'{"model": 1}')


def test_unicode_normalisation_duplicates() -> None:
    entry = _entries()[0]
    composed = {**entry, "model": "caf\u00e9"}
    decomposed = _variant(entry, model="cafe\u0301", model_path="other/x.onnx")
    with pytest.raises(ManifestParseError, match="Unicode normalisation"):
        Manifest.parse(json.dumps([composed, decomposed]))


@pytest.mark.parametrize(
    "path",
    [
        "../x.onnx",
        "a/../../x.onnx",
        "/etc/x.onnx",
        "C:/x.onnx",
        "c:x.onnx",
        "a\\..\\x.onnx",
        "//host/share/x.onnx",
        "%2e%2e/x.onnx",
        "a/%2E%2E/x.onnx",
        "a/./x.onnx",
        "a//x.onnx",
        "a/\x00.onnx",
        "",
        "vision/CON/model.onnx",
        "nul.onnx",
        "a/Com1.tar.gz",
        "lpt9",
        "a/b?.onnx",
        'a/"b".onnx',
        "a/b./c.onnx",
        "a/b /c.onnx",
    ],
)
def test_unsafe_model_paths_rejected(path: str) -> None:
    with pytest.raises(UnsafePathError):
        check_relative_path(path)
    entries = [{**_entries()[0], "model_path": path}]
    with pytest.raises(ManifestParseError, match="entry 0"):
        Manifest.parse(json.dumps(entries))


def test_unsafe_tarball_path_rejected() -> None:
    entry = copy.deepcopy(_entries()[0])
    entry["metadata"]["model_with_data_path"] = "../../evil.tar.gz"
    with pytest.raises(UnsafePathError, match="metadata.model_with_data_path"):
        Manifest.parse(json.dumps([entry]))


_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/"),
    min_size=1,
    max_size=12,
)


@given(st.lists(_segment, min_size=1, max_size=5))
def test_accepted_paths_never_escape(segments: list[str]) -> None:
    path = "/".join(segments)
    try:
        check_relative_path(path)
    except UnsafePathError:
        return
    root = Path("/cache/root")
    resolved = (root / path).resolve()
    assert resolved.is_relative_to(root)
    assert "\\" not in path and ".." not in path.split("/")


def test_same_name_same_opset_first_wins_like_onnx_hub() -> None:
    first = _entries()[0]
    second = _variant(first, model_path="other/variant-v2.onnx")
    manifest = Manifest.parse(json.dumps([first, second]))
    found = manifest.find(first["model"], first["opset_version"])
    assert found.model_path == first["model_path"]
    assert manifest.find(first["model"]).model_path == first["model_path"]


def test_model_info_from_raw_dict() -> None:
    raw = _entries()[0]
    info = ModelInfo(raw)
    assert info.model == raw["model"] and info.opset == raw["opset_version"]
    assert info.metadata == raw["metadata"] and info.raw_model_info == raw
    assert info.tags == set(raw["metadata"]["tags"])


def _full_rule_accepts(name: str) -> bool:
    """The name rule, character by character, as the slow path applies it."""
    first_ok = name[0].isalnum() and name == name.rstrip()
    return first_ok and all(manifest_module._name_char(c) for c in name)


@given(st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=40))
def test_plain_name_fast_path_agrees_with_the_full_rule(name: str) -> None:
    """The one-regex check of plain ASCII names accepts only names the
    character-by-character rule accepts."""
    if manifest_module._PLAIN_NAME.fullmatch(name):
        assert _full_rule_accepts(name)


@pytest.mark.parametrize(
    "name", ["ResNet-50 v1.2", "a", "x/y (int8)", "n.", "a+b&c@d#e~f=g!h,i'j"]
)
def test_plain_names_take_the_fast_path(name: str) -> None:
    assert manifest_module._PLAIN_NAME.fullmatch(name)
    assert _full_rule_accepts(name)


@pytest.mark.parametrize("name", ["a ", " a", "-a", "a\tb", "a[b]", "caf\u00e9"])
def test_other_names_go_through_the_full_rule(name: str) -> None:
    assert not manifest_module._PLAIN_NAME.fullmatch(name)


def test_a_bad_entry_deep_in_the_list_is_named_by_index() -> None:
    """The whole list is validated in one call; a failure still names its entry."""
    entries = _entries()
    entries[150] = {**entries[150], "opset_version": True}
    with pytest.raises(ManifestParseError, match=r"entry 150 .*'opset_version'"):
        Manifest.parse(json.dumps(entries))


def test_subset_keeps_entries_unchecked_and_writes_the_same_json() -> None:
    manifest = Manifest.parse(_shipped())
    chosen = manifest.entries[3:40:2]
    subset = manifest.subset(chosen)
    assert subset.entries == chosen
    assert subset.to_json() == Manifest(chosen).to_json()
    other = Manifest.parse(_shipped()).entries[0]  # equal, but not this one's
    with pytest.raises(ValueError, match="entries of this manifest"):
        manifest.subset([other])
    with pytest.raises(ValueError, match="each once"):
        manifest.subset([chosen[0], chosen[0]])
