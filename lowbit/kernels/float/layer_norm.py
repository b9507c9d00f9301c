"""fp32 LayerNormalization, and the row-normalization kernel it shares with InstanceNorm and GroupNorm.

Each of these ops normalizes *rows* of a 2-D view ``(rows, length)`` of its
input: ``y = (x - mean) / sqrt(var + epsilon) * scale + bias`` with the mean
and the (biased) variance of each row.  Statistics are accumulated in
float64, two passes (mean, then the sum of squared deviations), over blocks
of :data:`BLOCK` elements whose partial sums are combined in a fixed order:
the result depends only on the shape, never on the thread count, and one
long row (LayerNorm over C*H*W of one image) still spreads over all threads.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit

#: Elements per partial sum; fixed so that the summation order is too.
BLOCK = 1 << 14

#: ONNX TensorProto codes lowbit accepts for ``stash_type`` (the dtype of Mean and InvStdDev).
STASH_DTYPES = {1: np.float32, 10: np.float16, 11: np.float64}


@jit(multithread=True)
def _block_sums(x, centre, squares, block, sums):
    # sums[r, b] = sum over block b of row r of (x - centre[r]) (squared when `squares`), float64.
    rows, length = x.shape
    blocks = sums.shape[1]
    for item in prange(rows * blocks):
        r = item // blocks
        k0 = (item % blocks) * block
        k1 = min(length, k0 + block)
        m = centre[r]
        xs = x[r, k0:k1]
        n = k1 - k0
        # Four accumulators (a fixed order) keep the adds from waiting on each other.
        s0 = s1 = s2 = s3 = 0.0
        n4 = n // 4 * 4
        if squares:
            for k in range(0, n4, 4):
                d0 = np.float64(xs[k]) - m
                d1 = np.float64(xs[k + 1]) - m
                d2 = np.float64(xs[k + 2]) - m
                d3 = np.float64(xs[k + 3]) - m
                s0 += d0 * d0
                s1 += d1 * d1
                s2 += d2 * d2
                s3 += d3 * d3
            for k in range(n4, n):
                d = np.float64(xs[k]) - m
                s0 += d * d
        else:
            for k in range(0, n4, 4):
                s0 += np.float64(xs[k]) - m
                s1 += np.float64(xs[k + 1]) - m
                s2 += np.float64(xs[k + 2]) - m
                s3 += np.float64(xs[k + 3]) - m
            for k in range(n4, n):
                s0 += np.float64(xs[k]) - m
        sums[r, item % blocks] = (s0 + s1) + (s2 + s3)


@jit(multithread=True)
def _affine_rows(x, mean, inv, scale, bias, period, per_q, span, block, out):
    # out[r, k] = (x[r, k] - mean[r]) * inv[r] * scale[i] + bias[i] with
    # i = (r % period) * per_q + k // span (the wrapper checks per_q * span == length).
    rows, length = x.shape
    blocks = (length + block - 1) // block
    for item in prange(rows * blocks):
        r = item // blocks
        k0 = (item % blocks) * block
        k1 = min(length, k0 + block)
        m = mean[r]
        s = inv[r]
        base = (r % period) * per_q
        if span == 1:
            # Slices (not x[r, k]) let LLVM see in-bounds, non-negative indices and vectorise.
            xs = x[r, k0:k1]
            ys = out[r, k0:k1]
            gs = scale[base + k0:base + k1]
            bs = bias[base + k0:base + k1]
            for t in range(k1 - k0):
                ys[t] = (np.float64(xs[t]) - m) * s * gs[t] + bs[t]
        else:
            k = k0
            while k < k1:
                q = k // span
                end = min(k1, (q + 1) * span)
                a = scale[base + q] * s
                c = bias[base + q] - m * a
                xs = x[r, k:end]
                ys = out[r, k:end]
                for t in range(end - k):
                    ys[t] = np.float64(xs[t]) * a + c
                k = end


def normalize_rows(x2, scale, bias, epsilon, period, per_q, span):
    """Normalize each row of ``x2`` (rows, length) and apply a per-position affine map.

    ``y[r, k] = (x[r, k] - mean_r) / sqrt(var_r + epsilon) * scale[i] + bias[i]``
    where ``i = (r % period) * per_q + k // span``: LayerNorm uses
    ``(1, length, 1)``, InstanceNorm ``(C, 1, length)``, GroupNorm
    ``(G, C/G, spatial)``.

    Parameters
    ----------
    x2 : ndarray
        float32 (rows, length), C-contiguous.
    scale, bias : ndarray
        float32 or float64, ``period * per_q`` values each.
    epsilon : float
    period, per_q, span : int
        The affine index map above; ``per_q * span`` must equal ``length``.

    Returns
    -------
    y : ndarray
        float32 (rows, length).
    mean, inv_std : ndarray
        float64 (rows,): the row means and ``1 / sqrt(var + epsilon)``.
    """
    rows, length = x2.shape
    if per_q * span != length or scale.size != period * per_q or bias.size != period * per_q:
        raise ValueError(f"normalize_rows: affine map (period={period}, per_q={per_q}, span={span}) with "
                         f"{scale.size} scales and {bias.size} biases does not fit rows of length {length}")
    y = np.empty((rows, length), dtype=np.float32)
    if rows == 0:
        return y, np.zeros(0), np.zeros(0)
    if length == 0:
        return y, np.zeros(rows), np.full(rows, 1.0 / math.sqrt(epsilon) if epsilon > 0 else math.inf)
    blocks = -(-length // BLOCK)
    sums = np.empty((rows, blocks))
    _block_sums(x2, np.zeros(rows), False, BLOCK, sums)
    mean = sums.sum(axis=1) / length
    _block_sums(x2, mean, True, BLOCK, sums)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.sqrt(sums.sum(axis=1) / length + float(epsilon))
    _affine_rows(x2, mean, inv, scale, bias, int(period), int(per_q), int(span), BLOCK, y)
    return y, mean, inv


def float_input(op: str, x) -> np.ndarray:
    """``x`` as a C-contiguous float32 array; raises ValueError for non-float input."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"{op}: expected a float tensor, got dtype {x.dtype}")
    return np.ascontiguousarray(x, dtype=np.float32)


