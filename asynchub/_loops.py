"""Which event loop asynchub starts itself: asyncio's own, or uvloop when asked.

The choice is the CLI's: ``HubConfig.event_loop`` (``ASYNCHUB_EVENT_LOOP``) is
``"asyncio"`` by default, or ``"uvloop"`` (installed separately: ``pip install
uvloop``). Code that awaits the async API runs on its caller's loop, whatever that
is, and the sync API's background loop is asyncio's.

uvloop is not a dependency because it did not earn its place when measured: the
CPU of ``asynchub mirror`` was the same within noise on one 512 MiB file over 16
paced connections (4.62 against 4.65 s/GiB), 6% lower on 4 x 256 MiB, and within
the machine's noise on 2,000 small files, where most of the time is aiohttp's and
asynchub's Python per request and file, not the loop's (docs/design.md). Both
loops run the same code and the test suite runs the CLI on both.
"""

from __future__ import annotations

import importlib.util
from typing import Literal

from .errors import ConfigError

__all__ = ("EventLoopChoice", "wants_uvloop")

EventLoopChoice = Literal["asyncio", "uvloop"]


def wants_uvloop(choice: EventLoopChoice) -> bool:
    """Whether to start uvloop for ``choice``.

    Raises:
        ConfigError: ``"uvloop"`` was asked for and uvloop is not installed.
    """
    if choice != "uvloop":
        return False
    if importlib.util.find_spec("uvloop") is None:
        raise ConfigError(
            "ASYNCHUB_EVENT_LOOP is 'uvloop' but uvloop is not installed",
            hint="pip install uvloop, or unset ASYNCHUB_EVENT_LOOP",
        )
    return True
