"""Hardening round 2, network/manifest/server half of issue 9 (items 3-6, 8, 9).

Every test talks to real sockets on 127.0.0.1 (fault servers, ``asynchub serve``,
raw sockets that accept and stay silent) or runs the real CLI in a subprocess.
TESTING.md's "Hardening round 2" section lists each test with the outcome before
and after its fix.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from asynchub import AsyncHub

from .fault_servers import (
    FaultServer,
    entry,
    fast_config,
    redirect,
    serve,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

PATH = "vision/tiny/a.onnx"
ROUTE = f"/hub/{PATH}"
DATA = random.Random(9).randbytes(50_000)


async def _download(server: FaultServer, cache: Path, **config: object) -> Path:
    async with AsyncHub(fast_config(cache, **config)) as hub:
        path = await hub.download_model("a", repo=server.hub_url, silent=True)
    assert path is not None
    return path


# item 6: netrc credentials only to their origin ------------------------------------


async def test_netrc_credentials_not_sent_to_another_port_of_the_same_host(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any local user can listen on a port of 127.0.0.1: a redirect from
    127.0.0.1:P1 to 127.0.0.1:P2 must not carry P1's netrc credentials."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with FaultServer() as home, FaultServer() as other:
        home.hub({PATH: DATA})
        other.route("/cdn/a.onnx", serve(DATA))
        home.route(ROUTE, redirect(f"http://127.0.0.1:{other.port}/cdn/a.onnx"))
        path = await _download(home, clean_env)
        assert path.read_bytes() == DATA
        assert home.log(ROUTE)[0].header("authorization") == "Basic YWxpY2U6czNjcmV0"
        assert other.log("/cdn/a.onnx")[0].header("authorization") is None


async def test_netrc_credentials_come_back_when_a_redirect_returns_to_origin(
    clean_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoped to the origin, not to the first hop: P1 -> P2 -> P1 authenticates
    at P1 again (the origin they were added for), never at P2."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with FaultServer() as home, FaultServer() as other:
        home.hub({PATH: DATA})
        home.route("/back/a.onnx", serve(DATA))
        other.route("/hop", redirect(f"{home.base}/back/a.onnx"))
        home.route(ROUTE, redirect(f"{other.base}/hop"))
        await _download(home, clean_env)
        assert other.log("/hop")[0].header("authorization") is None
        assert home.log("/back/a.onnx")[0].header("authorization") is not None
