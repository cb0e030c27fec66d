"""What a mirror or cache fill fetches (:class:`Selection`), and how (:class:`RunArgs`).

A selection is one frozen value that the Python API, the CLI and the report share,
so adding a filter means changing this module and the planner, nothing else. The
module functions and :class:`~asynchub.client.AsyncHub`'s ``mirror``/``download``
also take its fields as keyword shortcuts (``mirror(dest, tags=["vision"])``, as
before); :data:`RunArgs` lists those keywords once, and :func:`split_args` checks
them, so an unknown keyword is a ``TypeError`` that names the closest one.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from .._suggest import did_you_mean
from ._plan import Shard, parse_shard

if TYPE_CHECKING:
    from .._transfer import ProgressCallback
    from ..config import HubConfig
    from ._report import PlanCallback

__all__ = ("HubRunArgs", "RunArgs", "Selection", "Switches", "split_args")


@dataclass(frozen=True)
class Selection:
    """The files a run fetches: entries of the manifest, then files of theirs.

    Args:
        models: Model names to keep (case-insensitive); None keeps all.
        tags: Keep models with any of these tags; None keeps all.
        opsets: Keep these opsets; None keeps all.
        latest_only: Keep only each model's highest selected opset.
        with_data: Also fetch each model's ``model_with_data`` tarball; None means
            the target's default (a mirror: yes; the cache: no).
        include: fnmatch patterns (``*`` also matches ``/``) on each file's manifest
            path; when given, only files matching one are fetched.
        exclude: Patterns of files to leave out. A model whose ``.onnx`` file is
            left out is left out of a mirror's manifest too.
        shard: ``(I, N)`` or ``"I/N"``: only shard I (0-based) of N.

    Raises:
        ConfigError: ``shard`` is malformed.
    """

    models: Sequence[str] | None = None
    tags: Sequence[str] | None = None
    opsets: Sequence[int] | None = None
    latest_only: bool = False
    with_data: bool | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] | None = None
    shard: Shard | str | None = None

    def __post_init__(self) -> None:
        """Copy the caller's sequences (a later change to them changes nothing)."""
        fixed = {
            "models": _strings(self.models),
            "tags": _strings(self.tags),
            "opsets": None
            if self.opsets is None
            else tuple(int(o) for o in self.opsets),
            "include": _strings(self.include),
            "exclude": _strings(self.exclude),
            "shard": parse_shard(self.shard),
        }
        for name, value in fixed.items():
            object.__setattr__(self, name, value)  # frozen: set once, here

    @property
    def shard_pair(self) -> Shard | None:
        """``shard`` as ``(I, N)`` (normalised in ``__post_init__``)."""
        return (
            self.shard if not isinstance(self.shard, str) else parse_shard(self.shard)
        )

    def data_for(self, mode_default: bool) -> bool:
        """Whether tarballs are fetched, with ``mode_default`` when unset."""
        return mode_default if self.with_data is None else self.with_data

    def wants(self, path: str) -> bool:
        """True when ``path`` passes ``include`` (any) and ``exclude`` (none)."""
        if self.include is not None and not any(
            fnmatch.fnmatchcase(path, pattern) for pattern in self.include
        ):
            return False
        return not any(fnmatch.fnmatchcase(path, p) for p in self.exclude or ())

    @property
    def filters_paths(self) -> bool:
        """True when ``include`` or ``exclude`` can leave a file out."""
        return self.include is not None or bool(self.exclude)


def _strings(values: Iterable[str] | None) -> tuple[str, ...] | None:
    return None if values is None else tuple(values)


@dataclass(frozen=True)
class Switches:
    """How a run behaves, beside what it selects.

    Args:
        verify_existing: Re-hash files already in place instead of trusting their
            verified markers.
        check_space: Refuse to start when the folder has less free space than the
            bytes still to fetch.
        dry_run: Plan only: report what would be fetched, fetch nothing.
        silent: Use a repo that is not on the trusted list (compat trust mode).
        force: Fetch every selected file again, even if it is in place.
    """

    verify_existing: bool = False
    check_space: bool = True
    dry_run: bool = False
    silent: bool = False
    force: bool = False


class HubRunArgs(TypedDict, total=False):
    """The keywords of :meth:`AsyncHub.mirror` and :meth:`AsyncHub.download`: the
    fields of :class:`Selection` and :class:`Switches`, ``progress`` and ``on_plan``."""

    selection: Selection
    models: Sequence[str] | None
    tags: Sequence[str] | None
    opsets: Sequence[int] | None
    latest_only: bool
    with_data: bool | None
    include: Sequence[str] | None
    exclude: Sequence[str] | None
    shard: Shard | str | None
    verify_existing: bool
    check_space: bool
    dry_run: bool
    silent: bool
    force: bool
    progress: ProgressCallback | None
    on_plan: PlanCallback | None


class RunArgs(HubRunArgs, total=False):
    """The module functions' keywords: :class:`HubRunArgs` and ``config``."""

    config: HubConfig | None


_SELECTION = {f.name for f in dataclasses.fields(Selection)}
_SWITCHES = {f.name for f in dataclasses.fields(Switches)}
_OWN = {"selection", "progress", "on_plan"}


def split_args(
    function: str, args: Mapping[str, Any]
) -> tuple[Selection, Switches, dict[str, Any]]:
    """The selection, the switches and the rest (progress, on_plan).

    Raises:
        TypeError: An unknown keyword (with the closest known one), or
            ``selection=`` together with a selection shortcut.
    """
    for name in args:
        if name not in _SELECTION | _SWITCHES | _OWN:
            hint = did_you_mean(name, sorted(_SELECTION | _SWITCHES | _OWN))
            raise TypeError(
                f"{function}() got an unexpected keyword argument {name!r}{hint}"
            )
    shortcuts = {k: v for k, v in args.items() if k in _SELECTION}
    selection = args.get("selection")
    if selection is not None and shortcuts:
        raise TypeError(
            f"{function}() takes selection= or {', '.join(sorted(shortcuts))}=, "
            "not both"
        )
    if selection is None:
        selection = Selection(**shortcuts)
    switches = Switches(**{k: v for k, v in args.items() if k in _SWITCHES})
    rest = {k: args[k] for k in ("progress", "on_plan") if k in args}
    return selection, switches, rest
