"""What the server tests need around the servers: digests and manifest entries,
the files a download left in a cache, and a self-signed certificate for TLS."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
from pathlib import Path
from typing import Any

from asynchub._transfer.state import (
    LOCK_SUFFIX,
    PART_SUFFIX,
    STATE_SUFFIX,
    STATE_TMP_SUFFIX,
)
from asynchub.cache._layout import STATE_DIR

__all__ = (
    "cache_files",
    "entry",
    "self_signed_cert",
    "server_tls",
    "sha",
    "temp_files",
    "tree",
)


def sha(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def entry(name: str, path: str, data: bytes | None, **extra: Any) -> dict[str, Any]:
    """A manifest entry for ``data`` at ``path`` (SHA and size filled in)."""
    meta: dict[str, Any] = {"tags": ["test"]}
    if data is not None:
        meta.update(model_sha=sha(data), model_bytes=len(data))
    meta.update(extra.pop("metadata", {}))
    item: dict[str, Any] = {
        "model": name,
        "model_path": path,
        "onnx_version": "1.14",
        "opset_version": extra.pop("opset_version", 13),
        "metadata": meta,
    }
    item.update(extra)
    return item


def cache_files(root: Path) -> list[str]:
    """Files under a cache root, relative and sorted, without asynchub's bookkeeping
    (``.asynchub/``) and lock files: what a user would see as cached data."""
    if not root.exists():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if (p.is_file() or p.is_symlink())
        and STATE_DIR not in p.relative_to(root).parts
        and not p.name.endswith(LOCK_SUFFIX)
    )


def temp_files(root: Path) -> list[str]:
    """Temporary files (parts, sidecars) the engine left under ``root``."""
    return [
        f
        for f in cache_files(root)
        if f.endswith((PART_SUFFIX, STATE_SUFFIX, STATE_TMP_SUFFIX))
    ]


def tree(root: Path) -> list[str]:
    """Every path under ``root`` (relative, sorted), links included, for escapes."""
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*"))


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 made by the openssl CLI (cert, key)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for ``cert`` and ``key``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context
