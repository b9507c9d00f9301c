"""fp32 graph → fp16 / bf16 / fp8 graph.

Every node takes the float precision; every float32 constant is stored in the
format (fp8: one scale per tensor, ``s = amax / max_finite``); fp8
activations get a per-tensor scale from calibration ranges
(``s = max(|lo|, |hi|) / max_finite``).  Arithmetic stays fp32 (see
:mod:`lowbit.runtime.executor`).
"""
from __future__ import annotations

import copy

import numpy as np

from ..graph.ir import Graph
from ..formats.precision import Precision
from ..formats.float_formats import encode


def tensor_scale(amax: float, precision: Precision) -> float:
    """Per-tensor fp8 scale mapping ``amax`` to the largest finite value (1 when ``amax`` is 0)."""
    return float(amax) / precision.max_finite if amax > 0 else 1.0


def convert_float(graph: Graph, precision: Precision, ranges: dict | None = None, exclude=frozenset()) -> Graph:
    """Return a copy of ``graph`` at float ``precision``.

    Parameters
    ----------
    graph : Graph
        An fp32 graph.
    precision : Precision
        fp16, bf16, fp8-e4m3 or fp8-e5m2.
    ranges : dict, optional
        ``{tensor: (lo, hi)}`` from calibration; required for fp8.
    exclude : set of str
        Node names or op types that stay fp32.
    """
    if precision.scaled and not ranges:
        raise ValueError(f"{precision.name} needs calibration data for its activation scales")
    out = copy.deepcopy(graph)
    converted = set()
    for node in out.nodes:
        if node.name in exclude or node.op_type in exclude:
            continue
        node.precision = precision.name
        converted.add(node.name)
        if precision.scaled:
            amax = lambda name: max(abs(ranges[name][0]), abs(ranges[name][1])) if name in ranges else 0.0
            node.quant["output_scale"] = tensor_scale(max(amax(o) for o in node.outputs if o), precision)
            node.quant["input_scales"] = {name: tensor_scale(amax(name), precision)
                                          for name in node.inputs if name and name not in out.constants}
    readers = out.consumers()
    for name, value in list(out.constants.items()):
        users = readers.get(name, [])
        if value.dtype != np.float32 or not users or not all(u.name in converted for u in users):
            continue
        scale = tensor_scale(float(np.abs(value).max()) if value.size else 0.0, precision) if precision.scaled else 1.0
        out.constants[name] = encode(value, precision, scale)
        out.encodings[name] = {"precision": precision.name, "scale": scale}
    out.metadata["precision"] = precision.name
    return out
