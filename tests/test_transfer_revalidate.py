"""The warm start's revalidation without aiohttp (:mod:`asynchub._transfer.revalidate`).

A conditional GET that comes before the engine's session is open goes over one plain
connection, and only a ``304`` is taken from it. Each test here tries to make that
shortcut do something the normal request would not: take another answer, skip a
rule (proxy, offline, TLS, credentials), read without bound, wait without bound,
or send a header the caller did not mean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from asynchub._transfer import Engine
from asynchub._transfer.netenv import NetEnv
from asynchub._transfer.revalidate import HEAD_LIMIT, revalidate
from asynchub.errors import OfflineCacheMissError, TLSError

from .harness import (
    Ctx,
    Handler,
    Server,
    certificate,
    fast_config,
    file_server,
    redirect,
    serve,
    server_tls,
)
from .hub_server import HubServer
from .test_cli import subprocess_env

__all__ = ("certificate", "file_server")  # fixtures

pytestmark = pytest.mark.anyio

DATA = b'{"models": []}'
TAG = '"v1"'


def _conditional(tag: str = TAG) -> dict[str, str]:
    return {"If-None-Match": tag}


def _revalidated(tag: str) -> Handler:
    """A correct server of DATA with ETag ``tag``: 304 to a matching If-None-Match."""
    full = serve(DATA, etag=tag)

    async def handler(ctx: Ctx) -> None:
        if ctx.request.headers.get("If-None-Match") == tag:
            await ctx.send(304, {"ETag": tag})
        else:
            await full(ctx)

    return handler


async def test_a_304_before_the_session_opens_takes_one_plain_request(
    file_server: Server,
) -> None:
    url = file_server.route("/m.json", _revalidated(TAG))
    config = fast_config()
    async with Engine(config) as engine:
        got = await engine.get_bytes(url, headers=_conditional())
    assert (got.status, got.body, got.url) == (304, b"", url)
    assert got.headers["etag"] == TAG  # case-insensitive, like aiohttp's
    (asked,) = file_server.log("/m.json")
    assert asked.header("if-none-match") == TAG
    assert asked.header("user-agent") == config.user_agent
    assert asked.header("accept-encoding") == "identity"
    assert asked.header("connection") == "close"


async def test_a_header_the_caller_gives_replaces_the_default_once(
    file_server: Server,
) -> None:
    url = file_server.route("/m.json", _revalidated(TAG))
    headers = {**_conditional(), "user-agent": "mine/1"}
    assert await revalidate(url, headers, NetEnv(), fast_config()) is not None
    (asked,) = file_server.log("/m.json")
    assert asked.headers.getall("User-Agent") == ["mine/1"]


async def test_a_changed_copy_is_fetched_again_the_normal_way(
    file_server: Server,
) -> None:
    url = file_server.route("/m.json", _revalidated('"v2"'))
    async with Engine(fast_config()) as engine:
        got = await engine.get_bytes(url, headers=_conditional())
    assert (got.status, got.body, got.headers["etag"]) == (200, DATA, '"v2"')
    probe, full = file_server.log("/m.json")
    assert probe.header("connection") == "close"
    assert full.header("connection") != "close"  # aiohttp's pooled connection


async def test_a_redirect_is_followed_only_by_the_normal_request(
    file_server: Server,
) -> None:
    """The probe never follows a Location: the engine's redirect rules do."""
    file_server.route("/real.json", _revalidated(TAG))
    url = file_server.route("/m.json", redirect("/real.json"))
    async with Engine(fast_config()) as engine:
        got = await engine.get_bytes(url, headers=_conditional())
    assert got.status == 304 and got.url == file_server.url("/real.json")
    assert len(file_server.log("/m.json")) == 2  # the probe's, then aiohttp's
    assert len(file_server.log("/real.json")) == 1


async def test_offline_mode_sends_nothing(file_server: Server) -> None:
    url = file_server.route("/m.json", _revalidated(TAG))
    async with Engine(fast_config(offline=True)) as engine:
        with pytest.raises(OfflineCacheMissError):
            await engine.get_bytes(url, headers=_conditional())
    assert file_server.requests == []


