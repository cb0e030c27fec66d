"""Pydantic models of ``ONNX_HUB_MANIFEST.json`` and the onnx.hub-compatible ModelInfo.

Every entry of the official manifest parses; unknown keys (such as ``extra_ports``)
are kept. A malformed entry raises :class:`~asynchub.errors.ManifestParseError`
naming the entry and field, and any ``model_path`` that could leave the cache or
mirror folder raises :class:`~asynchub.errors.UnsafePathError` before anything
touches the disk or builds a URL. Sizes (``model_bytes``, ``model_with_data_bytes``)
are integers from 0 to :data:`MAX_FILE_BYTES` (1 TiB); a larger claim is a
ManifestParseError naming the entry.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
)

from ._fs import fold_key, windows_name_problem
from ._suggest import did_you_mean
from .errors import (
    ManifestParseError,
    ModelNotFoundError,
    OpsetNotFoundError,
    UnsafePathError,
)

__all__ = (
    "MAX_FILE_BYTES",
    "IoPort",
    "IoPorts",
    "Manifest",
    "ManifestEntry",
    "Metadata",
    "ModelInfo",
    "check_relative_path",
)

_DRIVE = re.compile(r"^[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")
_MAX_PATH = 1024
MAX_FILE_BYTES = 2**40
"""The largest size (1 TiB) a manifest may claim for one file."""
_MAX_SEGMENT = 255


def check_relative_path(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path, else raise UnsafePathError.

    Refused: empty, absolute, drive letters, backslashes, ``//host``, empty, ``.`` or
    ``..`` segments (also percent-encoded), hidden segments (``.git``, asynchub's own
    ``.asynchub`` state), ``:``, control and format characters (anything
    ``str.isprintable`` refuses: C0/C1, BIDI overrides), non-NFC text, over-long paths,
    and names Windows cannot hold (``CON``, ``nul.onnx``, ``<>"|?*``, a trailing dot
    or space), so a manifest or mirror that works on one system works on all, and
    no file name ever opens a Windows device.
    """
    problem = _path_problem(path)
    if problem:
        raise UnsafePathError(f"unsafe path {path!r}: {problem}")
    return path


@functools.lru_cache(maxsize=16384)
def _path_problem(path: str) -> str | None:
    """What is wrong with ``path``, or None; remembered, since one path is checked
    when the manifest is parsed, when its destination is computed and when its URL
    is built (a pure function of the string)."""
    if not path:
        return "it is empty"
    if len(path) > _MAX_PATH:
        return f"it is longer than {_MAX_PATH} characters"
    if not path.isprintable():  # C0/C1 controls, BIDI and other format characters
        return "it contains a control character (or a format one, like a BIDI mark)"
    if "\\" in path:
        return "it contains a backslash"
    if path.startswith("/") or _DRIVE.match(path):
        return "it is absolute"
    if "%" in path:
        return "it contains percent-encoding"
    if unicodedata.normalize("NFC", path) != path:
        return "it is not in Unicode NFC form"
    return _segment_problem(path.split("/"))


def _segment_problem(segments: Sequence[str]) -> str | None:
    for segment in segments:
        if segment in ("", ".", ".."):
            return f"it has a {segment or 'empty'!r} segment"
        if segment.startswith("."):
            return "a segment is hidden (starts with '.'), like asynchub's own state"
        if len(segment.encode()) > _MAX_SEGMENT:
            return f"a segment is longer than {_MAX_SEGMENT} bytes"
        if ":" in segment:
            return "a segment contains ':'"
        problem = windows_name_problem(segment)
        if problem:
            return problem
    return None


def _safe_path(value: str) -> str:
    try:
        return check_relative_path(value)
    except UnsafePathError as exc:
        raise ValueError(exc.message) from None


def _sha(value: str) -> str:
    if not _SHA256.match(value):
        raise ValueError("must be 64 hexadecimal characters (a SHA-256 digest)")
    return value.lower()


