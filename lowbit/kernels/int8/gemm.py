"""Integer Gemm: ``y[n, m] = requantize(sum_k (a[n, k] - zp_a) * w[m, k] + bias[m])``.

Rows of ``a`` play the part of the output positions of a convolution: each
parallel task packs a block of rows into an int16 panel of ``a - zp_a`` pairs
and runs :func:`lowbit.kernels.int8.tile.madd_tile` over it for every block
of 4 output channels.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.int8.common import (activation, as_bytes, bias_of, dequantize_rows, float_output, output_dtype,
                                        requant_output, requant_params, requantize_rows, zero_point_of)
from lowbit.kernels.int8.tile import LANES, TILE_M, TILE_P, madd_tile

# Tiles of rows packed together by one task.
_TILES_PER_BLOCK = 4


@jit(multithread=True)
def _gemm_kernel(a, wpk, bias, mult, shift, y, n, k, m, mp, kq, zp_a, zp_y, qmin, qmax, fscale, yf, flo, fhi, fmode):
    # fmode: float32 output yf (dequantize_rows) instead of the requantized bytes y.
    block = _TILES_PER_BLOCK * TILE_P
    blocks = (n + block - 1) // block
    for bi in prange(blocks):
        n0 = bi * block
        rows = min(block, n - n0)
        pp = (rows + LANES - 1) // LANES * LANES
        words = np.zeros(kq * pp, dtype=np.int32)
        panel = words.view(np.int16)
        offs = np.arange(kq) * pp
        acc = np.empty(TILE_M * TILE_P, dtype=np.int32)
        qb = np.empty(TILE_M * TILE_P, dtype=y.dtype)
        fb = np.empty(TILE_M * TILE_P, dtype=yf.dtype)
        # panel[q, p, e] = a[n0 + p, 2q + e] - zp_a (0 past the last column).
        for p in range(rows):
            arow = a[(n0 + p) * k:(n0 + p + 1) * k]
            for kk in range(k):
                panel[((kk >> 1) * pp + p) * 2 + (kk & 1)] = np.int16(arow[kk]) - zp_a
        for p0 in range(0, pp, TILE_P):
            nvalid = min(TILE_P, rows - p0)
            for mt in range(0, mp, TILE_M):
                madd_tile(words, offs, p0, wpk, mt * kq, kq, acc, 0, TILE_P, (nvalid + LANES - 1) // LANES)
                rows_m = min(TILE_M, m - mt)
                if fmode:
                    dequantize_rows(acc, TILE_P, bias, fscale, mt, rows_m, flo, fhi, fb)
                    for r in range(rows_m):
                        for c in range(nvalid):
                            yf[(n0 + p0 + c) * m + mt + r] = fb[r * TILE_P + c]
                else:
                    requantize_rows(acc, TILE_P, bias, mult, shift, mt, rows_m, zp_y, qmin, qmax, qb)
                    for r in range(rows_m):
                        for c in range(nvalid):
                            y[(n0 + p0 + c) * m + mt + r] = qb[r * TILE_P + c]


def gemm_int8(a_q, w_q, bias_q, multiplier=None, shift=None, y_scale=None, *, a_zero_point, y_zero_point=None,
              qmin=None, qmax=None, y_signed=0, y_min=-np.inf, y_max=np.inf):
    """Integer Gemm ``A @ W.T`` with int32 accumulation and fixed-point requantization (or float output).

    ``acc[n, m] = bias_q[m] + sum_k (a_q[n, k] - a_zero_point) * w_q[m, k]``,
    exact in int32 (int16 x int16 products summed in pairs; no saturating
    instruction is used), then, in int64,

    ``y[n, m] = clamp(y_zero_point + ((acc * M0[m] + 2^(n[m]-1)) >> n[m]), qmin, qmax)``

    (arithmetic shift: ties round toward +inf).  Float-output form (``y_scale``
    given; ``multiplier``, ``shift``, ``y_zero_point``, ``qmin``, ``qmax`` unused), in float32:

    ``y[n, m] = min(max(float32(acc) * y_scale[m], y_min), y_max)``

    (the int32 sum rounded once to float32, then one float32 product).

    Parameters
    ----------
    a_q : ndarray
        uint8 or int8 (N, K); leading axes beyond two are flattened into N
        (MatMul with constant weights), the result keeps them.
    w_q : ndarray
        int8 (M, K): the weights already transposed to out x in.
    bias_q : ndarray or None
        int32 (M,) at scale ``s_a * s_w[m]``.
    multiplier, shift : ndarray
        int64 (M,): ``M0`` in [0, 2^31) and ``n`` in [1, 62].
    y_scale : ndarray, optional
        float32 (M,) ``s_a * s_w[m]``: return float32 instead of requantizing.
    a_zero_point : int
        Zero point of ``a_q``.
    y_zero_point, qmin, qmax : int
        Output zero point and clamp bounds.
    y_signed : int
        0: uint8 output; 1: int8 output.
    y_min, y_max : float
        Clamp of the float output (a fused ReLU or Clip).

    Returns
    -------
    ndarray
        uint8, int8 or (float output) float32 (N, M) (or ``a_q.shape[:-1] + (M,)``), C-contiguous.
    """
    op = "gemm_int8"
    a = activation(op, "a_q", a_q)
    w = np.asarray(w_q)
    if w.dtype != np.int8 or w.ndim != 2:
        raise ValueError(f"{op}: weights must be a 2-D int8 array (M, K), got {w.dtype} {w.shape}")
    if a.ndim < 2 or a.shape[-1] != w.shape[1]:
        raise ValueError(f"{op}: input {a.shape} does not match weights (M, K) = {w.shape}:"
                         f" need an input of at least 2 axes whose last axis is K")
    lead = a.shape[:-1]
    a2 = a.reshape(-1, a.shape[-1])
    n, k = a2.shape
    m = w.shape[0]
    zp_a = zero_point_of(op, "a_zero_point", a_zero_point, a.dtype)
    bias = bias_of(op, bias_q, m)
    fmode = y_scale is not None
    if fmode:
        fscale, flo, fhi = float_output(op, y_scale, m, y_min, y_max)
        zp_y, qmin, qmax, mult, shifts = 0, 0, 0, np.zeros(m, np.int64), np.ones(m, np.int64)
        yf = np.empty((n, m), dtype=np.float32)
        y, out = np.empty(0, dtype=np.uint8), yf
    else:
        dtype = output_dtype(y_signed)
        zp_y, qmin, qmax = requant_output(op, y_zero_point, qmin, qmax, dtype)
        mult, shifts = requant_params(op, multiplier, shift, m)
        fscale, flo, fhi = np.ones(m, np.float32), np.float32(0), np.float32(0)
        y = np.empty((n, m), dtype=dtype)
        yf, out = np.empty(0, dtype=np.float32), y
    if out.size == 0:
        return out.reshape(lead + (m,))
    kq = max(1, (k + 1) // 2)
    mp = -(-m // TILE_M) * TILE_M
    w16 = np.zeros((mp, 2 * kq), dtype=np.int16)
    w16[:m, :k] = w
    _gemm_kernel(a2.reshape(-1), w16.view(np.int32).reshape(-1), bias, mult, shifts, as_bytes(y),
                 n, k, m, mp, kq, zp_a, zp_y, qmin, qmax, fscale, yf.reshape(-1), flo, fhi, fmode)
    return out.reshape(lead + (m,))
