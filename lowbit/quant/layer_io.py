"""What the post-training algorithms need of one weighted layer: its inputs, its output, its patches.

Shared by :mod:`lowbit.quant.bias_correction` and :mod:`lowbit.quant.adaround`:

* :func:`layer_inputs` runs calibration data through an fp32 graph, or a
  converted integer graph, and returns the float value of one layer's input
  (an integer input is dequantized, ``x = s · (q - zp)``, with the layer's
  own ``x_scale``/``x_zero_point``: what its integer kernel really sees);
* :func:`pre_activation` is the layer's affine output ``W x + b`` before its
  fused clamp, computed with lowbit's fp32 kernels, and :func:`activate` the
  clamp;
* :func:`patches` turns a Conv input into im2col rows ``(rows, groups, C/G·kH·kW)``
  so that the layer is a batched matrix product (Gemm/MatMul: the rows are
  the samples).
"""
from __future__ import annotations

import math

import numpy as np

from ..kernels.common import output_size, resolve_pads
from ..kernels.float.conv import conv
from ..formats.packing import unpack_bits
from .weights import layer_weights

WINDOW_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def anchor_nodes(graph) -> list:
    """Conv (constant 4-D weight), Gemm (constant B, no transA) and MatMul (constant 2-D B) nodes, in order."""
    const = graph.constants
    found = []
    for node in graph.nodes:
        if len(node.inputs) < 2 or node.inputs[1] not in const:
            continue
        extra = [n for n in node.inputs[2:] if n]
        if not all(n in const for n in extra):
            continue
        w = const[node.inputs[1]]
        if (node.op_type == "Conv" and w.ndim == 4) or (node.op_type == "Gemm" and not node.attrs.get("transA", 0)) \
                or (node.op_type == "MatMul" and w.ndim == 2):
            found.append(node)
    return found


def activate(node, y: np.ndarray) -> np.ndarray:
    """The node's fused clamp ``clip(y, clip_min, clip_max)`` (identity when it has none)."""
    lo, hi = node.attrs.get("clip_min", -math.inf), node.attrs.get("clip_max", math.inf)
    if math.isinf(lo) and math.isinf(hi):
        return y
    return np.clip(y, lo, hi)


def pre_activation(node, x: np.ndarray, w: np.ndarray, bias) -> np.ndarray:
    """``W x + b`` of a Conv/Gemm/MatMul node, before its fused clamp.

    ``w`` and ``bias`` are in the layout of :func:`lowbit.quant.weights.layer_weights`
    (Gemm: ``alpha`` and ``beta`` already applied).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if node.op_type == "Conv":
        attrs = {k: v for k, v in node.attrs.items() if k in WINDOW_ATTRS}
        b = None if bias is None else np.asarray(bias, np.float32)
        return conv(x, np.ascontiguousarray(w, dtype=np.float32), b, **attrs)
    y = x.reshape(len(x), -1) @ np.asarray(w, np.float32).T
    return y if bias is None else y + np.asarray(bias, np.float32)


def window(node, spatial) -> tuple:
    """``(kernel, strides, dilations, pads_begin, pads_end, out)`` of a 2-D Conv on input dims ``spatial``."""
    attrs = node.attrs
    kernel = tuple(attrs.get("kernel_shape") or ())
    strides = tuple(attrs.get("strides") or (1, 1))
    dilations = tuple(attrs.get("dilations") or (1, 1))
    begin, end = resolve_pads(spatial, kernel, strides, dilations, attrs.get("pads"), attrs.get("auto_pad", "NOTSET"))
    out = tuple(output_size(s, k, st, d, b, e) for s, k, st, d, b, e in zip(spatial, kernel, strides, dilations,
                                                                          begin, end))
    return kernel, strides, dilations, begin, end, out


def patches(node, x: np.ndarray, kernel_hw) -> np.ndarray:
    """im2col rows of a 2-D Conv input: ``(N·OH·OW, group, C/G·kH·kW)``, float32.

    Row ``r = (n, oh, ow)``; the last axis is ordered ``(c, i, j)`` like the
    weight ``W[m, c, i, j]``, so ``y[r, m] = patches[r, g(m)] · W[m].ravel()``.
    """
    n, c, h, w = x.shape
    kh, kw = kernel_hw
    attrs = {**node.attrs, "kernel_shape": (kh, kw)}
    probe = type(node)(node.op_type, node.name, node.inputs, node.outputs, attrs)
    _, (sh, sw), (dh, dw), (bh, bw), (eh, ew), (oh, ow) = window(probe, (h, w))
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 0), (bh, eh), (bw, ew)))
    group = int(node.attrs.get("group", 1))
    cols = np.empty((n, oh, ow, c, kh, kw), dtype=np.float32)
    for i in range(kh):
        for j in range(kw):
            part = xp[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
            cols[:, :, :, :, i, j] = part.transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, group, (c // group) * kh * kw)


def grouped_weights(node, w: np.ndarray) -> np.ndarray:
    """``W`` as ``(group, M/G, C/G·kH·kW)`` (Gemm/MatMul: one group of ``(N_out, K)``)."""
    group = int(node.attrs.get("group", 1)) if node.op_type == "Conv" else 1
    return np.asarray(w).reshape(group, w.shape[0] // group, -1)


def dequantized_weights(int_graph, node) -> np.ndarray:
    """The float weights ``s[m] · q[m]`` an integer anchor of a converted graph computes with (out, in...)."""
    name = node.inputs[1]
    stored = int_graph.constants[name]
    encoding = int_graph.encodings.get(name)
    q = unpack_bits(stored, encoding["bits"], encoding["shape"]) if encoding else stored
    scale = np.asarray(node.quant["w_scale"], np.float64)
    return q.astype(np.float64) * scale.reshape((-1,) + (1,) * (q.ndim - 1))


def layer_inputs(graph, node_name: str, calibration, *, batch_size: int = 256) -> np.ndarray:
    """The float input of node ``node_name`` over all calibration samples.

    In a converted graph whose node is integer the captured input is
    dequantized with the node's ``x_scale`` and ``x_zero_point``.
    """
    from ..model import Model

    model = Model(graph)
    feeds_all = model.check_inputs(calibration)
    n = len(next(iter(feeds_all.values())))
    executor = model._executor(None, None)
    parts = []

    def hook(node, inputs, results):
        if node.name != node_name:
            return
        x = inputs[0]
        if node.quant and "x_scale" in node.quant and x.dtype.kind in "iu":
            x = (x.astype(np.float32) - np.float32(node.quant["x_zero_point"])) * np.float32(node.quant["x_scale"])
        parts.append(np.array(x, dtype=np.float32))

    for start in range(0, n, batch_size):
        executor.run({k: v[start:start + batch_size] for k, v in feeds_all.items()}, hook=hook)
    if not parts:
        raise ValueError(f"node '{node_name}' did not run; expected one of the graph's nodes")
    return np.concatenate(parts, axis=0)

