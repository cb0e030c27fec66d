"""The suite is isolated from the user's shell: every variable the package reads is
removed before each test (tests/conftest.py), and this scan keeps that list complete."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import asynchub

from .conftest import is_package_env

PACKAGE = Path(asynchub.__file__).resolve().parent
_ENV_NAME = re.compile(r"^(?:[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|NETRC)$")  # FOO_BAR
_READERS = {"get", "getenv", "pop", "setdefault", "environ"}


def _candidates(node: ast.AST) -> list[ast.expr]:
    """Expressions that name a variable the way environment reads do:
    ``env.get("X")``, ``os.getenv("X")``, ``env["X"]``, ``"X" in env``, or the keys
    of a table of names."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.args[:1] if node.func.attr in _READERS else []
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.args[:1] if node.func.id == "getenv" else []
    if isinstance(node, ast.Subscript):
        return [node.slice]
    if isinstance(node, ast.Compare) and isinstance(node.ops[0], ast.In):
        return [node.left]
    if isinstance(node, ast.Dict):
        return [k for k in node.keys if k is not None]
    return []


def _env_names(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        for expr in _candidates(node):
            value = expr.value if isinstance(expr, ast.Constant) else None
            if isinstance(value, str) and _ENV_NAME.match(value):
                yield value


def _package_env_names() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        names.update(_env_names(ast.parse(path.read_text(encoding="utf-8"))))
    return names


def test_scan_finds_the_variables_the_config_documents() -> None:
    """The scan is not vacuous: it finds names read in config and the network layer."""
    names = _package_env_names()
    assert {"ONNX_HOME", "XDG_CACHE_HOME", "ASYNCHUB_OFFLINE", "NETRC"} <= names


def test_every_variable_the_package_reads_is_cleared() -> None:
    missed = sorted(n for n in _package_env_names() if not is_package_env(n))
    assert missed == [], f"add these to tests/conftest.py's ENV_NAMES: {missed}"


@pytest.mark.parametrize(
    "name", ["NO_PROXY", "no_proxy", "HTTPS_PROXY", "all_proxy", "SSL_CERT_FILE"]
)
def test_shell_values_do_not_reach_a_test(name: str) -> None:
    """Proxies and certificates from the user's shell are gone (both cases)."""
    assert name not in os.environ
