"""``python -m asynchub.cli``: the same as ``asynchub``."""

from ._main import main

raise SystemExit(main())
