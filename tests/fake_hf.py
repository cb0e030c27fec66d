"""A local fake of the Hugging Face Hub and its CDN, for ``hf://`` tests.

Two aiohttp servers on 127.0.0.1 (different ports, so the CDN is another origin),
run in one background thread so sync and async code can both use them:

hub (``base``):
- ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "siblings"}``;
- ``GET /api/models/{repo}/tree/{rev}?recursive=true``: the listing, ``page_size``
  items a page, next page in ``Link: <…>; rel="next"``; LFS files carry
  ``lfs: {oid, size}``, plain git files only ``oid`` (a git blob id);
- ``GET|HEAD /{repo}/resolve/{rev}/{path}``: LFS files answer ``302`` to a signed
  CDN URL with ``X-Repo-Commit``, ``X-Linked-Size``, ``X-Linked-Etag``; plain files
  are served directly with ``X-Repo-Commit``.
A gated repo answers ``401`` everywhere without ``Authorization: Bearer TOKEN``.
``lying_etag = True`` advertises a wrong SHA-256 in ``X-Linked-Etag``;
``burst_429 = N`` makes the next N hub requests answer ``429`` with ``Retry-After``.

CDN (``cdn_base``): ``/{sha}?expires=T&sig=S`` serves the blob with ``Range``;
``403`` when the signature is wrong or ``T`` (ms) passed (``ttl`` seconds after
the redirect), and, with ``max_ranged = N``, ``403`` for an (N+1)th concurrent ranged
connection. Any request carrying ``Authorization`` is recorded in ``violations``
(tests assert it stays empty) and refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from .harness import Background, choose_range, listen

__all__ = ("TOKEN", "FakeHF", "FakeRepo", "big_model", "model_files")

TOKEN = "hf_fake_token_do_not_print_0123456789"
_KEY = b"fake-cdn-signing-key"
_CHUNK = 16 * 1024


@dataclass
class FakeRepo:
    """One model repo at one commit: ``files`` maps path to bytes; paths in
    ``plain`` are ordinary git files (no LFS metadata)."""

    files: dict[str, bytes]
    commit: str
    plain: set[str] = field(default_factory=set)
    gated: bool = False
    revisions: tuple[str, ...] = ("main",)


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324


class FakeHF:
    """The fake hub and CDN (see the module docs)."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.page_size = 3
        self.ttl = 3600.0
        self.max_ranged: int | None = None
        self.burst_429 = 0
        self.lying_etag = False  # resolve advertises a wrong SHA-256
        self.chunk_delay = 0.001
        self.retry_after = "0.2"
        self.violations: list[str] = []
        self.ranges: list[str] = []  # the Range header of each CDN request
        self.requests: list[tuple[str, str, str]] = []  # (server, method, path_qs)
        self.refused_ranged = 0
        self.expired = 0
        self._blobs: dict[str, bytes] = {}
        self._ranged = 0
        self._background: Background | None = None
        self._runners: list[web.AppRunner] = []
        self.port = self.cdn_port = 0

    # lifecycle -----------------------------------------------------------
    def add(self, repo_id: str, repo: FakeRepo) -> FakeRepo:
        self.repos[repo_id] = repo
        for data in repo.files.values():
            self._blobs[hashlib.sha256(data).hexdigest()] = data
        return repo

    def start(self) -> FakeHF:
        self._background = Background()
        self.port = self._background.run(self._site(self._hub_app()))
        self.cdn_port = self._background.run(self._site(self._cdn_app()))
        return self

    def stop(self) -> None:
        if self._background is None:
            return
        for runner in self._runners:
            self._background.run(runner.cleanup())
        self._runners.clear()
        self._background.close()
        self._background = None

    async def _site(self, app: web.Application) -> int:
        runner, port = await listen(app)
        self._runners.append(runner)
        return port

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_base(self) -> str:
        return f"http://127.0.0.1:{self.cdn_port}"

    def hub_requests(self, part: str = "") -> list[str]:
        return [p for s, _, p in self.requests if s == "hub" and part in p]

    def cdn_requests(self) -> list[str]:
        return [p for s, _, p in self.requests if s == "cdn"]

    # hub -----------------------------------------------------------------
    def _hub_app(self) -> web.Application:
        app = web.Application(middlewares=[self._hub_gate])
        repo = "{owner}/{name}"
        app.router.add_get(f"/api/models/{repo}/revision/{{rev:.+}}", self._revision)
        app.router.add_get(f"/api/models/{repo}/tree/{{rev:.+}}", self._tree)
        app.router.add_route("*", f"/{repo}/resolve/{{rev}}/{{path:.+}}", self._resolve)
        return app

    @web.middleware
    async def _hub_gate(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        self.requests.append(("hub", request.method, request.path_qs))
        if self.burst_429 > 0:
            self.burst_429 -= 1
            return web.Response(status=429, headers={"Retry-After": self.retry_after})
        info = request.match_info
        repo = self.repos.get(f"{info.get('owner')}/{info.get('name')}")
        if repo is None:
            return web.json_response({"error": "Repository not found"}, status=404)
        if repo.gated and request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(
                {"error": "Access to this repo is restricted"}, status=401
            )
        return await handler(request)

    def _repo(self, request: web.Request) -> FakeRepo:
        info = request.match_info
        repo = self.repos[f"{info['owner']}/{info['name']}"]
        if info["rev"] not in (*repo.revisions, repo.commit):
            raise web.HTTPNotFound(text='{"error": "Revision not found"}')
        return repo

    async def _revision(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request)
        info = request.match_info
        siblings = [{"rfilename": p} for p in sorted(repo.files)]
        return web.json_response(
            {
                "id": f"{info['owner']}/{info['name']}",
                "sha": repo.commit,
                "siblings": siblings,
            }
        )

    async def _tree(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request)
        items = self._tree_items(repo)
        start = int(request.query.get("cursor", "0"))
        page = items[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(items):
            nxt = request.url.update_query(cursor=str(start + self.page_size))
            headers["Link"] = f'<{nxt}>; rel="next"'
        return web.json_response(page, headers=headers)

    def _tree_items(self, repo: FakeRepo) -> list[dict[str, object]]:
        folders = sorted({p.rsplit("/", 1)[0] for p in repo.files if "/" in p})
        items: list[dict[str, object]] = [
            {"type": "directory", "oid": "0" * 40, "size": 0, "path": f}
            for f in folders
        ]
        for path in sorted(repo.files):
            data = repo.files[path]
            item: dict[str, object] = {
                "type": "file",
                "oid": _git_oid(data),
                "size": len(data),
                "path": path,
            }
            if path not in repo.plain:
                sha = hashlib.sha256(data).hexdigest()
                item["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            items.append(item)
        return items

    async def _resolve(self, request: web.Request) -> web.StreamResponse:
        repo = self._repo(request)
        path = request.match_info["path"]
        data = repo.files.get(path)
        if data is None:
            return web.json_response({"error": "Entry not found"}, status=404)
        sha = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": repo.commit}
        if path in repo.plain:
            headers["ETag"] = f'"{_git_oid(data)}"'
            return web.Response(body=data, headers=headers)
        headers.update(
            {
                "X-Linked-Size": str(len(data)),
                "X-Linked-Etag": f'"{"0" * 64 if self.lying_etag else sha}"',
                "Location": self.signed_url(sha),
            }
        )
        return web.Response(status=302, headers=headers)

    def signed_url(self, sha: str, expires: float | None = None) -> str:
        when = int(1000 * (expires if expires is not None else time.time() + self.ttl))
        sig = hmac.new(_KEY, f"{sha}:{when}".encode(), "sha256").hexdigest()
        return f"{self.cdn_base}/{sha}?expires={when}&sig={quote(sig)}"

    # cdn -----------------------------------------------------------------
    def _cdn_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{sha}", self._cdn)
        return app

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(("cdn", request.method, request.path_qs))
        self.ranges.append(request.headers.get("Range", ""))
        if "Authorization" in request.headers:
            self.violations.append(request.path_qs)
            return web.Response(status=400, text="Authorization sent to the CDN")
        sha = request.match_info["sha"]
        data = self._blobs.get(sha)
        if data is None:
            return web.Response(status=404)
        if not self._signature_ok(request, sha):
            self.expired += 1
            return web.Response(status=403, text="Request has expired")
        ranged = "Range" in request.headers
        if ranged and self.max_ranged is not None and self._ranged >= self.max_ranged:
            self.refused_ranged += 1
            return web.Response(status=403, text="too many connections")
        self._ranged += ranged
        try:
            return await self._send(request, data, sha)
        finally:
            self._ranged -= ranged

    def _signature_ok(self, request: web.Request, sha: str) -> bool:
        try:
            when = int(request.query["expires"])
        except (KeyError, ValueError):
            return False
        good = hmac.new(_KEY, f"{sha}:{when}".encode(), "sha256").hexdigest()
        return (
            hmac.compare_digest(good, request.query.get("sig", ""))
            and when > 1000 * time.time()
        )

    async def _send(
        self, request: web.Request, data: bytes, sha: str
    ) -> web.StreamResponse:
        start, end = 0, len(data)
        response = web.StreamResponse(
            headers={"ETag": f'"{sha}"', "Accept-Ranges": "bytes"}
        )
        wanted = choose_range(request.headers.get("Range"), len(data))
        if isinstance(wanted, tuple):
            start, end = wanted[0], wanted[1] + 1
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        response.content_length = end - start
        await response.prepare(request)
        for pos in range(start, end, _CHUNK):
            await asyncio.sleep(self.chunk_delay)  # ranged connections overlap
            await response.write(data[pos : min(end, pos + _CHUNK)])
        await response.write_eof()
        return response


def big_model(elements: int = 100_000) -> bytes:
    """A real ONNX model (``Y = X + W``) whose initializer makes it split into parts."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(
        np.arange(elements, dtype=np.float32) / elements, name="W"
    )
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["Y"])],
        "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [elements])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [elements])],
        [weight],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def model_files(example_hub: Path) -> dict[str, bytes]:
    """Every file of the example hub but its manifest (a repo without one)."""
    return {
        p.relative_to(example_hub).as_posix(): p.read_bytes()
        for p in sorted(example_hub.rglob("*"))
        if p.is_file() and p.name != "ONNX_HUB_MANIFEST.json"
    }