def _tarball(value: str) -> str:
    if not value.endswith(".tar.gz"):
        raise ValueError("must end with '.tar.gz'")
    return value


def _size_not_bool(value: object) -> object:
    if isinstance(value, bool):  # JSON true would otherwise become 1 byte
        raise ValueError("must be an integer, not a boolean")
    return value


def _bounded_size(value: int) -> int:
    if value > MAX_FILE_BYTES:
        raise ValueError(
            f"claims {_digits(value)} bytes, more than asynchub's maximum of "
            f"1 TiB ({MAX_FILE_BYTES} bytes) per file"
        )
    return value


def _digits(value: int) -> str:
    """A huge number shortened for a message (10**400 has 401 digits)."""
    text = str(value) if value.bit_length() < 4000 else "a 1000+ digit number of"
    return text if len(text) <= 24 else f"{text[:6]}...({len(text)} digits)"


_NAME_PUNCTUATION = frozenset(" ._-()+,'&@#~=!/")  # '/': names built from HF paths
_PLAIN_CHARS = r"A-Za-z0-9._\-()+,'&@#~=!/"
_PLAIN_NAME = re.compile(rf"[A-Za-z0-9](?:[{_PLAIN_CHARS} ]*[{_PLAIN_CHARS}])?")
"""An ASCII name the rule allows, matched in one call (every official name is one);
any other name goes through the character-by-character check."""
_MAX_NAME = 256


def _model_name(value: str) -> str:
    if _PLAIN_NAME.fullmatch(value):
        return value
    if not value[0].isalnum() or value != value.rstrip():
        raise ValueError("a model name starts with a letter or digit, ends unspaced")
    bad = sorted({c for c in value if not _name_char(c)})
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ValueError(
            f"a model name holds letters, digits, spaces and "
            f"{''.join(sorted(_NAME_PUNCTUATION - {' '}))} only, not {shown}"
        )
    return value


def _name_char(char: str) -> bool:
    """A letter, digit or combining mark (``e`` + U+0301) of any script, or one of
    the allowed punctuation marks."""
    if char.isalnum() or char in _NAME_PUNCTUATION:
        return True
    return unicodedata.category(char).startswith("M")


ModelName = Annotated[
    str, Field(min_length=1, max_length=_MAX_NAME), AfterValidator(_model_name)
]
"""A model name: 1 to 256 characters, letters, digits and combining marks of any
script, spaces and
``. _ - ( ) + , ' & @ # ~ = !``, starting with a letter or digit, no trailing space.
No control, format (BIDI) or markup (``[]``) character can reach a terminal or a
table through a name; every name of the official zoo follows the rule."""

SafePath = Annotated[str, AfterValidator(_safe_path)]
FileSize = Annotated[
    int, BeforeValidator(_size_not_bool), Field(ge=0), AfterValidator(_bounded_size)
]
"""A file size from a manifest: 0 to :data:`MAX_FILE_BYTES` (1 TiB), so no size a
manifest claims can make asynchub plan, allocate or format something huge."""
TarballPath = Annotated[str, AfterValidator(_safe_path), AfterValidator(_tarball)]
Sha256 = Annotated[str, AfterValidator(_sha)]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True, strict=False)


class IoPort(_Open):
    """One input or output: name, shape (ints, symbolic strings or None) and type."""

    name: str
    shape: list[int | str | None] | None = None
    type: str | None = None


class IoPorts(_Open):
    inputs: list[IoPort] = Field(default_factory=list)
    outputs: list[IoPort] = Field(default_factory=list)


class Metadata(_Open):
    """The ``metadata`` object of an entry; every field is optional, extras kept."""

    model_sha: Sha256 | None = None
    model_bytes: FileSize | None = None
    tags: list[str] = Field(default_factory=list)
    io_ports: IoPorts | None = None
    model_with_data_path: TarballPath | None = None
    model_with_data_sha: Sha256 | None = None
    model_with_data_bytes: FileSize | None = None


