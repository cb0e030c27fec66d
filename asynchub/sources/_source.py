"""The :class:`Source` value shared by every kind of repo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from ..manifest import check_relative_path

__all__ = ("MANIFEST_NAME", "Source")

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"


@dataclass(frozen=True)
class Source:
    """A resolved repo: where its manifest is and where its files are.

    Attributes:
        spec: The canonical repo string (used for trust decisions and messages).
        kind: ``github``, ``http``, ``local`` or ``hf``.
        manifest_url: URL of ``ONNX_HUB_MANIFEST.json`` (``file://`` when local).
        file_bases: Base URLs (ending in ``/``) tried in order for every file.
        official: True for the official ``onnx/models`` zoo (any ref).
        trusted_by_default: True when onnx.hub trusted it without asking.
    """

    spec: str
    kind: Literal["github", "http", "local", "hf"]
    manifest_url: str
    file_bases: tuple[str, ...]
    official: bool = False
    trusted_by_default: bool = False

    def file_urls(self, path: str) -> tuple[str, ...]:
        """URLs for a manifest path, in order of preference; the path is checked."""
        quoted = quote(check_relative_path(path), safe="/")
        return tuple(base + quoted for base in self.file_bases)
