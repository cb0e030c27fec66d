"""Property-based tests (hypothesis) of everything that parses untrusted text.

- ``Content-Range`` (206 and 416 forms) and ``Retry-After`` parsing, and the byte
  ranges the engine asks for (``Intervals``, part splitting): the ranges requested
  always cover exactly the missing bytes, never overlap, never exceed a part;
- repo specs (``resolve_repo``, ``github.parse``): only ``RepoSpecError`` escapes,
  canonical specs are fixed points, URLs stay inside the named repo;
- manifests: valid entries round-trip through JSON; any JSON value either parses or
  raises ``ManifestParseError``;
- path sanitisation (manifest paths, tar member names): whatever is accepted stays
  inside the cache folder, the URL base and the extraction folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tarfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from yarl import URL

from asynchub import HubConfig
from asynchub._fs import windows_name_problem
from asynchub._transfer.assembler import Intervals
from asynchub._transfer.http import (
    ContentRange,
    Validator,
    parse_content_range,
    parse_unsatisfied_length,
)
from asynchub._transfer.parts import split_ranges as _split_ranges
from asynchub._transfer.parts import subtract as _subtract
from asynchub._transfer.retry import parse_retry_after
from asynchub.cache._archive import _name_problem, _safe_parts
from asynchub.cache._layout import cache_path
from asynchub.errors import (
    ArchiveError,
    ManifestParseError,
    RepoSpecError,
    UnsafePathError,
)
from asynchub.manifest import Manifest, check_relative_path
from asynchub.sources import github, resolve_repo

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
"""Per test, not a global profile: other modules' hypothesis settings stay theirs."""

BIG = 2**53
sizes = st.integers(min_value=0, max_value=BIG)


# Content-Range ---------------------------------------------------------------------


@SETTINGS
@given(first=sizes, length=st.integers(1, 2**40), extra=st.integers(0, 2**40))
def test_content_range_round_trips(first: int, length: int, extra: int) -> None:
    last, total = first + length - 1, first + length + extra
    assert parse_content_range(f"bytes {first}-{last}/{total}") == ContentRange(
        first, last, total
    )
    assert parse_content_range(f"  bytes {first}-{last}/*  ") == ContentRange(
        first, last, None
    )


@SETTINGS
@given(first=sizes, last=sizes, total=sizes)
def test_content_range_refuses_impossible_ranges(
    first: int, last: int, total: int
) -> None:
    parsed = parse_content_range(f"bytes {first}-{last}/{total}")
    if last < first or last >= total:
        assert parsed is None
    else:
        assert parsed == ContentRange(first, last, total)


@SETTINGS
@given(st.text(max_size=60))
@example("bytes 5-2/x")
@example("bytes */100")
@example("bytes 0-10/5")
@example("bytes=0-10/20")
@example("bytes -5-10/20")
@example("bytes ١-٢/٣")  # Arabic-Indic digits: \d matches them, int() accepts them
def test_content_range_never_raises_and_is_consistent(value: str) -> None:
    parsed = parse_content_range(value)
    if parsed is not None:
        assert 0 <= parsed.first <= parsed.last
        assert parsed.total is None or parsed.last < parsed.total


@SETTINGS
@given(st.one_of(st.none(), st.text(max_size=40)))
def test_unsatisfied_length_never_raises(value: str | None) -> None:
    length = parse_unsatisfied_length(value)
    assert length is None or length >= 0


@SETTINGS
@given(sizes)
def test_unsatisfied_length_round_trips(total: int) -> None:
    assert parse_unsatisfied_length(f"bytes */{total}") == total
    assert parse_unsatisfied_length(f"bytes 0-1/{total}") is None


ASCII = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40
)


@SETTINGS
@given(st.one_of(st.none(), ASCII))
@example("Wed, 21 Oct 2015 07:28:00 GMT")
@example("-5")
@example("1e9")
def test_retry_after_never_raises_and_is_never_negative(value: str | None) -> None:
    delay = parse_retry_after(value, now=1_700_000_000.0)
    assert delay is None or delay >= 0


@pytest.mark.parametrize("value", ["\u00b2", "\u2460", "1\u00b2"])
def test_retry_after_with_unicode_digits_is_ignored(value: str) -> None:
    assert parse_retry_after(value) is None


@SETTINGS
@given(st.integers(0, 10**6))
def test_retry_after_seconds(seconds: int) -> None:
    assert parse_retry_after(str(seconds)) == float(seconds)


@SETTINGS
@given(st.text(min_size=1, max_size=20), st.booleans())
def test_weak_etags_never_reach_if_range(tag: str, weak: bool) -> None:
    etag = f'W/"{tag}"' if weak else f'"{tag}"'
    value = Validator(etag=etag, last_modified=None).if_range()
    assert value == (None if weak else etag)


