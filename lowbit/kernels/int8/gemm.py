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
from lowbit.kernels.int8.common import (activation, as_bytes, bias_of, output_dtype, output_range, requant_params,
                                        requantize_rows, zero_point_of)
from lowbit.kernels.int8.tile import LANES, TILE_M, TILE_P, madd_tile

# Tiles of rows packed together by one task.
_TILES_PER_BLOCK = 4


@jit(multithread=True)
def _gemm_kernel(a, wpk, bias, mult, shift, y, n, k, m, mp, kq, zp_a, zp_y, qmin, qmax):
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
                requantize_rows(acc, TILE_P, bias, mult, shift, mt, rows_m, zp_y, qmin, qmax, qb)
                for r in range(rows_m):
                    for c in range(nvalid):
                        y[(n0 + p0 + c) * m + mt + r] = qb[r * TILE_P + c]


def gemm_int8(a_q, w_q, bias_q, multiplier, shift, *, a_zero_point, y_zero_point, qmin, qmax, y_signed=0):
    """Integer Gemm ``A @ W.T`` with int32 accumulation and fixed-point requantization.

    ``acc[n, m] = bias_q[m] + sum_k (a_q[n, k] - a_zero_point) * w_q[m, k]``,
    exact in int32 (int16 x int16 products summed in pairs; no saturating
    instruction is used), then, in int64,

    ``y[n, m] = clamp(y_zero_point + ((acc * M0[m] + 2^(n[m]-1)) >> n[m]), qmin, qmax)``

    (arithmetic shift: ties round toward +inf).

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
    a_zero_point : int
        Zero point of ``a_q``.
    y_zero_point, qmin, qmax : int
        Output zero point and clamp bounds.
    y_signed : int
        0: uint8 output; 1: int8 output.

    Returns
    -------
    ndarray
        uint8 or int8 (N, M) (or ``a_q.shape[:-1] + (M,)``), C-contiguous.
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
    dtype = output_dtype(y_signed)
    zp_y = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    qmin, qmax = output_range(op, qmin, qmax, dtype)
    bias = bias_of(op, bias_q, m)
    mult, shifts = requant_params(op, multiplier, shift, m)
    y = np.empty((n, m), dtype=dtype)
    if y.size == 0:
        return y.reshape(lead + (m,))
    kq = max(1, (k + 1) // 2)
    mp = -(-m // TILE_M) * TILE_M
    w16 = np.zeros((mp, 2 * kq), dtype=np.int16)
    w16[:m, :k] = w
    _gemm_kernel(a2.reshape(-1), w16.view(np.int32).reshape(-1), bias, mult, shifts, as_bytes(y),
                 n, k, m, mp, kq, zp_a, zp_y, qmin, qmax)
    return y.reshape(lead + (m,))
