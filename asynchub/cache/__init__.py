"""What is kept on disk: layout, manifests, trust list, archives, scan and admin.

The package's face: every name other packages use is listed here and loaded on first
use (PEP 562), so importing one module of the package does not import the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._admin import RemoveResult, remove_model
    from ._archive import extract_tarball, find_model_folder
    from ._layout import (
        cache_path,
        check_writable_root,
        ensure_verified,
        is_regular,
        mark_verified,
        os_error,
        sha256_file,
        write_markers,
    )
    from ._manifests import ManifestStore
    from ._scan import CachedItem, list_cache
    from ._trust import (
        Confirm,
        add_trusted,
        admit,
        is_allowlisted,
        load_persisted,
        remove_trusted,
        trusted_list_path,
    )

_LAZY = {
    "CachedItem": "._scan",
    "ManifestStore": "._manifests",
    "RemoveResult": "._admin",
    "Confirm": "._trust",
    "add_trusted": "._trust",
    "admit": "._trust",
    "cache_path": "._layout",
    "check_writable_root": "._layout",
    "ensure_verified": "._layout",
    "extract_tarball": "._archive",
    "find_model_folder": "._archive",
    "is_allowlisted": "._trust",
    "is_regular": "._layout",
    "list_cache": "._scan",
    "load_persisted": "._trust",
    "mark_verified": "._layout",
    "os_error": "._layout",
    "remove_model": "._admin",
    "remove_trusted": "._trust",
    "sha256_file": "._layout",
    "trusted_list_path": "._trust",
    "write_markers": "._layout",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = (
    "CachedItem",
    "ManifestStore",
    "RemoveResult",
    "Confirm",
    "add_trusted",
    "admit",
    "cache_path",
    "check_writable_root",
    "ensure_verified",
    "extract_tarball",
    "find_model_folder",
    "is_allowlisted",
    "is_regular",
    "list_cache",
    "load_persisted",
    "mark_verified",
    "os_error",
    "remove_model",
    "remove_trusted",
    "sha256_file",
    "trusted_list_path",
    "write_markers",
)
