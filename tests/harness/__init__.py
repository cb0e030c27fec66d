"""The test server harness: one HTTP(S) server on real sockets, composable
behaviours, one request log.

- :mod:`.server`: :class:`Server` (scripts per path, rate limits, TLS, the log);
- :mod:`.ctx`: :class:`Ctx`, the request a behaviour answers (raw bytes or aiohttp);
- :mod:`.behaviours`: scripted pieces (:func:`serve`, :func:`reset_after`, ...);
- :mod:`.files`: :class:`File` with :class:`Behavior` knobs (:meth:`Server.add`);
- :mod:`.http`: ranges, validators, dates, stall and TCP reset, shared by all;
- :mod:`.log`: :class:`Request`, :class:`PathStats`;
- :mod:`.loop`: a loop in a thread and a listening helper (the other fakes use it);
- :mod:`.config`: :func:`fast_config`; :mod:`.helpers`: digests, entries, cache
  listings, certificates; :mod:`.fixtures`: pytest fixtures.
"""

from .behaviours import (
    chunked,
    close_without_response,
    gzip_encoded,
    html_page,
    ignore_range,
    lfs_pointer,
    overlong,
    paced,
    redirect,
    reset_after,
    serve,
    stall,
    status,
    trickle,
    truncated,
    wrong_range,
)
from .config import PART, fast_config, split_limits
from .ctx import Ctx, Handler
from .files import Behavior, File
from .fixtures import certificate, file_server
from .helpers import (
    cache_files,
    entry,
    self_signed_cert,
    server_tls,
    sha,
    temp_files,
    tree,
)
from .http import choose_range, http_date
from .log import PathStats, Request
from .loop import Background, listen
from .server import Server

__all__ = (
    "PART",
    "Background",
    "Behavior",
    "Ctx",
    "File",
    "Handler",
    "PathStats",
    "Request",
    "Server",
    "cache_files",
    "certificate",
    "chunked",
    "choose_range",
    "close_without_response",
    "entry",
    "fast_config",
    "file_server",
    "gzip_encoded",
    "html_page",
    "http_date",
    "ignore_range",
    "lfs_pointer",
    "listen",
    "overlong",
    "paced",
    "redirect",
    "reset_after",
    "self_signed_cert",
    "serve",
    "server_tls",
    "sha",
    "split_limits",
    "stall",
    "status",
    "temp_files",
    "tree",
    "trickle",
    "truncated",
    "wrong_range",
)
