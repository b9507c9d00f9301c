"""Cross-layer equalization and high-bias absorption (Nagel et al., "Data-Free Quantization", 2019).

Equalization
------------
Take two weighted layers ``y = W2 · f(W1 x + b1) + b2`` where ``f`` is
*positively homogeneous per channel*: ``f(x / s) = f(x) / s`` for every
``s > 0``, channel by channel.  For any positive ``s`` (one per channel
``i`` of the tensor between them)::

    W1'[i] = W1[i] / s_i,   b1'[i] = b1[i] / s_i,   W2'[:, i] = W2[:, i] · s_i

gives exactly the same ``y``.  With ``r1_i = max|W1[i, ...]|`` (output
channel ``i`` of layer 1) and ``r2_i = max|W2[:, i, ...]|`` (the weights
reading channel ``i`` in layer 2), the choice

    s_i = (1 / r2_i) · sqrt(r1_i · r2_i) = sqrt(r1_i / r2_i)

makes both ranges ``sqrt(r1_i · r2_i)``: the per-channel ranges of the two
layers become equal, which is the optimum of the paper's precision
objective.  A chain of layers is equalized pair by pair, sweeping all pairs
``iterations`` times (each layer is layer 2 of one pair and layer 1 of the
next).  Channels where ``r1_i`` or ``r2_i`` is 0 keep ``s_i = 1``.

Which pairs
-----------
Layer 1 and 2 are Conv (any group, depthwise included; 4-D constant weight),
Gemm (constant B, no transA) or MatMul (constant 2-D B), after BatchNorm
folding.  Between them, on a tensor with no other reader that is not a
graph output, only ops that commute with a positive per-channel scale:

* a fused clamp ``[clip_min, clip_max]`` with ``clip_min ∈ {0, -inf}`` and
  ``clip_max = +inf`` (ReLU or identity);
* Relu, LeakyRelu, PRelu (any slope shape: ``PRelu(x/s) = PRelu(x)/s`` for
  ``s > 0``), Identity, Dropout, MaxPool, AveragePool, GlobalAveragePool
  (all positively homogeneous channel by channel);
* Flatten (axis 1) in front of a Gemm/MatMul: channel ``i`` becomes the
  ``H·W`` input features ``i·H·W .. (i+1)·H·W - 1``.

Not homogeneous, so the pair is skipped: ReLU6/Clip with a finite max
(``min(x/s, 6) ≠ min(x, 6)/s``; lowbit's integer kernels clamp per tensor,
not per channel, so the bound cannot be rescaled per channel), a clamp with
a nonzero minimum, HardSwish, SiLU, Sigmoid, Tanh, and everything else
(Add, Concat: a branch with other readers is skipped too).

High-bias absorption
--------------------
With calibration data, a channel of layer 1 whose pre-activation
``h_i = W1[i] x + b1[i]`` never falls below ``c_i > 0`` on it satisfies
``ReLU(h_i - c_i) + c_i = ReLU(h_i)``, so ``c_i`` moves from ``b1`` into
``b2``: ``b1'[i] = b1[i] - c_i``, ``b2' = b2 + Σ_i W2[:, i, ...] · c_i``.
lowbit takes ``c_i = max(0, min over the calibration data of h_i)`` (the
data version of the paper's ``max(0, β - 3γ)``): exact on the calibration
data, and wherever ``h_i ≥ c_i``.  It needs every op between to commute with
a constant shift (a clamp with minimum 0 or none, Relu, LeakyRelu, PRelu,
MaxPool, GlobalAveragePool, Identity, Dropout, Flatten) and layer 2 without
zero padding (a padded border would read 0, not ``-c_i``).
"""
from __future__ import annotations

import copy
import math

import numpy as np

from .layer_io import pre_activation
from .weights import layer_weights

HOMOGENEOUS = {"Relu", "LeakyRelu", "PRelu", "Identity", "Dropout", "MaxPool", "AveragePool", "GlobalAveragePool"}
SHIFTABLE = {"Relu", "LeakyRelu", "PRelu", "Identity", "Dropout", "MaxPool", "GlobalAveragePool", "Flatten"}


