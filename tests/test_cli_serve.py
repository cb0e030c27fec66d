"""``asynchub serve``'s server (asynchub.hosting._serve): Range, ETag, refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path

import aiohttp
import anyio
import pytest

from asynchub.errors import CacheError
from asynchub.hosting._serve import serving

pytestmark = pytest.mark.anyio

MODEL = "vision/classification/tinynet/model/tinynet-13.onnx"


@pytest.fixture
def hub(tmp_path: Path) -> Path:
    root = tmp_path / "hub"
    (root / "vision/classification/tinynet/model").mkdir(parents=True)
    (root / MODEL).write_bytes(bytes(range(256)) * 8)
    (root / "ONNX_HUB_MANIFEST.json").write_text("[]")
    (root / ".asynchub").mkdir()
    (root / ".asynchub" / "trusted_repos.json").write_text("[]")
    (root / f"{MODEL}.abcd.asynchub-part").write_bytes(b"partial")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (root / "escape.onnx").symlink_to(tmp_path / "secret.txt")
    return root


async def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """Send a request line verbatim (no client-side normalisation of ``..``)."""
    host, port = url.removeprefix("http://").rstrip("/").split(":")
    stream = await anyio.connect_tcp(host, int(port))
    async with stream:
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        await stream.send(request.encode())
        data = b""
        with anyio.fail_after(5):
            try:
                while chunk := await stream.receive():
                    data += chunk
            except anyio.EndOfStream:
                pass
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_serves_files_with_range_and_etag(hub: Path) -> None:
    data = (hub / MODEL).read_bytes()
    async with serving(hub) as url, aiohttp.ClientSession() as session:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        async with session.get(url + MODEL) as response:
            assert response.status == 200
            assert await response.read() == data
            etag = response.headers["ETag"]
            assert response.headers["Accept-Ranges"] == "bytes"
        headers = {"Range": "bytes=100-299", "If-Range": etag}
        async with session.get(url + MODEL, headers=headers) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == f"bytes 100-299/{len(data)}"
            assert await response.read() == data[100:300]
        async with session.get(
            url + MODEL, headers={"If-None-Match": etag}
        ) as response:
            assert response.status == 304
        async with session.head(url + MODEL) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(len(data))
        async with session.get(url) as response:
            assert (
                response.status == 200
                and "ONNX_HUB_MANIFEST.json" in await response.text()
            )
    assert hashlib.sha256(data).hexdigest()  # the bytes above were the file's


async def test_refuses_traversal_hidden_and_escaping_paths(hub: Path) -> None:
    async with serving(hub) as url:
        for path in (
            "/../secret.txt",
            "/%2e%2e/secret.txt",
            "/vision/..%2f..%2fsecret.txt",
            "/escape.onnx",
            "/vision//classification",
        ):
            status, body = await raw_get(url, path)
            assert status in (403, 404), path
            assert b"TOP SECRET" not in body
        status, body = await raw_get(url, "/.asynchub/trusted_repos.json")
        assert status in (403, 404) and b"[]" not in body
        for path in (
            f"/{MODEL}.abcd.asynchub-part",
            "/vision/classification",
            "/nothing.onnx",
        ):
            assert (await raw_get(url, path))[0] == 404, path
        assert (await raw_get(url, "/escape.onnx"))[0] == 403
        async with (
            aiohttp.ClientSession() as session,
            session.post(url + MODEL) as response,
        ):
            assert response.status == 405


async def test_refuses_a_missing_folder_and_a_busy_port(
    tmp_path: Path, hub: Path
) -> None:
    with pytest.raises(CacheError, match="is not a folder"):
        async with serving(tmp_path / "nope"):
            pass
    async with serving(hub) as url:
        port = int(url.rstrip("/").rsplit(":", 1)[1])
        with pytest.raises(CacheError, match="cannot listen on 127.0.0.1"):
            async with serving(hub, port=port):
                pass
