"""Did you mean …": the closest names to a misspelled one (difflib, no index).

difflib is imported when a name is missing, not when a command starts.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ("closest", "did_you_mean")


def closest(word: str, choices: Iterable[str], limit: int = 3) -> list[str]:
    """Up to ``limit`` of ``choices`` that look like ``word`` (case-insensitive),
    best first, each in its own spelling."""
    import difflib

    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(choice.casefold(), choice)
    found = difflib.get_close_matches(word.casefold(), by_folded, n=limit, cutoff=0.6)
    return [by_folded[f] for f in found]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'A' or 'B'?"`` for the closest choices, or ``""``."""
    found = [repr(name) for name in closest(word, choices)]
    if not found:
        return ""
    names = found[0] if len(found) == 1 else f"{', '.join(found[:-1])} or {found[-1]}"
    return f"; did you mean {names}?"