def _weighted(graph, node) -> bool:
    const = graph.constants
    if len(node.inputs) < 2 or node.inputs[1] not in const or not all(n in const for n in node.inputs[2:] if n):
        return False
    w = const[node.inputs[1]]
    return (node.op_type == "Conv" and w.ndim == 4) or (node.op_type == "MatMul" and w.ndim == 2) \
        or (node.op_type == "Gemm" and w.ndim == 2 and not node.attrs.get("transA", 0))


def _homogeneous_clamp(node) -> bool:
    lo, hi = node.attrs.get("clip_min", -math.inf), node.attrs.get("clip_max", math.inf)
    return (lo == 0.0 or lo == -math.inf) and hi == math.inf


def _out_channels(graph, node) -> int:
    w = graph.constants[node.inputs[1]]
    if node.op_type == "Conv":
        return w.shape[0]
    if node.op_type == "Gemm" and node.attrs.get("transB", 0):
        return w.shape[0]
    return w.shape[1]


class Pair:
    """Layer 1, layer 2, the ops between, and how layer 2's inputs group into channels."""

    def __init__(self, first, second, between, spread):
        self.first, self.second, self.between, self.spread = first, second, between, spread

    @property
    def names(self) -> tuple:
        return self.first.name, self.second.name


def find_pairs(graph) -> list:
    """Every equalizable (layer 1, layer 2) pair of ``graph`` (see the module docstring)."""
    readers = {}
    for node in graph.nodes:
        for t in node.inputs:
            if t:
                readers.setdefault(t, []).append(node)
    outputs = set(graph.output_names())
    pairs = []
    for first in graph.nodes:
        if not _weighted(graph, first) or not _homogeneous_clamp(first) or len(first.outputs) != 1:
            continue
        channels = _out_channels(graph, first)
        tensor, between = first.outputs[0], []
        while True:
            user = _only_reader(readers, outputs, tensor)
            if user is None:
                break
            if _weighted(graph, user):
                if user.op_type == "Conv" and _in_channels(graph, user) == channels:
                    pairs.append(Pair(first, user, between, 1))
                elif user.op_type in ("Gemm", "MatMul") and _in_features(graph, user) == channels:
                    pairs.append(Pair(first, user, between, 1))
                break
            if user.op_type == "Flatten":
                nxt = _only_reader(readers, outputs, user.outputs[0])
                if user.attrs.get("axis", 1) == 1 and first.op_type == "Conv" and nxt is not None \
                        and nxt.op_type in ("Gemm", "MatMul") and _weighted(graph, nxt) \
                        and _in_features(graph, nxt) % channels == 0:
                    pairs.append(Pair(first, nxt, between + [user], _in_features(graph, nxt) // channels))
                break
            if user.op_type not in HOMOGENEOUS:
                break
            if user.op_type == "PRelu" and (len(user.inputs) < 2 or user.inputs[1] not in graph.constants):
                break
            between.append(user)
            tensor = user.outputs[0]
    return pairs


def _only_reader(readers, outputs, tensor):
    """The one node reading ``tensor`` as its first input (None if it is a graph output or read elsewhere)."""
    users = readers.get(tensor, [])
    if tensor in outputs or len(users) != 1 or users[0].inputs[0] != tensor or tensor in users[0].inputs[1:]:
        return None
    if len([o for o in users[0].outputs if o]) != 1:
        return None
    return users[0]


def _in_channels(graph, node) -> int:
    w = graph.constants[node.inputs[1]]
    return w.shape[1] * int(node.attrs.get("group", 1))


def _in_features(graph, node) -> int:
    w = graph.constants[node.inputs[1]]
    if node.op_type == "Gemm" and node.attrs.get("transB", 0):
        return w.shape[1]
    return w.shape[0]


# ---- per-channel views of the weights ----------------------------------------------------------

def _first_view(graph, node) -> np.ndarray:
    """Layer 1's weights with output channel on axis 0, flattened: (C, ...)."""
    w = graph.constants[node.inputs[1]]
    if node.op_type == "Conv" or (node.op_type == "Gemm" and node.attrs.get("transB", 0)):
        return w.reshape(w.shape[0], -1)
    return w.T


def _second_ranges(graph, pair) -> np.ndarray:
    """``r2_i``: max |weight| reading channel ``i`` of the tensor between."""
    node, w = pair.second, np.abs(graph.constants[pair.second.inputs[1]])
    if node.op_type == "Conv":
        group = int(node.attrs.get("group", 1))
        m, cg = w.shape[:2]
        per = w.reshape(group, m // group, cg, -1).max(axis=(1, 3))  # (group, C/group)
        return per.reshape(-1)
    cols = w if (node.op_type == "Gemm" and node.attrs.get("transB", 0)) else w.T  # (N_out, K)
    return cols.reshape(cols.shape[0], -1, pair.spread).max(axis=(0, 2))


def _scale_first(graph, node, factor: np.ndarray) -> None:
    """Multiply output channel ``i`` of layer 1 (weights and bias) by ``factor[i]``."""
    const = graph.constants
    w = const[node.inputs[1]]
    if node.op_type == "Conv" or (node.op_type == "Gemm" and node.attrs.get("transB", 0)):
        const[node.inputs[1]] = (w * factor.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
    else:
        const[node.inputs[1]] = (w * factor[None, :]).astype(w.dtype)
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if bias:
        b = const[bias]
        full = np.broadcast_to(b.reshape(-1), factor.shape) if b.size == 1 else b.reshape(-1)
        const[bias] = (full * factor).astype(b.dtype).reshape(factor.shape if b.size == 1 else b.shape)


def _scale_second(graph, pair, factor: np.ndarray) -> None:
    """Multiply the weights of layer 2 reading channel ``i`` by ``factor[i]``."""
    node, const = pair.second, graph.constants
    w = const[node.inputs[1]]
    if node.op_type == "Conv":
        group = int(node.attrs.get("group", 1))
        m, cg = w.shape[:2]
        f = factor.reshape(group, 1, cg, 1)
        const[node.inputs[1]] = (w.reshape(group, m // group, cg, -1) * f).reshape(w.shape).astype(w.dtype)
        return
    f = np.repeat(factor, pair.spread)
    if node.op_type == "Gemm" and node.attrs.get("transB", 0):
        const[node.inputs[1]] = (w * f[None, :]).astype(w.dtype)
    else:
        const[node.inputs[1]] = (w * f[:, None]).astype(w.dtype)


def _private(graph, pairs) -> list:
    """Pairs whose weight and bias constants no other node reads (others are left alone)."""
    count = {}
    for node in graph.nodes:
        for t in node.inputs:
            if t in graph.constants:
                count[t] = count.get(t, 0) + 1
    keep = []
    for pair in pairs:
        names = [n for layer in (pair.first, pair.second) for n in layer.inputs[1:] if n]
        bias = pair.first.inputs[2] if len(pair.first.inputs) > 2 else ""
        full = not bias or graph.constants[bias].size in (1, _out_channels(graph, pair.first))
        if full and all(count.get(n, 0) == 1 for n in names):
            keep.append(pair)
    return keep


def equalize(graph, *, iterations: int = 20, calibration=None, absorb_bias: bool = True) -> tuple:
    """Cross-layer equalization (and high-bias absorption) of an fp32 graph.

    Parameters
    ----------
    graph : Graph
        fp32 graph, BatchNorm folded and activations fused (as :func:`lowbit.load` gives it).
    iterations : int
        Sweeps over all pairs.
    calibration : ndarray or dict, optional
        Samples for high-bias absorption (skipped without).
    absorb_bias : bool
        Do high-bias absorption when ``calibration`` is given.

    Returns
    -------
    graph : Graph
        An equalized copy; computes the same function in exact arithmetic.
    info : dict
        ``{"pairs": [[layer1, layer2], ...], "iterations", "absorbed": {layer1: channels}}``.
    """
    g = copy.deepcopy(graph)
    for name in list(g.constants):
        if g.constants[name].dtype == np.float32:
            g.constants[name] = g.constants[name].astype(np.float64)  # scale in float64, store float32 once
    pairs = _private(g, find_pairs(g))
    for _ in range(iterations if pairs else 0):
        for pair in pairs:
            r1 = np.abs(_first_view(g, pair.first)).max(axis=1)
            r2 = _second_ranges(g, pair)
            ok = (r1 > 0) & (r2 > 0)
            s = np.ones_like(r1)
            s[ok] = np.sqrt(r1[ok] / r2[ok])
            _scale_first(g, pair.first, 1.0 / s)
            _scale_second(g, pair, s)
    for name in list(g.constants):
        if g.constants[name].dtype == np.float64 and graph.constants.get(name, np.empty(0)).dtype == np.float32:
            g.constants[name] = g.constants[name].astype(np.float32)
    absorbed = {}
    if calibration is not None and absorb_bias and pairs:
        absorbed = _absorb_high_bias(g, pairs, calibration)
    return g, {"pairs": [list(p.names) for p in pairs], "iterations": iterations if pairs else 0,
               "absorbed": absorbed}


def _no_padding(node) -> bool:
    if node.op_type != "Conv":
        return True
    pad_mode = node.attrs.get("auto_pad", "NOTSET")
    if pad_mode == "VALID":
        return True
    return pad_mode in ("NOTSET", "") and not any(node.attrs.get("pads") or ())


def _absorb_high_bias(g, pairs, calibration) -> dict:
    """Move ``c_i = max(0, min h_i)`` from layer 1's bias into layer 2's (see the module docstring)."""
    from .layer_io import layer_inputs

    absorbed = {}
    for pair in pairs:
        first, second = pair.first, pair.second
        bias_name = first.inputs[2] if len(first.inputs) > 2 else ""
        if not bias_name or not _no_padding(second) or not all(op.op_type in SHIFTABLE for op in pair.between):
            continue
        if first.attrs.get("clip_min", -math.inf) != 0.0 or first.op_type == "MatMul" or second.op_type == "MatMul":
            continue  # only a ReLU between turns h - c back into a shift
        w1, b1 = layer_weights(g, first)
        x = layer_inputs(g, first.name, calibration)
        h = pre_activation(first, x, w1, b1)
        axes = (0,) + tuple(range(2, h.ndim))
        c = np.maximum(0.0, h.min(axis=axes)).astype(np.float64)
        if not np.any(c > 0):
            continue
        _shift_bias(g, first, -c)
        w2 = g.constants[second.inputs[1]].astype(np.float64)
        if second.op_type == "Conv":
            group = int(second.attrs.get("group", 1))
            m, cg = w2.shape[:2]
            per = w2.reshape(group, m // group, cg, -1).sum(axis=3)  # (group, M/G, C/G)
            delta = np.einsum("gmc,gc->gm", per, c.reshape(group, cg)).reshape(m)
        else:
            weights, _ = layer_weights(g, second)  # (N_out, K), alpha applied
            delta = weights @ np.repeat(c, pair.spread)
            delta = delta / (second.attrs.get("beta", 1.0) if second.op_type == "Gemm" else 1.0)
        _shift_bias(g, second, delta)
        absorbed[first.name] = int(np.count_nonzero(c > 0))
    return absorbed


def _shift_bias(g, node, delta: np.ndarray) -> None:
    """``b += delta`` (full length), creating or broadcasting the bias constant as needed."""
    const = g.constants
    bias = node.inputs[2] if len(node.inputs) > 2 else ""
    if bias:
        b = const[bias].reshape(-1).astype(np.float64)
        b = np.broadcast_to(b, delta.shape) if b.size == 1 else b
        const[bias] = (b + delta).astype(np.float32)
        return
    if node.op_type == "MatMul":
        raise ValueError(f"MatMul '{node.name}' has no bias to shift")
    name = f"{node.name}::bias_absorbed"
    const[name] = delta.astype(np.float32)
    node.inputs = list(node.inputs) + [""] * (2 - len(node.inputs)) + [name]
    if node.op_type == "Gemm":
        node.attrs["beta"] = 1.0
