"""Hub clients: :class:`AsyncHub` (async) and :class:`Hub` (its sync twin).

A client holds a :class:`~asynchub.config.HubConfig`, one HTTP session and one
transfer engine, so every call made through it shares one connection budget and
concurrent requests for the same file share one download. Services should create
one client and keep it::

    async with AsyncHub() as hub:
        model = await hub.load("mnist")

The module-level functions of :mod:`asynchub.hub` use a default client.
"""

from __future__ import annotations

from ..cache import Confirm
from ._async import AsyncHub, prompt_stdin
from ._sync_twin import Hub

__all__ = ("AsyncHub", "Confirm", "Hub", "prompt_stdin")
