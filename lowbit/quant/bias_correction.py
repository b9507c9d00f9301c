"""Empirical bias correction (Nagel et al. 2019, section 4.2, the data-driven variant).

Quantizing a layer's weights shifts the mean of its output:
``E[W_q x] ≠ E[W x]``.  For each weighted layer, in graph order, lowbit
measures on the calibration data

    ε[m] = E[((W_q - W) x̃)[m]]

(the mean over samples and output positions of channel ``m``, before the
layer's activation), where ``W_q`` are the dequantized integer weights the
converted layer really uses, ``W`` its fp32 weights, and ``x̃`` the layer's
input **in the quantized model** (its integer input dequantized: the output
of the quantized upstream, every earlier layer already corrected), and sets
``b ← b - ε``.  This is the paper's ``E[ε x]`` with ``E[x]`` taken over the
quantized model's activations; only the error of the layer's own weights is
corrected, not the error its quantized input carries (correcting that by a
constant shift, on ternary weights, made the mean of the next ReLU's output
worse and the seed network collapse).  Layers are corrected one at a time
because a correction changes what every later layer sees.  Layers left in
fp32 are skipped.
"""
from __future__ import annotations

import copy

import numpy as np

from .layer_io import anchor_nodes, dequantized_weights, layer_inputs, pre_activation
from .weights import layer_weights


def correct_biases(graph, calibration, convert, *, batch_size: int = 256) -> tuple:
    """Return a copy of fp32 ``graph`` whose biases cancel the mean quantization error.

    Parameters
    ----------
    graph : Graph
        The fp32 graph that will be converted (after equalization, if any).
    calibration : ndarray or dict
        Calibration samples.
    convert : callable
        ``convert(fp32_graph) -> integer graph``, with every other setting fixed
        (precision, ranges, fixed weights).

    Returns
    -------
    graph : Graph
        The corrected fp32 graph (convert it once more for the final model).
    info : dict
        ``{"layers": {layer: max |ε| over channels}, "inputs": "quantized upstream"}``.
    """
    g = copy.deepcopy(graph)
    corrected = {}
    for node in anchor_nodes(g):
        quantized = convert(g)
        qnode = next((n for n in quantized.nodes if n.name == node.name), None)
        if qnode is None or "w_scale" not in qnode.quant:
            continue
        x_q = layer_inputs(quantized, node.name, calibration, batch_size=batch_size)
        w, _ = layer_weights(graph, node)
        reference = pre_activation(node, x_q, w, None)
        actual = pre_activation(node, x_q, dequantized_weights(quantized, qnode), None)
        del x_q
        axes = (0,) + tuple(range(2, reference.ndim))
        error = (actual.astype(np.float64) - reference).mean(axis=axes)
        _subtract_bias(g, node, error)
        corrected[node.name] = float(np.abs(error).max())
    return g, {"layers": corrected, "inputs": "quantized upstream"}


def _subtract_bias(g, node, error: np.ndarray) -> None:
    """``b ← b - error`` in the node's own bias layout (Gemm: ``beta · C``), adding a bias if it has none."""
    const = g.constants
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    beta = node.attrs.get("beta", 1.0) if node.op_type == "Gemm" else 1.0
    if bias:
        b = const[bias].reshape(-1).astype(np.float64)
        b = np.broadcast_to(b, error.shape) if b.size == 1 else b
        new = f"{node.name}::bias_corrected"  # a fresh constant: the original may have other readers
        const[new] = (b - error / beta).astype(np.float32)
        node.inputs = list(node.inputs[:2]) + [new] + list(node.inputs[3:])
        return
    if node.op_type == "MatMul":  # no bias input: becomes a Gemm with one
        w = const[node.inputs[1]]
        node.op_type, node.attrs = "Gemm", {}
        name = f"{node.name}::w_t"
        const[name] = np.ascontiguousarray(w.T)
        node.attrs["transB"] = 1
        node.inputs = [node.inputs[0], name]
    name = f"{node.name}::bias_corrected"
    const[name] = (-error).astype(np.float32)
    node.inputs = list(node.inputs) + [name]
    if node.op_type == "Gemm":
        node.attrs["beta"] = 1.0
