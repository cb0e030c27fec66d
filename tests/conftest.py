"""Shared fixtures: a clean environment, the temp cache folder, a generated example
zoo, a local hub server."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from asynchub import _defaults
from asynchub._fs import stamp as stamp_module

from .hub_server import HubServer

_NOWHERE = "http://127.0.0.1:9"  # the discard port: connections are refused at once

# Every environment variable asynchub reads, or that the libraries it uses read on its
# behalf (urllib's proxies, OpenSSL's certificates). tests/test_env_isolation.py
# scans the package source and fails if it reads a name this does not clear.
ENV_PREFIXES = ("ASYNCHUB_", "HF_", "HUGGING_FACE_")
ENV_NAMES = frozenset(
    {
        "ONNX_HOME",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "NETRC",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "NO_COLOR",
        "FORCE_COLOR",
        "COLUMNS",
        "LINES",
    }
)


def is_package_env(name: str) -> bool:
    """Whether the autouse fixture removes ``name`` before each test."""
    upper = name.upper()
    return (
        upper.startswith(ENV_PREFIXES)
        or upper in ENV_NAMES
        or upper.endswith("_PROXY")  # http_proxy, HTTPS_PROXY, NO_PROXY, all_proxy...
    )


@pytest.fixture
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temp folder ``ONNX_HOME`` points at during a test (a fresh one each)."""
    return tmp_path_factory.mktemp("onnx_home")


@pytest.fixture(autouse=True)
def clean_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
    onnx_home: Path,
) -> None:
    """No variable the package reads leaks in from the user's shell, every endpoint
    points at a closed local port unless a test sets it, the user's ~/.netrc, token
    and config folders are out of reach, and ``ONNX_HOME`` is a fresh temp folder."""
    for name in list(os.environ):
        if is_package_env(name):
            monkeypatch.delenv(name, raising=False)
    for name in ("GITHUB_RAW", "GITHUB_MEDIA", "HF_ENDPOINT", "GITHUB_API"):
        monkeypatch.setenv(f"ASYNCHUB_{name}", _NOWHERE)  # no test reaches the internet
    monkeypatch.setenv("ONNX_HOME", str(onnx_home))
    private = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("NETRC", str(private / "netrc"))  # absent: no credentials
    monkeypatch.setenv("XDG_CONFIG_HOME", str(private / "config"))
    monkeypatch.setenv("HF_HOME", str(private / "huggingface"))
    _defaults.reset()


@pytest.fixture
def cache_dir(onnx_home: Path) -> Path:
    """The default cache folder of a test: ``$ONNX_HOME/hub`` (not created)."""
    return onnx_home / "hub"


@pytest.fixture(scope="session")
def example_hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated hub of tiny real ONNX models, tarballs and a manifest."""
    from asynchub.hosting._example import build_example_hub

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


@pytest.fixture
def no_stamps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system without user extended attributes: verified files are recorded
    by marker files in ``.asynchub/verified/``, as on macOS, Windows or FAT."""
    monkeypatch.setattr(stamp_module, "_AVAILABLE", False)


@pytest.fixture
def stamps(tmp_path: Path) -> None:
    """Skip where the temp folder's file system has no user extended attributes."""
    probe = tmp_path / "stamp-probe"
    probe.write_bytes(b"")
    if not stamp_module.stamp_path(probe, "0" * 64):
        pytest.skip("no user extended attributes on the temp folder")
    probe.unlink()