# The ranges the engine asks for ---------------------------------------------------


ranges = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(0, 5000)).map(sorted).map(tuple),
    max_size=20,
)


@SETTINGS
@given(ranges, st.integers(0, 6000))
def test_intervals_match_a_set_model(added: list[tuple[int, int]], total: int) -> None:
    intervals = Intervals(added)
    present = {b for start, end in added for b in range(start, end)}
    listed = intervals.as_list()
    assert listed == sorted(listed)
    assert all(a < b for a, b in listed)
    assert all(listed[i][1] < listed[i + 1][0] for i in range(len(listed) - 1))
    assert intervals.covered() == len(present)
    gaps = intervals.gaps(total)
    assert {b for s, e in gaps for b in range(s, e)} == set(range(total)) - present
    clipped = intervals.clip(total)
    assert {b for s, e in clipped.as_list() for b in range(s, e)} == {
        b for b in present if b < total
    }


@SETTINGS
@given(ranges, st.integers(1, 700), st.integers(0, 6000), st.integers(0, 6000))
def test_part_plan_covers_the_gaps_exactly(
    added: list[tuple[int, int]], part: int, lo: int, span: int
) -> None:
    total = 6000
    gaps = Intervals(added).gaps(total)
    parts = _split_ranges(gaps, part)
    assert all(0 < e - s <= part for s, e in parts)
    flat = [b for s, e in parts for b in range(s, e)]
    assert len(flat) == len(set(flat))  # no byte asked twice
    assert set(flat) == {b for s, e in gaps for b in range(s, e)}
    hi = min(lo + span, total)
    rest = _subtract(gaps, lo, hi)
    assert {b for s, e in rest for b in range(s, e)} == {
        b for s, e in gaps for b in range(s, e) if not lo <= b < hi
    }


# Repo specs ------------------------------------------------------------------------


NAME = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,15}", fullmatch=True)
MODEL_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)
"""Model names start with a letter or digit (manifest.ModelName)."""
REF_SEGMENT = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,10}", fullmatch=True)
REF = st.lists(REF_SEGMENT, min_size=1, max_size=3).map("/".join)
CONFIG = HubConfig(
    github_raw="https://raw.example/r", github_media="https://media.example/m"
)


@SETTINGS
@given(NAME, NAME, st.one_of(st.none(), REF))
def test_github_spec_round_trips(owner: str, name: str, ref: str | None) -> None:
    assume(".." not in (ref or "").split("/"))
    spec = f"{owner}/{name}" + (f":{ref}" if ref else "")
    assume(github.looks_like_github(spec))
    assert github.parse(spec) == (owner, name, ref or "main")
    source = resolve_repo(spec, CONFIG)
    assert source.spec == f"{owner}/{name}:{ref or 'main'}"
    assert resolve_repo(source.spec, CONFIG).spec == source.spec  # canonical: fixed


@SETTINGS
@given(st.text(max_size=40))
@example("a/b/c")
@example("a/b:..")
@example("a/b:x/../../y")
@example("a/b:ref?x")
@example("a b/c")
@example("")
def test_resolve_repo_raises_only_repo_spec_error(spec: str) -> None:
    assume("\x00" not in spec and not spec.startswith("~"))  # "~": see below
    try:
        source = resolve_repo(spec, CONFIG)
    except RepoSpecError:
        return
    assert source.kind in ("github", "http", "local")
    if source.kind == "github":
        _owner, _name, ref = github.parse(source.spec)
        assert ".." not in ref.split("/") and not ref.startswith("/")


def test_unknown_home_in_repo_is_a_repo_spec_error() -> None:
    with pytest.raises(RepoSpecError):
        resolve_repo("~nosuchuser0/zoo", CONFIG)


@SETTINGS
@given(NAME, NAME, REF)
def test_github_urls_stay_inside_the_named_repo(
    owner: str, name: str, ref: str
) -> None:
    """yarl resolves dot segments: a name or ref of '.'/'..' would leave the repo."""
    spec = f"{owner}/{name}:{ref}"
    try:
        source = resolve_repo(spec, CONFIG)
    except RepoSpecError:
        return
    if source.kind != "github":
        return
    owner_, name_, ref_ = github.parse(source.spec)
    prefix = f"/r/{owner_}/{name_}/{ref_}/"
    assert URL(source.manifest_url).path.startswith(prefix)
    assert URL(source.file_urls("a/m.onnx")[-1]).path == prefix + "a/m.onnx"


@pytest.mark.parametrize("spec", ["acme/..:models/main", "acme/.:x"])
def test_dot_repo_names_are_refused(spec: str) -> None:
    with pytest.raises(RepoSpecError):
        resolve_repo(spec, CONFIG)


