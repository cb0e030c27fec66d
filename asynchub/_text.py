"""Text from the network made inert before it reaches a terminal.

Manifest fields (tags, io port names, paths), server reason phrases and URLs end
up in tables, progress labels, errors, logs and reports. :func:`plain` escapes every
character Python does not call printable (``str.isprintable``): C0 and C1 controls
(so no ESC sequences: OSC titles and hyperlinks, CSI screen clears), DEL, Unicode
format characters (BIDI overrides and isolates, zero-width marks), line and
paragraph separators and surrogates. Each becomes a visible escape (``\\x1b``,
``\\u202e``). The CLI prints the result with rich's markup and emoji codes off, so
``[link=...]`` or ``:warning:`` stay the characters they are.
"""

from __future__ import annotations

__all__ = ("plain",)


def plain(text: str, *, newlines: bool = False) -> str:
    """``text`` with non-printable characters escaped; ``newlines`` keeps ``\\n``."""
    if text.isprintable():
        return text
    return "".join(_escape(c, newlines) for c in text)


def _escape(char: str, newlines: bool) -> str:
    if char.isprintable() or (newlines and char == "\n"):
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