async def test_a_proxy_in_the_environment_carries_the_request(
    file_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe does no proxying: with a proxy to use, it stands aside."""
    url = file_server.url("/m.json")
    with Server() as proxy:
        proxy.route(url, _revalidated(TAG))
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
        async with Engine(fast_config()) as engine:
            got = await engine.get_bytes(url, headers=_conditional())
        assert got.status == 304
        assert [r.path for r in proxy.requests] == [url]
    assert file_server.requests == []


async def test_netrc_and_hub_token_go_to_their_origin_as_they_would(
    file_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    plain = file_server.route("/m.json", _revalidated(TAG))
    hub = file_server.route("/hf/m.json", _revalidated(TAG))
    token = fast_config(hf_endpoint=file_server.url(""), hf_token=SecretStr("tok"))
    async with Engine(fast_config()) as engine:
        assert (await engine.get_bytes(plain, headers=_conditional())).status == 304
    async with Engine(token) as engine:
        assert (await engine.get_bytes(hub, headers=_conditional())).status == 304
    async with Engine(fast_config()) as engine:
        own = {**_conditional(), "Authorization": "Bearer mine"}
        assert (await engine.get_bytes(plain, headers=own)).status == 304
    netrc_sent, own_sent = file_server.log("/m.json")
    assert (netrc_sent.header("authorization") or "").startswith("Basic ")
    assert own_sent.header("authorization") == "Bearer mine"  # never replaced
    assert file_server.log("/hf/m.json")[0].header("authorization") == "Bearer tok"


async def test_a_header_that_would_split_the_request_is_never_sent(
    file_server: Server,
) -> None:
    """An ETag read back from a tampered cache entry carries CR LF: the probe
    refuses to send it (the normal request then refuses it too)."""
    url = file_server.route("/m.json", _revalidated(TAG))
    planted = {"If-None-Match": f"{TAG}\r\nX-Injected: 1"}
    assert await revalidate(url, planted, NetEnv(), fast_config()) is None
    assert (
        await revalidate(url, {"If-None-Match": "\u2603"}, NetEnv(), fast_config())
        is None
    )
    assert file_server.requests == []


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 3040 Not Modified\r\n\r\n",
        b"HTTP/2 304\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nX-Pad: " + b"a" * (2 * HEAD_LIMIT) + b"\r\n\r\n",
        b"HTTP/1.1 304 Not",  # then the connection closes mid-line
    ],
    ids=["4-digit", "http2-line", "200", "endless-head", "cut-short"],
)
async def test_only_a_well_formed_304_head_is_taken(
    file_server: Server, head: bytes
) -> None:
    async def answer(ctx: Ctx) -> None:
        await ctx.raw(head)
        await ctx.flushed()

    url = file_server.route("/m.json", answer)
    assert await revalidate(url, _conditional(), NetEnv(), fast_config()) is None


async def test_a_304_without_a_reason_phrase_is_taken(file_server: Server) -> None:
    async def answer(ctx: Ctx) -> None:
        await ctx.raw(b"HTTP/1.1 304\r\nETag: " + TAG.encode() + b"\r\n\r\n")
        await ctx.flushed()

    url = file_server.route("/m.json", answer)
    got = await revalidate(url, _conditional(), NetEnv(), fast_config())
    assert got is not None and got.headers["ETag"] == TAG


async def test_a_silent_server_costs_one_read_timeout(file_server: Server) -> None:
    async def silent(ctx: Ctx) -> None:
        await asyncio.sleep(5)

    url = file_server.route("/m.json", silent)
    started = time.monotonic()
    got = await revalidate(url, _conditional(), NetEnv(), fast_config(read=0.3))
    assert got is None and time.monotonic() - started < 2.0


async def test_a_refused_connection_gives_way_at_once() -> None:
    with Server() as gone:
        url = gone.url("/m.json")
    started = time.monotonic()
    assert await revalidate(url, _conditional(), NetEnv(), fast_config()) is None
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/m.json", "http://u:p@127.0.0.1/m"])
async def test_urls_the_probe_does_not_handle_go_the_normal_way(url: str) -> None:
    assert await revalidate(url, _conditional(), NetEnv(), fast_config()) is None


async def test_tls_is_verified_with_host_names(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Untrusted: one handshake, no HTTP byte, a TLSError (not a second try through
    aiohttp). Trusted (SSL_CERT_FILE is read when the probe connects): one 304. A
    name the certificate does not hold: refused too."""
    with Server(server_tls(*certificate)) as srv:
        url = srv.route("/m.json", _revalidated(TAG))
        async with Engine(fast_config()) as engine:
            with pytest.raises(TLSError, match="TLS verification failed"):
                await engine.get_bytes(url, headers=_conditional())
        assert (srv.handshakes, srv.requests) == (1, [])
        monkeypatch.setenv("SSL_CERT_FILE", str(certificate[0]))
        got = await revalidate(url, _conditional(), NetEnv(), fast_config())
        assert got is not None and got.status == 304
        named = url.replace("127.0.0.1", "localhost")  # not a name the cert holds
        with pytest.raises(TLSError):
            await revalidate(named, _conditional(), NetEnv(), fast_config())
        assert len(srv.requests) == 1


_WARM_LOAD = """
import json, sys
from asynchub import hub
model = hub.load("TinyNet", repo=sys.argv[1], silent=True)
print(json.dumps({"loaded": model is not None, "aiohttp": "aiohttp" in sys.modules}))
"""


def test_a_warm_hub_load_in_a_fresh_process_imports_no_aiohttp(
    hub_server: HubServer, onnx_home: Path
) -> None:
    """The user-level promise: the second run of a script makes one request (the
    manifest's 304) and never loads the HTTP client stack."""
    repo = f"{hub_server.base}/plain/"
    env = {**subprocess_env(), "ONNX_HOME": str(onnx_home)}
    runs = [_run(_WARM_LOAD, repo, env) for _ in range(2)]
    assert runs[0] == {"loaded": True, "aiohttp": True}  # cold: files to fetch
    assert runs[1] == {"loaded": True, "aiohttp": False}
    manifests = [p for _, p in hub_server.requests if p.endswith("MANIFEST.json")]
    assert len(manifests) == 2 and len(hub_server.file_requests()) == 1


def _run(code: str, repo: str, env: dict[str, str]) -> object:
    done = subprocess.run(
        [sys.executable, "-c", code, repo],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_an_endless_head_is_read_no_further_than_the_limit(
    file_server: Server,
) -> None:
    """Memory does not follow what a server sends: 16 MiB of one header line, and
    the probe stops reading at its limit and gives way."""
    endless = b"a" * (16 * 1024 * 1024)

    async def answer(ctx: Ctx) -> None:
        await ctx.raw(b"HTTP/1.1 304 Not Modified\r\nX-Pad: ")
        with contextlib.suppress(ConnectionError):  # the probe hangs up
            await ctx.body(endless)

    url = file_server.route("/m.json", answer)
    assert await revalidate(url, _conditional(), NetEnv(), fast_config()) is None
    await asyncio.sleep(0.2)
    (asked,) = file_server.log("/m.json")
    assert asked.sent < 8 * 1024 * 1024  # the limit, plus the sockets' buffers