class ManifestEntry(_Open):
    """One entry of ``ONNX_HUB_MANIFEST.json``."""

    model: ModelName
    model_path: SafePath
    onnx_version: str | None = None
    opset_version: int = Field(ge=1, le=10_000)
    metadata: Metadata = Metadata()

    @field_validator("onnx_version", mode="before")
    @classmethod
    def _version(cls, value: object) -> object:
        if isinstance(value, (int, float)):
            value = str(value)
        if isinstance(value, str) and not _VERSION.match(value):
            raise ValueError("must look like '1.9' or '1.9.0'")
        return value

    @field_validator("opset_version", mode="before")
    @classmethod
    def _not_bool(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true would otherwise become opset 1
            raise ValueError("must be an integer, not a boolean")
        return value

    @field_validator("model_path")
    @classmethod
    def _onnx_suffix(cls, value: str) -> str:
        if not value.endswith(".onnx"):
            raise ValueError("must end with '.onnx'")
        return value


class ModelInfo:
    """A model's properties, as onnx.hub's ``ModelInfo`` exposed them.

    Attributes:
        model: The model's name.
        model_path: Its path relative to the repo root.
        metadata: The raw ``metadata`` dict (sizes, tags, io_ports, tarball).
        model_sha: SHA-256 of the model file, or None.
        tags: The set of tags.
        opset: The opset version.
        raw_model_info: The raw manifest entry.
        entry: The validated :class:`ManifestEntry` behind this view.
    """

    def __init__(self, raw_model_info: dict[str, Any] | ManifestEntry) -> None:
        if isinstance(raw_model_info, ManifestEntry):
            self.entry = raw_model_info
        else:
            self.entry = ManifestEntry.model_validate(raw_model_info)
        self.raw_model_info: dict[str, Any] = self.entry.model_dump(
            mode="json", exclude_unset=True
        )
        self.model = self.entry.model
        self.model_path = self.entry.model_path
        self.metadata: dict[str, Any] = self.raw_model_info.get("metadata", {})
        self.model_sha = self.entry.metadata.model_sha
        self.tags: set[str] = set(self.entry.metadata.tags)
        self.opset = self.entry.opset_version

    def __str__(self) -> str:
        return (
            f"ModelInfo(model={self.model}, opset={self.opset}, "
            f"path={self.model_path}, metadata={self.metadata})"
        )

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelInfo) and other.entry == self.entry

    def __hash__(self) -> int:
        return hash((self.model, self.opset, self.model_path))