# Manifests -------------------------------------------------------------------------


SEGMENT = st.from_regex(
    r"[A-Za-z0-9_+-]([A-Za-z0-9_.+-]{0,11}[A-Za-z0-9_+-])?", fullmatch=True
).filter(lambda segment: windows_name_problem(segment) is None)  # CON, nul.x
SAFE_PATH = st.lists(SEGMENT, min_size=0, max_size=3).map(
    lambda parts: "/".join([*parts, "model"]) + ".onnx"
)
SHA = st.from_regex(r"[0-9a-f]{64}", fullmatch=True)


@st.composite
def entries(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(0, 6))
    names = draw(
        st.lists(MODEL_NAME, min_size=count, max_size=count, unique_by=str.casefold)
    )
    paths = draw(
        st.lists(SAFE_PATH, min_size=count, max_size=count, unique_by=str.casefold)
    )
    items = []
    for name, path in zip(names, paths, strict=True):
        meta: dict[str, Any] = {"tags": draw(st.lists(NAME, max_size=3))}
        if draw(st.booleans()):
            meta["model_sha"] = draw(SHA)
            meta["model_bytes"] = draw(st.integers(0, 2**40))
        items.append(
            {
                "model": name,
                "model_path": path,
                "onnx_version": draw(st.sampled_from(["1.9", "1.14.1", "1.21"])),
                "opset_version": draw(st.integers(1, 30)),
                "metadata": meta,
            }
        )
    return items


@SETTINGS
@given(entries())
def test_valid_manifests_round_trip(items: list[dict[str, Any]]) -> None:
    manifest = Manifest.parse(json.dumps(items))
    assert [e.model_path for e in manifest] == [i["model_path"] for i in items]
    again = Manifest.parse(manifest.to_json())
    assert again.to_json() == manifest.to_json()
    assert json.loads(manifest.to_json()) == items


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4)
    ),
    max_leaves=20,
)
ENTRY_KEYS = ["model", "model_path", "opset_version", "onnx_version", "metadata"]


@SETTINGS
@given(st.lists(st.dictionaries(st.sampled_from(ENTRY_KEYS), JSON), max_size=4))
def test_any_entry_shape_parses_or_raises_manifest_parse_error(
    items: list[Any],
) -> None:
    try:
        manifest = Manifest.parse(json.dumps(items))
    except ManifestParseError:
        return
    for entry in manifest:
        check_relative_path(entry.model_path)


@SETTINGS
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_manifest_parse_error(data: bytes) -> None:
    with contextlib.suppress(ManifestParseError):
        Manifest.parse(data)


def test_deeply_nested_manifest_is_a_parse_error() -> None:
    with pytest.raises(ManifestParseError):
        Manifest.parse(b"[" * 100_000)


# Path sanitisation --------------------------------------------------------------------


PATHISH = st.text(
    alphabet=st.sampled_from(list("ab./\\:%2eE~ C") + ["\x00", "\u0301", "é", "\n"]),
    max_size=24,
)


@SETTINGS
@given(st.one_of(PATHISH, st.text(max_size=30)))
@example("../x.onnx")
@example("a/%2e%2e/x")
@example("//host/x")
@example("C:x")
@example("a/./b")
def test_accepted_paths_stay_inside_cache_and_url_base(path: str) -> None:
    try:
        checked = check_relative_path(path)
    except UnsafePathError:
        return
    root = Path("/cache/root")
    target = cache_path(root, checked, "0" * 64)
    assert os.path.commonpath([root, os.path.normpath(target)]) == str(root)
    assert not PurePosixPath(checked).is_absolute()
    assert not PureWindowsPath(checked).anchor
    assert ".." not in PurePosixPath(checked).parts
    base = "https://files.example/hub/"
    url = URL(resolve_repo(base, CONFIG).file_urls(checked)[0])
    assert url.host == "files.example"
    assert url.path.startswith("/hub/")
    assert posixpath.normpath(url.path).startswith("/hub/")


@SETTINGS
@given(
    st.one_of(PATHISH, st.text(max_size=30)),
    st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE]),
)
@example("../m_evil/x", tarfile.REGTYPE)
@example("/abs", tarfile.REGTYPE)
@example("./", tarfile.DIRTYPE)
def test_accepted_tar_names_stay_inside_the_extraction_folder(
    name: str, kind: bytes
) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    try:
        parts = _safe_parts(info)
    except ArchiveError:
        return
    assert _name_problem(name) is None
    temp = Path("/extract/tmp")
    target = temp.joinpath(*parts)
    assert os.path.commonpath([temp, os.path.normpath(target)]) == str(temp)
    assert all(
        p not in ("", ".", "..") and "/" not in p and "\\" not in p for p in parts
    )
