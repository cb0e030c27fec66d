"""Merge a preprocessing model into a network model (``load_composite_model``)."""

from __future__ import annotations

import onnx
import onnx.compose
import onnx.version_converter

__all__ = ("merge_composite",)

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
            raise ValueError(
                f"Can not merge {names[1]} and {names[0]} because they contain "
                f"different opset versions for domain {domain} ({pre[domain]} and "
                f"{net[domain]}). Only the default domain can be automatically "
                "converted to the highest version of the two."
            )


def _upgrade(model: onnx.ModelProto, version: int, ir_version: int) -> onnx.ModelProto:
    converted = onnx.version_converter.convert_version(model, version)
    converted.ir_version = max(converted.ir_version, ir_version)
    onnx.checker.check_model(converted)
    return converted


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
        network = _upgrade(network, pre_opset, preprocessing.ir_version)
    elif net_opset > pre_opset:
        preprocessing = _upgrade(preprocessing, net_opset, network.ir_version)
    weights = {init.name for init in network.graph.initializer}
    inputs = [i for i in network.graph.input if i.name not in weights]
    outputs = preprocessing.graph.output
    io_map = [(o.name, i.name) for o, i in zip(outputs, inputs, strict=False)]
    return onnx.compose.merge_models(preprocessing, network, io_map=io_map)
