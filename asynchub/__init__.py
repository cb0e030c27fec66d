"""asynchub: fast, verified, resumable downloads of ONNX models; onnx.hub's successor."""

from __future__ import annotations

__version__ = "0.1.0"