class Manifest:
    """A validated manifest: an ordered list of entries and queries over it."""

    def __init__(self, entries: Iterable[ManifestEntry]) -> None:
        self.entries: list[ManifestEntry] = list(entries)
        _check_unique(self.entries)

    @classmethod
    def parse(cls, data: bytes | str, *, source: str = "manifest") -> Manifest:
        """Parse and validate JSON text; raise ManifestParseError naming the entry."""
        try:
            raw = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ManifestParseError(f"{source} is not valid JSON: {exc}") from exc
        if not isinstance(raw, list):
            raise ManifestParseError(f"{source} must be a JSON list of entries")
        try:
            entries = _ENTRIES.validate_python(raw)  # one call for the whole list
        except ValidationError:  # find the first bad entry, and name it
            entries = [_validate_entry(item, i, source) for i, item in enumerate(raw)]
        try:
            return cls(entries)
        except ManifestParseError as exc:
            raise ManifestParseError(f"{source}: {exc.message}") from None

    def subset(self, entries: Iterable[ManifestEntry]) -> Manifest:
        """A manifest of some of this one's entries, in the order given, without
        checking them again (entries of one checked manifest are unique): the
        mirror writes its selection this way.

        Raises:
            ValueError: An entry is not one of this manifest's, or is given twice.
        """
        mine = {id(e) for e in self.entries}
        chosen = list(entries)
        ids = {id(e) for e in chosen}
        if len(ids) != len(chosen) or not ids <= mine:
            raise ValueError("subset() takes entries of this manifest, each once")
        subset = Manifest.__new__(Manifest)
        subset.entries = chosen
        return subset

    def to_json(self) -> str:
        """The manifest as JSON text in the official layout (unset keys omitted)."""
        text = _ENTRIES.dump_json(self.entries, exclude_unset=True, indent=4).decode()
        if not text.isascii():  # the layout json.dumps gives: non-ASCII as \uXXXX
            text = json.dumps(json.loads(text), indent=4)
        return text + "\n"

    def __iter__(self) -> Iterator[ManifestEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(e) for e in self.entries]

    def select(
        self, model: str | None = None, tags: Sequence[str] | None = None
    ) -> list[ModelInfo]:
        """Entries whose name matches (case-insensitive) and that have any of tags."""
        found = self.models()
        if model is not None:
            found = [m for m in found if m.model.lower() == model.lower()]
        if tags is not None:
            wanted = {t.lower() for t in tags}
            found = [m for m in found if wanted & {t.lower() for t in m.tags}]
        return found

    def find(self, model: str, opset: int | None = None) -> ModelInfo:
        """The entry for ``model`` at ``opset`` (the highest opset when None)."""
        matching = self.select(model)
        if not matching:
            names = (entry.model for entry in self.entries)
            raise ModelNotFoundError(
                f"No models found with name {model}{did_you_mean(model, names)}"
            )
        if opset is None:
            return max(matching, key=lambda m: m.opset)  # the first of equals wins
        for info in matching:
            if info.opset == opset:
                return info
        valid = sorted(m.opset for m in matching)
        raise OpsetNotFoundError(
            f"{model} has no version with opset {opset}. Valid opsets: {valid}",
            valid=valid,
        )


_ENTRIES = TypeAdapter(list[ManifestEntry])  # one Rust call dumps the whole list


def _validate_entry(item: object, index: int, source: str) -> ManifestEntry:
    try:
        return ManifestEntry.model_validate(item)
    except ValidationError as exc:
        name = item.get("model") if isinstance(item, dict) else None
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "(entry)"
        error_type = (
            UnsafePathError if "unsafe path" in first["msg"] else ManifestParseError
        )
        raise error_type(
            f"{source}: entry {index} ({name!r}) field {field!r}: {first['msg']}"
        ) from exc


def _entry_paths(entry: ManifestEntry) -> list[str]:
    tarball = entry.metadata.model_with_data_path
    return [entry.model_path, *([tarball] if tarball else [])]


def _check_unique(entries: Sequence[ManifestEntry]) -> None:
    """Refuse ambiguous manifests.

    Two entries may share a name and opset only if the names are identical (the
    2021 official manifest lists ResNet v1 and v2 that way; the first wins, as in
    onnx.hub). Names that differ only by case or Unicode normalisation at the same
    opset are refused (lookups are case-insensitive, so one could shadow the other),
    and so is a file path listed twice, even in another case.
    """
    names: dict[tuple[str, int], str] = {}
    paths: set[str] = set()
    for i, entry in enumerate(entries):
        for path in _entry_paths(entry):
            if fold_key(path) in paths:
                raise ManifestParseError(
                    f"entry {i} ({entry.model!r}) repeats model_path {path!r} (paths "
                    "compare case-insensitively: they collide on macOS and Windows)"
                )
            paths.add(fold_key(path))
        folded = unicodedata.normalize("NFKC", entry.model).casefold()
        first = names.setdefault((folded, entry.opset_version), entry.model)
        if first != entry.model:
            raise ManifestParseError(
                f"entry {i} ({entry.model!r}, opset {entry.opset_version}) duplicates "
                f"{first!r}: the names differ only by case or Unicode normalisation"
            )
