"""The process-wide defaults behind ``hub.set_dir`` and the module-level functions.

Only this module holds global state: the cache folder set by ``set_dir``. Everything
else reads the environment when called, through :func:`default_config`.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .config import HubConfig

__all__ = ("default_config", "get_dir", "set_dir")

_lock = threading.Lock()
_dir_override: Path | None = None


def set_dir(new_dir: str) -> None:
    """Set the cache location used by the module-level functions.

    Args:
        new_dir: Location of the new model hub cache.
    """
    global _dir_override
    with _lock:
        _dir_override = Path(new_dir)


def get_dir() -> str:
    """The cache location: ``set_dir``'s, else ``$ONNX_HOME/hub``, else
    ``$XDG_CACHE_HOME/onnx/hub``, else ``~/.cache/onnx/hub`` (read now)."""
    return str(default_config().resolved_cache_dir())


def default_config() -> HubConfig:
    """``HubConfig.from_env()`` with the cache folder resolved (``set_dir`` wins)."""
    with _lock:
        override = _dir_override
    config = HubConfig.from_env()
    return config.model_copy(
        update={"cache_dir": override or config.resolved_cache_dir()}
    )


def reset() -> None:
    """Forget ``set_dir`` (for tests)."""
    global _dir_override
    with _lock:
        _dir_override = None
