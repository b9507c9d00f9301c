"""fp32 graph → binary graph (XNOR-Net style weights and activations).

Every weighted layer but the first and the last (unless asked) becomes
binary: input ``sign(x)`` with ``sign(0) = +1``, weights ``α_m·sign(W_m)``
with ``α_m = mean|W_m|`` (:func:`lowbit.formats.quantizers.binary`), packed as
bits; the node computes ``y = α_m·dot + b_m`` (a BatchNorm folded into the
Conv by the graph passes is already inside ``α_m`` and ``b_m``: per-channel
BatchNorm commutes with per-channel binarization).  The other layers stay
fp32.

When a binary layer's output is read only by binary layers (directly or
through MaxPools), it is emitted as packed signs computed with integer
thresholds (BatchNorm + sign folded; see
:func:`lowbit.kernels.binary.conv.sign_thresholds`), MaxPool runs on the
packed bits (AND), and the readers skip their own sign packing.
"""
from __future__ import annotations

import copy
import math

import numpy as np

from ..graph.ir import Graph
from ..kernels.binary.conv import sign_thresholds
from ..formats import quantizers
from .weights import layer_weights

INT32 = np.iinfo(np.int32)


def _eligible(graph: Graph, node) -> bool:
    const = graph.constants
    if node.op_type == "Conv":
        return len(node.inputs) > 1 and node.inputs[1] in const and const[node.inputs[1]].ndim == 4 \
            and node.attrs.get("group", 1) == 1 and all(n in const for n in node.inputs[2:] if n)
    if node.op_type == "Gemm":
        c = node.inputs[2] if len(node.inputs) > 2 else ""
        return node.inputs[1] in const and not node.attrs.get("transA", 0) and (not c or c in const)
    if node.op_type == "MatMul":
        return node.inputs[1] in const and const[node.inputs[1]].ndim == 2
    return False


def convert_binary(graph: Graph, precision, *, exclude=frozenset(), first_layer: str = "fp32",
                   last_layer: str = "fp32", **_unused) -> Graph:
    """Return a binary copy of the fp32 ``graph`` (see the module docstring).

    Parameters
    ----------
    first_layer, last_layer : {"fp32", "binary"}
        Whether the first / last weighted layer is binarized too (default: kept fp32).
    exclude : set of str
        Node names or op types kept in fp32.
    """
    g = copy.deepcopy(graph)
    layers = [n for n in g.nodes if n.op_type in ("Conv", "Gemm", "MatMul") and _eligible(g, n)
              and n.name not in exclude and n.op_type not in exclude]
    all_weighted = [n for n in g.nodes if n.op_type in ("Conv", "Gemm", "MatMul")]
    chosen = [n for n in layers
              if not (all_weighted and n is all_weighted[0] and first_layer != "binary")
              and not (all_weighted and n is all_weighted[-1] and last_layer != "binary")]
    for node in chosen:
        w, b = layer_weights(g, node)
        q, alpha = quantizers.binary(w)
        bias = np.zeros(w.shape[0]) if b is None else np.asarray(b, dtype=np.float64)
        names = {k: f"{node.name}::{k}" for k in ("w_bits", "scale", "shift")}
        g.constants[names["w_bits"]] = np.packbits((q < 0).reshape(-1))  # dense sign bits, 1 = −1
        g.encodings[names["w_bits"]] = {"precision": "binary", "shape": list(q.shape)}
        g.constants[names["scale"]] = alpha.astype(np.float32)
        g.constants[names["shift"]] = bias.astype(np.float32)
        clamp = {k: node.attrs[k] for k in ("clip_min", "clip_max") if k in node.attrs}
        if node.op_type == "Conv":
            attrs = {k: v for k, v in node.attrs.items()
                     if k in ("auto_pad", "dilations", "kernel_shape", "pads", "strides")}
            attrs.setdefault("kernel_shape", tuple(w.shape[2:]))
            attrs.update(channels=int(w.shape[1]), **clamp)
        else:
            node.op_type = "Gemm"
            attrs = dict(k=int(w.shape[1]), **clamp)
        node.inputs = [node.inputs[0], names["w_bits"], names["scale"], names["shift"]]
        node.attrs = attrs
        node.precision = "binary"
        node.quant = {"params": [names["w_bits"], names["shift"]] if b is not None else [names["w_bits"]],
                      "param_shapes": {names["w_bits"]: list(q.shape)}}
    _fold_sign_outputs(g)
    used = {n for node in g.nodes for n in node.inputs if n}
    g.constants = {k: v for k, v in g.constants.items() if k in used}
    g.metadata["precision"] = precision.name
    return g


def _fold_sign_outputs(g: Graph) -> None:
    """Emit packed signs where only binary convs (possibly through MaxPools) read a binary conv's output."""
    readers = g.consumers()
    outputs = set(g.output_names())

    def binary_conv_readers(name, pools):
        if name in outputs:
            return None
        found = []
        for r in readers.get(name, []):
            if r.op_type == "Conv" and r.precision == "binary" and r.inputs[0] == name:
                found.append(r)
            elif r.op_type == "MaxPool" and r.precision == "fp32" and len(r.outputs) == 1:
                pools.append(r)
                below = binary_conv_readers(r.outputs[0], pools)
                if below is None:
                    return None
                found += below
            else:
                return None
        return found or None

    for node in list(g.nodes):
        if node.op_type != "Conv" or node.precision != "binary" or node.attrs.get("output") == "sign":
            continue
        pools = []
        targets = binary_conv_readers(node.outputs[0], pools)
        if not targets:
            continue
        scale = g.constants[node.inputs[2]].astype(np.float64)
        shift = g.constants[node.inputs[3]].astype(np.float64)
        lo, hi = node.attrs.pop("clip_min", -math.inf), node.attrs.pop("clip_max", math.inf)
        thresholds, flip = sign_thresholds(scale, shift)
        if lo >= 0:  # sign(clamp(y)) with a lower bound ≥ 0 is always +1
            thresholds, flip = np.full_like(thresholds, INT32.min), np.zeros_like(flip)
        elif hi < 0:  # always −1
            thresholds, flip = np.full_like(thresholds, INT32.max), np.zeros_like(flip)
        g.constants[f"{node.name}::thresholds"] = thresholds.astype(np.int32)
        g.constants[f"{node.name}::flip"] = flip.astype(np.uint8)
        node.inputs = node.inputs[:4] + [f"{node.name}::thresholds", f"{node.name}::flip"]
        node.attrs["output"] = "sign"
        for pool in pools:
            pool.precision = "binary"
            pool.attrs = {k: v for k, v in pool.attrs.items()
                          if k in ("kernel_shape", "pads", "strides", "dilations", "ceil_mode", "auto_pad")}
        for target in targets:
            target.attrs["input_packed"] = 1
