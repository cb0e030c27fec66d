"""Read a model's opset from a few ranged reads, without fetching the whole file.

An ONNX file is a serialized ``ModelProto``; writers emit its fields in field-number
order, so the small fields (1-6) come first, then the ``graph`` (7, which holds the
weights), then ``opset_import`` (8). :func:`scan` walks the top-level fields of a
window of bytes: it skips the graph by its length prefix and reads the
``opset_import`` entries of the default domain (``""`` or ``ai.onnx``). Asking for
the window after the graph is at most one more ranged read. A window that cannot be
parsed gives no opset: the file is then left out of the manifest, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ("WINDOW", "Scan", "scan")

WINDOW = 64 * 1024
"""Bytes asked for in each ranged read."""

_GRAPH, _OPSET_IMPORT = 7, 8
_DEFAULT_DOMAINS = ("", "ai.onnx")


class _Short(Exception):
    """The window ended inside a field."""


@dataclass(frozen=True)
class Scan:
    """What one window told: the default opset if seen, else where to read next."""

    opset: int | None
    resume: int | None  # file offset of the next window; None: nothing more to read


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise _Short
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def scan(buf: bytes, base: int) -> Scan:
    """Walk the ``ModelProto`` fields in ``buf`` (the file's bytes from ``base``)."""
    pos, opset = 0, None
    try:
        while pos < len(buf):
            start = pos
            try:
                key, pos = _varint(buf, pos)
                field, wire = key >> 3, key & 7
                if field == 0:
                    return Scan(opset, None)
                pos = _skip_scalar(buf, pos, wire)
                if wire != 2:
                    continue
                length, pos = _varint(buf, pos)
            except _Short:
                return Scan(opset, base + start)
            end = pos + length
            if field == _OPSET_IMPORT:
                if end > len(buf):
                    return Scan(opset, base + start)
                found = _default_version(buf[pos:end])
                opset = found if found is not None else opset
            elif opset is not None:
                return Scan(opset, None)  # past the opset entries
            elif end > len(buf):
                return Scan(opset, base + end)  # the graph: continue after it
            pos = end
    except ValueError:
        return Scan(opset, None)
    return Scan(opset, base + pos)


def _skip_scalar(buf: bytes, pos: int, wire: int) -> int:
    """Skip a varint or fixed-size value; length-delimited values are left."""
    if wire == 0:
        return _varint(buf, pos)[1]
    if wire == 1:
        return pos + 8
    if wire == 5:
        return pos + 4
    if wire == 2:
        return pos
    raise ValueError(f"wire type {wire} is not in an ONNX model")


def _default_version(entry: bytes) -> int | None:
    """The version of an ``OperatorSetIdProto`` of the default domain, else None."""
    domain, version, pos = "", None, 0
    try:
        while pos < len(entry):
            key, pos = _varint(entry, pos)
            field, wire = key >> 3, key & 7
            if wire == 2:
                length, pos = _varint(entry, pos)
                if field == 1:
                    domain = entry[pos : pos + length].decode("utf-8", "replace")
                pos += length
            elif wire == 0:
                value, pos = _varint(entry, pos)
                version = value if field == 2 else version
            else:
                pos = _skip_scalar(entry, pos, wire)
    except _Short:
        return None
    if domain in _DEFAULT_DOMAINS and version is not None and 1 <= version <= 10_000:
        return version
    return None
