"""Run code written for the removed ``onnx.hub`` unchanged, after one added line::

    import asynchub.compat; asynchub.compat.install()

    from onnx import hub          # or: import onnx.hub
    model = hub.load("mnist")

:func:`install` registers :mod:`asynchub.hub` as ``onnx.hub`` (in ``sys.modules``
and as the ``hub`` attribute of the ``onnx`` package), replacing any ``onnx.hub``
an older onnx still ships. Besides the documented functions, old scripts touched
``hub._ONNX_HUB_DIR`` (onnx's ``workflow_scripts/test_model_zoo.py``) and
``hub._verify_repo_ref(repo)`` (onnx's ``hub_test.py``); both exist.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ("install", "uninstall")


def install() -> ModuleType:
    """Make ``import onnx.hub`` and ``from onnx import hub`` give asynchub's hub.

    Idempotent; returns the module. Raises ImportError if onnx is not installed.
    """
    import onnx

    from . import hub

    sys.modules["onnx.hub"] = hub
    onnx.hub = hub  # type: ignore[attr-defined]
    return hub


def uninstall() -> None:
    """Undo :func:`install` (for tests): ``onnx.hub`` is no longer asynchub's."""
    from . import hub

    if sys.modules.get("onnx.hub") is hub:
        del sys.modules["onnx.hub"]
    onnx = sys.modules.get("onnx")
    if onnx is not None and getattr(onnx, "hub", None) is hub:
        delattr(onnx, "hub")
