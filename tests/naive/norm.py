"""Naive oracles for LayerNorm, InstanceNorm, GroupNorm, Gelu and MatMul.

Written from the ONNX spec with plain Python loops in float64, independently
of ``lowbit``.  Slow on purpose: use small inputs.
"""
from __future__ import annotations

import math

import numpy as np


def _normalize(values, epsilon):
    """Mean, 1/sqrt(biased var + eps) and the normalized list of a list of floats."""
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    inv = 1.0 / math.sqrt(var + epsilon)
    return mean, inv, [(v - mean) * inv for v in values]


def layer_norm(x, scale, bias=None, axis=-1, epsilon=1e-5):
    """``(Y, Mean, InvStdDev)`` of ONNX LayerNormalization; scale/bias of the normalized shape (or broadcast to it)."""
    x = np.asarray(x, dtype=np.float64)
    axis = axis % x.ndim
    outer_shape, norm_shape = x.shape[:axis], x.shape[axis:]
    g = np.broadcast_to(np.asarray(scale, dtype=np.float64), norm_shape)
    b = np.zeros(norm_shape) if bias is None else np.broadcast_to(np.asarray(bias, dtype=np.float64), norm_shape)
    y = np.zeros(x.shape)
    mean = np.zeros(outer_shape + (1,) * len(norm_shape))
    inv = np.zeros(mean.shape)
    for o in np.ndindex(*outer_shape):
        positions = list(np.ndindex(*norm_shape))
        m, s, normed = _normalize([x[o + p] for p in positions], epsilon)
        for p, v in zip(positions, normed):
            y[o + p] = v * g[p] + b[p]
        mean[o + (0,) * len(norm_shape)] = m
        inv[o + (0,) * len(norm_shape)] = s
    return y, mean, inv


def instance_norm(x, scale, bias, epsilon=1e-5):
    x = np.asarray(x, dtype=np.float64)
    y = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            positions = list(np.ndindex(*x.shape[2:]))
            _, _, normed = _normalize([x[(n, c) + p] for p in positions], epsilon)
            for p, v in zip(positions, normed):
                y[(n, c) + p] = v * scale[c] + bias[c]
    return y


def group_norm(x, scale, bias, num_groups, epsilon=1e-5, per_group=False):
    """GroupNormalization; ``per_group``: scale/bias have one value per group (opset 18), else per channel (21)."""
    x = np.asarray(x, dtype=np.float64)
    channels = x.shape[1]
    size = channels // num_groups
    y = np.zeros(x.shape)
    for n in range(x.shape[0]):
        for g in range(num_groups):
            positions = [(n, c) + p for c in range(g * size, (g + 1) * size) for p in np.ndindex(*x.shape[2:])]
            _, _, normed = _normalize([x[p] for p in positions], epsilon)
            for p, v in zip(positions, normed):
                k = g if per_group else p[1]
                y[p] = v * scale[k] + bias[k]
    return y


def gelu(x, approximate="none"):
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros(x.shape)
    for i in np.ndindex(*x.shape):
        v = x[i]
        if approximate == "tanh":
            out[i] = 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
        else:
            out[i] = 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
    return out


def matmul(a, b):
    """numpy-matmul semantics by loops: 1-D operands promoted and their axis removed, batch axes broadcast."""
    a = np.asarray(a)
    b = np.asarray(b)
    dtype = np.float64 if a.dtype.kind == "f" else np.int64
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    rank = max(a2.ndim, b2.ndim)
    a2 = a2.reshape((1,) * (rank - a2.ndim) + a2.shape)
    b2 = b2.reshape((1,) * (rank - b2.ndim) + b2.shape)
    batch = []
    for da, db in zip(a2.shape[:-2], b2.shape[:-2]):
        assert da == db or 1 in (da, db), (a.shape, b.shape)
        batch.append(db if da == 1 else da)
    m, k = a2.shape[-2:]
    n = b2.shape[-1]
    out = np.zeros(tuple(batch) + (m, n), dtype=dtype)
    for index in np.ndindex(*batch):
        ia = tuple(0 if d == 1 else i for i, d in zip(index, a2.shape[:-2]))
        ib = tuple(0 if d == 1 else i for i, d in zip(index, b2.shape[:-2]))
        for i in range(m):
            for j in range(n):
                out[index + (i, j)] = sum(dtype(a2[ia + (i, t)]) * dtype(b2[ib + (t, j)]) for t in range(k))
    if a.ndim == 1:
        out = out[..., 0, :]
    if b.ndim == 1:
        out = out[..., 0]
    return out
