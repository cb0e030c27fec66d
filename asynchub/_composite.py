"""Load a preprocessing and a network model, and merge them (``load_composite_model``).

Every failure is an asynchub error: the first load that fails is raised as itself
(not inside an ExceptionGroup), a model declined at the trust prompt is a
:class:`~asynchub.errors.CompositeLoadError` (onnx.hub's RuntimeError), and models
that cannot be merged are a :class:`~asynchub.errors.CompositeMergeError`
(onnx.hub's ValueError).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import onnx
import onnx.compose
import onnx.version_converter

from .errors import CompositeLoadError, CompositeMergeError

__all__ = ("Loader", "load_pair", "merge_composite")

Loader = Callable[[str, str], Awaitable[onnx.ModelProto | None]]
"""Loads ``(model, repo)``; None when the repo was declined at the trust prompt."""

_DEFAULT = "ai.onnx"


def _versions(model: onnx.ModelProto) -> dict[str, int]:
    return {(e.domain or _DEFAULT): e.version for e in model.opset_import}


def _check_domains(
    net: dict[str, int], pre: dict[str, int], names: tuple[str, str]
) -> None:
    """Refuse when a non-default domain is imported at two different versions.

    onnx.hub compared the preprocessing version with itself here, so the check
    never fired and merge_models failed later with a less helpful error.
    """
    for domain in (net.keys() & pre.keys()) - {_DEFAULT}:
        if net[domain] != pre[domain]:
            raise CompositeMergeError(
                f"Can not merge {names[1]} and {names[0]} because they contain "
                f"different opset versions for domain {domain} ({pre[domain]} and "
                f"{net[domain]}). Only the default domain can be automatically "
                "converted to the highest version of the two."
            )


def _upgrade(
    model: onnx.ModelProto, version: int, ir_version: int, name: str
) -> onnx.ModelProto:
    """``model`` converted to opset ``version`` (and at least IR ``ir_version``)."""
    try:
        converted = onnx.version_converter.convert_version(model, version)
        converted.ir_version = max(converted.ir_version, ir_version)
        onnx.checker.check_model(converted)
    except Exception as err:  # onnx raises ConvertError, ValidationError, ...
        raise CompositeMergeError(
            f"Can not convert {name} to opset {version}: {err}"
        ) from err
    return converted


async def load_pair(
    load: Loader, network: tuple[str, str], preprocessing: tuple[str, str]
) -> tuple[onnx.ModelProto, onnx.ModelProto]:
    """Load ``(model, repo)`` pairs concurrently; the network and the preprocessing.

    The first failure cancels the other load and is raised as itself; when both
    fail, the preprocessing model's error (onnx.hub loaded it first).
    """
    loaded: dict[str, onnx.ModelProto | None] = {}
    failed: dict[str, Exception] = {}

    async def one(key: str, name: str, repo: str) -> None:
        try:
            loaded[key] = await load(name, repo)
        except Exception as err:  # re-raised below, outside the task group
            failed[key] = err
            group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        group.start_soon(one, "pre", *preprocessing)
        group.start_soon(one, "net", *network)
    for key in ("pre", "net"):
        if key in failed:
            raise failed[key]
    return _model(loaded, "net", network[0]), _model(loaded, "pre", preprocessing[0])


def _model(
    loaded: dict[str, onnx.ModelProto | None], key: str, name: str
) -> onnx.ModelProto:
    model = loaded.get(key)
    if model is None:
        which = "preprocessing" if key == "pre" else "network"
        raise CompositeLoadError(f"Could not load the {which} model: {name}")
    return model


def merge_composite(
    network: onnx.ModelProto,
    preprocessing: onnx.ModelProto,
    names: tuple[str, str],
) -> onnx.ModelProto:
    """Bring both models to the higher default-domain opset, then chain them.

    The preprocessing model's outputs feed the network's inputs in order (graph
    inputs that are initializers, as in models older than IR 4, are skipped).
    ``names`` is ``(network_name, preprocessing_name)``, for messages.
    """
    net_v, pre_v = _versions(network), _versions(preprocessing)
    _check_domains(net_v, pre_v, names)
    net_opset, pre_opset = net_v.get(_DEFAULT, -1), pre_v.get(_DEFAULT, -1)
    if pre_opset > net_opset:
        network = _upgrade(network, pre_opset, preprocessing.ir_version, names[0])
    elif net_opset > pre_opset:
        preprocessing = _upgrade(preprocessing, net_opset, network.ir_version, names[1])
    weights = {init.name for init in network.graph.initializer}
    inputs = [i for i in network.graph.input if i.name not in weights]
    outputs = preprocessing.graph.output
    io_map = [(o.name, i.name) for o, i in zip(outputs, inputs, strict=False)]
    try:
        return onnx.compose.merge_models(preprocessing, network, io_map=io_map)
    except (ValueError, onnx.checker.ValidationError) as err:  # do not connect
        raise CompositeMergeError(
            f"Can not merge {names[1]} into {names[0]}: {err}"
        ) from err
