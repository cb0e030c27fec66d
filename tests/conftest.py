"""Shared fixtures: a clean environment, a generated example zoo, a local hub server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynchub import _defaults

from .hub_server import HubServer

_NOWHERE = "http://127.0.0.1:9"  # the discard port: connections are refused at once
_OUR_VARS = ("ONNX_HOME", "XDG_CACHE_HOME", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
_ALSO_READ = ("HF_HUB_DISABLE_PROGRESS_BARS",)  # conventions asynchub honours


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def clean_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """No asynchub/onnx variables leak in, every endpoint points at a closed local
    port unless a test sets it, and the cache is a fresh temp folder."""
    for name in list(os.environ):
        if name.startswith("ASYNCHUB_") or name.upper() in _OUR_VARS + _ALSO_READ:
            monkeypatch.delenv(name, raising=False)
    for name in ("GITHUB_RAW", "GITHUB_MEDIA", "HF_ENDPOINT", "GITHUB_API"):
        monkeypatch.setenv(f"ASYNCHUB_{name}", _NOWHERE)  # no test reaches the internet
    home = tmp_path_factory.mktemp("onnx_home")
    monkeypatch.setenv("ONNX_HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))
    _defaults.reset()
    yield home / "hub"


@pytest.fixture(scope="session")
def example_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated hub of tiny real ONNX models, tarballs and a manifest."""
    from asynchub._example_hub import build_example_hub

    return build_example_hub(tmp_path_factory.mktemp("example_hub"))


@pytest.fixture(scope="session")
def _hub_server(example_hub: Path) -> Iterator[HubServer]:
    server = HubServer(example_hub).start()
    yield server
    server.stop()


@pytest.fixture
def hub_server(
    _hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[HubServer]:
    """The example hub served over HTTP, with asynchub's endpoints pointed at it."""
    _hub_server.requests.clear()
    _hub_server.down.clear()
    for name, value in _hub_server.env().items():
        monkeypatch.setenv(name, value)
    yield _hub_server
    _hub_server.down.clear()
