"""``file://`` sources: copy off the loop thread, hashing as the bytes are written."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from urllib.request import url2pathname

from ..errors import RemoteFileNotFoundError, TransferError, UnexpectedContentError
from .assembler import Assembler
from .spec import BytesResponse

__all__ = ("COPY_SIZE", "copy_local", "local_path", "read_local", "too_large")

COPY_SIZE = 4 * 1024 * 1024
"""Bytes copied per thread hop."""

T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]


def local_path(url: str) -> Path:
    """The path of a ``file://`` URL (only local hosts)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise TransferError(
            f"{url} names another host; file:// URLs must be local", url=url
        )
    return Path(url2pathname(parts.path))


async def copy_local(
    run: Runner, url: str, assembler: Assembler, on_bytes: Callable[[int], None]
) -> int:
    """Copy the file of ``url`` into ``assembler`` in batches; return its size."""
    src = local_path(url)
    fd = await run(_open_source, src, url)
    try:
        offset = 0
        while True:
            count: int = await run(_copy_chunk, fd, assembler, offset, url)
            if count == 0:
                return offset
            offset += count
            on_bytes(count)
    finally:
        os.close(fd)


def _open_source(src: Path, url: str) -> int:
    try:
        return os.open(src, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise RemoteFileNotFoundError(
            f"{src} does not exist", status=404, url=url
        ) from None
    except OSError as exc:
        raise TransferError(f"cannot read {src}: {exc}", url=url) from exc


def _copy_chunk(fd: int, assembler: Assembler, offset: int, url: str) -> int:
    try:
        os.lseek(fd, offset, os.SEEK_SET)  # the source fd is ours alone
        data = os.read(fd, COPY_SIZE)
    except OSError as exc:
        raise TransferError(f"cannot read {url}: {exc}", url=url) from exc
    if data:
        assembler.write(offset, data)
    return len(data)


def read_local(url: str, limit: int) -> BytesResponse:
    """A ``file:`` URL's bytes as a small GET would answer them (404 when absent)."""
    path = local_path(url)
    try:
        with open(path, "rb") as f:
            body = f.read(limit + 1)
    except FileNotFoundError:
        return BytesResponse(404, {}, b"", url)
    except OSError as exc:
        raise TransferError(f"cannot read {path}: {exc}", url=url) from exc
    if len(body) > limit:
        raise too_large(url, limit)
    return BytesResponse(200, {}, body, url)


def too_large(url: str, limit: int) -> UnexpectedContentError:
    """The error for a small body (a manifest) longer than its limit."""
    return UnexpectedContentError(
        f"{url} sent more than {limit} bytes", url=url, hint="check the URL"
    )
