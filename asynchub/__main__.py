"""``python -m asynchub``: the same command as ``asynchub``."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
