"""Decide whether the bytes that arrived are the file the caller asked for.

A wrong body is named for what it most likely is: a Git LFS pointer (the repo's LFS
quota is exhausted, or the URL points at the Git blob instead of LFS media) or an
HTML page (a login wall, captive portal or error page); otherwise a plain
:class:`~asynchub.errors.IntegrityError` with the expected and actual digests.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IntegrityError, UnexpectedContentError
from .spec import FileSpec

__all__ = ("HEAD_SIZE", "check_announced_size", "verify")

HEAD_SIZE = 1024
"""Bytes of the body inspected to recognise a pointer or a page."""

LFS_PREFIX = b"version https://git-lfs"
_HTML_PREFIXES = (b"<!doctype html", b"<html", b"<head", b"<!--")


def sniff(head: bytes) -> str | None:
    """``"lfs"``, ``"html"`` or None for the first bytes of a body."""
    if head.startswith(LFS_PREFIX):
        return "lfs"
    if head.lstrip().lower().startswith(_HTML_PREFIXES):
        return "html"
    return None


def _unexpected(kind: str, spec: FileSpec, url: str, size: int) -> Exception:
    name = spec.label or spec.dest.name
    if kind == "lfs":
        return UnexpectedContentError(
            f"{url} served a Git LFS pointer ({size} bytes) instead of {name}",
            url=url,
            hint="the repo's LFS bandwidth quota may be exhausted, or the URL names "
            "the Git blob rather than LFS media; try later or another mirror",
        )
    return UnexpectedContentError(
        f"{url} served an HTML page ({size} bytes) instead of {name}",
        url=url,
        hint="a login page, proxy or captive portal answered, or the URL is wrong; "
        "open the URL in a browser to see what it says",
    )


def check_announced_size(spec: FileSpec, url: str, total: int, head: bytes) -> None:
    """Fail before downloading when the server announces the wrong size."""
    if spec.size is None or total == spec.size:
        return
    kind = sniff(head)
    if kind is not None:
        raise _unexpected(kind, spec, url, total)
    raise IntegrityError(
        f"{url} announces {total} bytes for {spec.label or spec.dest.name}, "
        f"expected {spec.size}",
        path=str(spec.dest),
        expected=spec.sha256,
        actual=None,
    )


def verify(
    spec: FileSpec, url: str, size: int, digest: str, head: Callable[[], bytes]
) -> None:
    """Raise unless size and SHA-256 match ``spec`` (and the body is no pointer).

    ``head`` reads the body's first bytes; it is called only when they can change
    the verdict (no expected hash, or a mismatch to name), so a verified file costs
    no extra read.
    """
    size_ok = spec.size is None or size == spec.size
    hash_ok = spec.sha256 is None or digest == spec.sha256.lower()
    if spec.sha256 is not None and size_ok and hash_ok:
        return
    kind = sniff(head())
    if kind == "lfs" or (kind is not None and not (size_ok and hash_ok)):
        raise _unexpected(kind, spec, url, size)
    if size_ok and hash_ok:
        return
    sizes = "" if size_ok else f" ({size} bytes, expected {spec.size})"
    raise IntegrityError(
        f"SHA-256 mismatch for {spec.label or spec.dest.name} from {url}{sizes}: "
        f"expected {spec.sha256}, got {digest}",
        path=str(spec.dest),
        expected=spec.sha256,
        actual=digest,
    )