def affine_param(op: str, label: str, value, shape) -> np.ndarray:
    """``value`` broadcast to ``shape`` and flattened (float64 stays float64, other floats become float32;
    no copy when it already has that shape); raises ValueError if it does not broadcast."""
    arr = np.asarray(value)
    arr = arr.astype(np.float64 if arr.dtype == np.float64 else np.float32, copy=False)
    while arr.ndim > len(shape) and arr.shape[0] == 1:
        arr = arr[0]
    try:
        return np.ascontiguousarray(np.broadcast_to(arr, tuple(shape))).reshape(-1)
    except ValueError:
        raise ValueError(f"{op}: {label} of shape {np.shape(value)} does not broadcast to {tuple(shape)}") from None


def layer_normalization(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1):
    """ONNX ``LayerNormalization`` (opset 17).

    Over the axes ``axis, ..., rank-1`` (the normalized shape ``D``):
    ``mean = E[x]``, ``inv_std = 1 / sqrt(E[(x - mean)^2] + epsilon)``,
    ``Y = (x - mean) * inv_std * Scale + B``.  Statistics are accumulated in
    float64 whatever ``stash_type`` says (at least its precision).

    Parameters
    ----------
    x : ndarray
        Float tensor, rank >= 1.
    scale : ndarray
        Broadcastable to ``D``.
    b : ndarray or None
        Bias, broadcastable to ``D``; omitted means 0.
    axis : int
        First normalized axis; negative counts from the end.
    epsilon : float
    stash_type : int
        ONNX dtype code of ``Mean`` and ``InvStdDev``: 1 (float), 10 (float16) or 11 (double).

    Returns
    -------
    (Y, Mean, InvStdDev) : tuple of ndarray
        ``Y`` has the shape and dtype of ``x``; ``Mean`` and ``InvStdDev`` have
        shape ``x.shape[:axis] + (1,) * (rank - axis)``.
    """
    rank = np.ndim(x)
    if rank == 0:
        raise ValueError("LayerNormalization: expected an input of rank >= 1, got a scalar")
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(f"LayerNormalization: axis {axis} is out of range for input of rank {rank}")
    if int(stash_type) not in STASH_DTYPES:
        raise ValueError(f"LayerNormalization: stash_type {stash_type} is not supported; "
                         f"expected one of {sorted(STASH_DTYPES)} (float, float16, double)")
    dtype = np.asarray(x).dtype
    x = float_input("LayerNormalization", x)
    axis %= rank
    norm_shape = x.shape[axis:]
    inner = math.prod(norm_shape)
    g = affine_param("LayerNormalization", "Scale", scale, norm_shape)
    c = np.zeros(inner, dtype=np.float32) if b is None else affine_param("LayerNormalization", "B", b, norm_shape)
    y, mean, inv = normalize_rows(x.reshape(-1, inner) if inner else x.reshape(math.prod(x.shape[:axis]), 0),
                                  g, c, float(epsilon), 1, inner, 1)
    stat_shape = x.shape[:axis] + (1,) * (rank - axis)
    stash = STASH_DTYPES[int(stash_type)]
    return (y.reshape(x.shape).astype(dtype, copy=False),
            mean.astype(stash).reshape(stat_shape), inv.astype(stash).reshape(stat_shape))
