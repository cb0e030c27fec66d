"""File names Windows cannot hold, refused everywhere.

``CON``, ``NUL.onnx``, ``com1.tar.gz`` and the rest open a device on Windows instead
of a file; ``<>"|?*`` are invalid there; a trailing dot or space is silently dropped
(so ``a.`` and ``a`` collide). Refusing them on every system keeps a manifest, a
mirror or an extracted tarball usable on all of them, and means no name in a hostile
manifest or archive can reach a Windows device.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ("fold_key", "windows_name_problem")

_DEVICE = re.compile(r"^(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])$", re.IGNORECASE)
_FORBIDDEN = frozenset('<>"|?*')


def windows_name_problem(segment: str) -> str | None:
    """Why one path segment cannot be a Windows file name, or None."""
    if _DEVICE.match(segment.split(".")[0].rstrip(" ")):
        return f"{segment!r} names a Windows device"
    if _FORBIDDEN.intersection(segment):
        return 'a segment contains one of <>"|?* (not allowed on Windows)'
    if segment.endswith((".", " ")):
        return "a segment ends with a dot or a space (Windows drops it)"
    return None


def fold_key(name: str) -> str:
    """The key two names share when a case-insensitive file system may confuse them.

    ``casefold()`` alone misses pairs that NTFS's upcase table joins: dotless
    ``ı`` and ``i`` (both upcase to ``I``), ``ſ`` and ``s``. Upper-casing first and
    then case-folding joins every pair that either mapping joins (NFC first, as
    APFS and NTFS compare canonically equivalent names alike). It may join more
    than a given file system does (``ß`` and ``ss``): refusing such a pair is the
    safe side.
    """
    return unicodedata.normalize("NFC", name).upper().casefold()
