"""asynchub: fast, verified, resumable ONNX model downloads; onnx.hub's successor."""

from __future__ import annotations

__version__ = "0.1.0"
