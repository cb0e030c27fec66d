"""The file system, used safely: the private helpers every package writes through.

- :mod:`.safe`: folders and files inside the cache opened without following links;
- :mod:`.atomic`: the one atomic writer of small files (explicit fsync and mode);
- :mod:`.stamp`: a verified file's own record of its SHA-256 (an extended attribute);
- :mod:`.os_errors`: the one translation of an ``OSError`` into asynchub's errors;
- :mod:`.windows_names`: file names Windows cannot hold, refused everywhere.

Standard library only, so importing it costs nothing at start-up.
"""

from __future__ import annotations

from .atomic import write_atomic, write_if_changed, write_in
from .os_errors import os_error
from .safe import Folder, NotRegularFileError, open_regular, read_regular
from .stamp import is_stamped, stamp_fd, stamp_path
from .windows_names import fold_key, windows_name_problem

__all__ = (
    "Folder",
    "NotRegularFileError",
    "fold_key",
    "is_stamped",
    "open_regular",
    "os_error",
    "read_regular",
    "stamp_fd",
    "stamp_path",
    "windows_name_problem",
    "write_atomic",
    "write_if_changed",
    "write_in",
)
