"""fp32 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3).

Each 2x2 block of outputs (a *tile*) of one output channel is

.. math:: Y = A^T \\Big[ \\sum_c (G\\,g_{m,c}\\,G^T) \\odot (B^T d_c\\, B) \\Big] A

where :math:`d_c` is the 4x4 input patch under the tile in channel ``c`` and
:math:`g_{m,c}` the 3x3 kernel (Lavin & Gray, *Fast Algorithms for
Convolutional Neural Networks*, 2016).  The transforms cost additions only,
so the multiply-adds per output fall from 9 C to 4 C (2.25x fewer).  The
sum over channels, for each of the 16 transform points :math:`\\xi`, is a
product ``M[ξ] = U[ξ] V[ξ]`` of the transformed weights ``U[ξ]`` (M x C) and
inputs ``V[ξ]`` (C x tiles): 16 small GEMMs.

Numerics: the input and output transforms have coefficients 0 and ±1; ``U``
(coefficients ±1/2) is computed in float64 and rounded once to float32.  All
float32 arithmetic is IEEE (no fastmath: no reassociation, no FMA
contraction), in a fixed order per output element, so results do not depend
on threads, blocking or batch composition, bit for bit.  They differ from a
direct float32 sum by a few ulps of the transformed partial sums (whose
magnitudes reach about 4x the input's): ~3e-7 of the output's scale on
unit-scale data, checked against a float64 sum in the tests.

Layout: work goes by blocks of whole images (about :data:`_TILES` tiles).
A thread copies each channel of the block into a zero-padded plane and
transforms it into ``V[ξ*(C+1) + c, t]`` (tiles contiguous), then, for 4
output channels at a time, forms ``M[ξ, 0:4, t]`` by a multiply-add loop over
tiles (8 input channels per pass: 32 multiply-adds per 12 loads and 4 stores
per vector of tiles) and transforms it back into the 2x2 output blocks,
adding the bias and clamping (lowbit's fused activation).
"""
from __future__ import annotations

import numpy as np

from lowbit.config import jit
from lowbit.kernels.float.gemm import claim, clamp, round_up, run_threads

# Images per block: enough for at least _TILES tiles (longer multiply-add
# loops run faster: 256 measured best of 128-1024), unless the block's
# transformed input V (16 * (C + 1) * tiles floats) would exceed _V_FLOATS (1 MiB).
_V_FLOATS = 1 << 18
_TILES = 256
# Input channels per multiply-add pass (the transformed weights are padded to it).
_C_STEP = 8
# Output channels per pass.
_M_STEP = 4
# Floats of slack at the end of each row of V and M (rows then do not start at
# power-of-two strides, whose streams would share L1 sets).
_SKEW = 16

# G (4x3), the weight transform.
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def transform_weights(w):
    """``U[ξ, m, c]`` = :math:`(G\\,g_{m,c}\\,G^T)_\\xi`, zero-padded to multiples of 4 (m) and 8 (c).

    Parameters
    ----------
    w : ndarray
        (M, C, 3, 3) float weights.

    Returns
    -------
    ndarray
        float32 (16, round_up(M, 4), round_up(C, 8)).
    """
    m_out, c_in = w.shape[:2]
    n = m_out * c_in
    right = (w.astype(np.float64).reshape(n * 3, 3) @ _G.T).reshape(n, 3, 4)  # g G^T
    u = np.tensordot(_G, right, axes=([1], [1])).transpose(0, 2, 1).reshape(16, m_out, c_in)  # G (g G^T)
    out = np.zeros((16, round_up(m_out, _M_STEP), round_up(c_in, _C_STEP)), dtype=np.float32)
    out[:, :m_out, :c_in] = u
    return out


@jit
def _input_transform(x, v, img0, count, c_in, h, w_in, ph, pw, th, tw, plane):
    """``V[ξ*(cp + 1) + c, t] = (B^T d_t B)_ξ`` for the tiles ``t`` of images ``img0 .. img0+count``.

    ``plane`` (2*th + 2, 2*tw + 2) receives one zero-padded channel at a time
    (its border is zeroed once and never written).  The 16 outputs of a tile
    go to 16 rows of ``V``; LLVM does not vectorise a loop with that many
    output streams, so this loop is scalar (about 5 ns a tile and channel).
    """
    # Unsigned indices: Numba emits no negative-index wraparound for them.
    one, two, three = np.uint64(1), np.uint64(2), np.uint64(3)
    cp = v.shape[0] // 16 - 1  # rows of transform point ξ start at ξ*(cp + 1): see _worker
    hp, wp = plane.shape
    for q in range(hp):
        for s in range(wp):
            plane[q, s] = 0.0
    for c in range(c_in):
        for k in range(count):
            img = img0 + k
            for ih in range(h):
                r = ih + ph
                if r < hp:
                    for iw in range(np.uint64(min(w_in, wp - pw))):
                        plane[r, np.uint64(pw) + iw] = x[img, c, ih, iw]
            for ty in range(th):
                r0 = 2 * ty
                t0 = np.uint64(k * th * tw + ty * tw)
                for tx in range(np.uint64(tw)):
                    s = tx + tx
                    a0 = plane[r0, s] - plane[r0, s + two]
                    a1 = plane[r0, s + one] + plane[r0, s + two]
                    a2 = plane[r0, s + two] - plane[r0, s + one]
                    a3 = plane[r0, s + one] - plane[r0, s + three]
                    b0 = plane[r0 + 1, s] - plane[r0 + 1, s + two]
                    b1 = plane[r0 + 1, s + one] + plane[r0 + 1, s + two]
                    b2 = plane[r0 + 1, s + two] - plane[r0 + 1, s + one]
                    b3 = plane[r0 + 1, s + one] - plane[r0 + 1, s + three]
                    c0 = plane[r0 + 2, s] - plane[r0 + 2, s + two]
                    c1 = plane[r0 + 2, s + one] + plane[r0 + 2, s + two]
                    c2 = plane[r0 + 2, s + two] - plane[r0 + 2, s + one]
                    c3 = plane[r0 + 2, s + one] - plane[r0 + 2, s + three]
                    d0 = plane[r0 + 3, s] - plane[r0 + 3, s + two]
                    d1 = plane[r0 + 3, s + one] + plane[r0 + 3, s + two]
                    d2 = plane[r0 + 3, s + two] - plane[r0 + 3, s + one]
                    d3 = plane[r0 + 3, s + one] - plane[r0 + 3, s + three]
                    t = t0 + tx
                    v[c, t] = a0 - c0
                    v[(cp + 1) + c, t] = a1 - c1
                    v[2 * (cp + 1) + c, t] = a2 - c2
                    v[3 * (cp + 1) + c, t] = a3 - c3
                    v[4 * (cp + 1) + c, t] = b0 + c0
                    v[5 * (cp + 1) + c, t] = b1 + c1
                    v[6 * (cp + 1) + c, t] = b2 + c2
                    v[7 * (cp + 1) + c, t] = b3 + c3
                    v[8 * (cp + 1) + c, t] = c0 - b0
                    v[9 * (cp + 1) + c, t] = c1 - b1
                    v[10 * (cp + 1) + c, t] = c2 - b2
                    v[11 * (cp + 1) + c, t] = c3 - b3
                    v[12 * (cp + 1) + c, t] = b0 - d0
                    v[13 * (cp + 1) + c, t] = b1 - d1
                    v[14 * (cp + 1) + c, t] = b2 - d2
                    v[15 * (cp + 1) + c, t] = b3 - d3


@jit
def _multiply(acc, v, u, xi, m0, tp):
    """``acc[xi*4 + r, t] = sum_c u[xi, m0 + r, c] * v[xi*(cp + 1) + c, t]`` for ``r < 4``, ``t < tp``."""
    cp = u.shape[2]
    a0, a1, a2, a3 = xi * 4, xi * 4 + 1, xi * 4 + 2, xi * 4 + 3
    for t in range(tp):
        acc[a0, t] = 0.0
        acc[a1, t] = 0.0
        acc[a2, t] = 0.0
        acc[a3, t] = 0.0
    for c0 in range(0, cp, 8):
        r = xi * (cp + 1) + c0
        u00, u01, u02, u03, u04, u05, u06, u07 = (u[xi, m0, c0], u[xi, m0, c0 + 1], u[xi, m0, c0 + 2],
                                                  u[xi, m0, c0 + 3], u[xi, m0, c0 + 4], u[xi, m0, c0 + 5],
                                                  u[xi, m0, c0 + 6], u[xi, m0, c0 + 7])
        u10, u11, u12, u13, u14, u15, u16, u17 = (u[xi, m0 + 1, c0], u[xi, m0 + 1, c0 + 1], u[xi, m0 + 1, c0 + 2],
                                                  u[xi, m0 + 1, c0 + 3], u[xi, m0 + 1, c0 + 4],
                                                  u[xi, m0 + 1, c0 + 5], u[xi, m0 + 1, c0 + 6],
                                                  u[xi, m0 + 1, c0 + 7])
        u20, u21, u22, u23, u24, u25, u26, u27 = (u[xi, m0 + 2, c0], u[xi, m0 + 2, c0 + 1], u[xi, m0 + 2, c0 + 2],
                                                  u[xi, m0 + 2, c0 + 3], u[xi, m0 + 2, c0 + 4],
                                                  u[xi, m0 + 2, c0 + 5], u[xi, m0 + 2, c0 + 6],
                                                  u[xi, m0 + 2, c0 + 7])
        u30, u31, u32, u33, u34, u35, u36, u37 = (u[xi, m0 + 3, c0], u[xi, m0 + 3, c0 + 1], u[xi, m0 + 3, c0 + 2],
                                                  u[xi, m0 + 3, c0 + 3], u[xi, m0 + 3, c0 + 4],
                                                  u[xi, m0 + 3, c0 + 5], u[xi, m0 + 3, c0 + 6],
                                                  u[xi, m0 + 3, c0 + 7])
        for t in range(tp):
            x0 = v[r, t]; x1 = v[r + 1, t]; x2 = v[r + 2, t]; x3 = v[r + 3, t]
            x4 = v[r + 4, t]; x5 = v[r + 5, t]; x6 = v[r + 6, t]; x7 = v[r + 7, t]
            acc[a0, t] += ((u00 * x0 + u01 * x1) + (u02 * x2 + u03 * x3)) + ((u04 * x4 + u05 * x5)
                                                                            + (u06 * x6 + u07 * x7))
            acc[a1, t] += ((u10 * x0 + u11 * x1) + (u12 * x2 + u13 * x3)) + ((u14 * x4 + u15 * x5)
                                                                            + (u16 * x6 + u17 * x7))
            acc[a2, t] += ((u20 * x0 + u21 * x1) + (u22 * x2 + u23 * x3)) + ((u24 * x4 + u25 * x5)
                                                                            + (u26 * x6 + u27 * x7))
            acc[a3, t] += ((u30 * x0 + u31 * x1) + (u32 * x2 + u33 * x3)) + ((u34 * x4 + u35 * x5)
                                                                            + (u36 * x6 + u37 * x7))


@jit
def _output_transform(acc, y, bias, m0, rows, img0, count, th, tw, lo, hi, sums, pool):
    """``Y = A^T M A`` for output channels ``m0 .. m0+rows`` from ``acc[ξ*4 + r, t]``, plus bias, clamped.

    In two passes: ``sums`` (8, tiles) receives :math:`A^T M` (the column sums
    ``M0j + M1j + M2j`` and differences ``M1j - M2j - M3j``, vectorised), then
    each output row is formed along the tile row.  With ``pool`` each tile's
    2x2 outputs are reduced to their maximum (a 2x2, stride-2 MaxPool, in the
    order of :func:`lowbit.kernels.float.pool.max_pool`) and ``y`` is the pooled
    output.
    """
    one = np.uint64(1)
    ninf = np.float32(-np.inf)
    nt = count * th * tw
    for r in range(rows):
        bv = bias[m0 + r]
        for j in range(4):
            pa, pb, pc, pd = 4 * j + r, 4 * (4 + j) + r, 4 * (8 + j) + r, 4 * (12 + j) + r
            for t in range(nt):
                sums[j, t] = acc[pa, t] + acc[pb, t] + acc[pc, t]
            for t in range(nt):
                sums[4 + j, t] = acc[pb, t] - acc[pc, t] - acc[pd, t]
        if pool:
            for k in range(count):
                for ty in range(th):
                    t0 = np.uint64(k * th * tw + ty * tw)
                    row = y[img0 + k, m0 + r, ty]
                    for tx in range(np.uint64(tw)):
                        t = t0 + tx
                        a, b, c, d = sums[0, t], sums[1, t], sums[2, t], sums[3, t]
                        e, f, g, h = sums[4, t], sums[5, t], sums[6, t], sums[7, t]
                        y00 = clamp(a + b + c + bv, lo, hi)
                        y01 = clamp(b - c - d + bv, lo, hi)
                        y10 = clamp(e + f + g + bv, lo, hi)
                        y11 = clamp(f - g - h + bv, lo, hi)
                        row[tx] = max(max(max(ninf, y00), y10), max(max(ninf, y01), y11))
            continue
        # An odd output height or width: the last tile row or column is half used.
        ho, wo = y.shape[2], y.shape[3]
        full = np.uint64(wo // 2)
        for k in range(count):
            for ty in range(th):
                t0 = np.uint64(k * th * tw + ty * tw)
                for q in range(min(2, ho - 2 * ty)):
                    row = y[img0 + k, m0 + r, 2 * ty + q]
                    s = 4 * q
                    for tx in range(full):
                        t = t0 + tx
                        a, b, c, d = sums[s, t], sums[s + 1, t], sums[s + 2, t], sums[s + 3, t]
                        row[tx + tx] = clamp(a + b + c + bv, lo, hi)
                        row[tx + tx + one] = clamp(b - c - d + bv, lo, hi)
                    if wo % 2:
                        t = t0 + full
                        row[wo - 1] = clamp(sums[s, t] + sums[s + 1, t] + sums[s + 2, t] + bv, lo, hi)


@jit
def _worker(x, u, bias, y, ph, pw, th, tw, pool, per_block, counter, lo, hi):
    n_img, c_in, h, w_in = x.shape
    m_out = y.shape[1]
    mp, cp = u.shape[1], u.shape[2]
    tp = (per_block * th * tw + 15) // 16 * 16
    # One spare row per transform point: with power-of-two strides the 16 rows a
    # tile writes would fall into one L1 set.
    v = np.zeros((16 * (cp + 1), tp + _SKEW), dtype=np.float32)
    acc = np.empty((16 * _M_STEP, tp + _SKEW), dtype=np.float32)
    plane = np.empty((2 * th + 2, 2 * tw + 2), dtype=np.float32)
    sums = np.empty((8, tp + _SKEW), dtype=np.float32)
    blocks = (n_img + per_block - 1) // per_block
    while True:
        item = claim(counter)
        if item >= blocks:
            break
        img0 = item * per_block
        count = min(per_block, n_img - img0)
        _input_transform(x, v, img0, count, c_in, h, w_in, ph, pw, th, tw, plane)
        for m0 in range(0, mp, _M_STEP):
            for xi in range(16):
                _multiply(acc, v, u, xi, m0, count * th * tw)
            _output_transform(acc, y, bias, m0, min(_M_STEP, m_out - m0), img0, count, th, tw, lo, hi, sums, pool)


def images_per_block(n_img, c_in, th, tw):
    """Images per block: enough for :data:`_TILES` tiles unless V would exceed :data:`_V_FLOATS` (at least 1).

    ``th * tw`` tiles per image, ``c_in`` input channels.
    """
    per_image = th * tw
    cp = round_up(c_in, _C_STEP)
    return max(1, min(n_img, -(-_TILES // per_image), _V_FLOATS // (16 * (cp + 1) * per_image)))


def conv3x3(x, w, bias, y, ph, pw, lo, hi, nthreads, pool=False):
    """Winograd F(2x2, 3x3) convolution, stride 1, no dilation, one group, into ``y``.

    ``Y[n, m, oh, ow] = clip(B[m] + sum_{c,i,j} W[m, c, i, j] Xpad[n, c, oh + i, ow + j], lo, hi)``
    with ``Xpad`` zero-padded by ``ph`` rows on top and ``pw`` columns on the left (and as
    many as the output size needs at the bottom and right).  With ``pool``,
    ``y`` receives ``max_{a,b<2} Y[n, m, 2p + a, 2q + b]`` instead (a fused
    2x2, stride-2 MaxPool; ``y`` is then half the conv output's height and width,
    rounded down as in MaxPool).  An odd output size is computed on whole tiles
    over the zero padding, and the extra row or column dropped.

    Parameters
    ----------
    x : ndarray
        float32 (N, C, H, W), C-contiguous.
    w : ndarray
        float32 (M, C, 3, 3).
    bias : ndarray
        float32 (M,).
    y : ndarray
        float32 (N, M, oH, oW) (with ``pool``: (N, M, oH // 2, oW // 2)), C-contiguous; overwritten.
    ph, pw : int
        Top and left padding.
    lo, hi : numpy.float32
        Fused clamp bounds.
    nthreads : int
    pool : bool
        Fuse a 2x2, stride-2 MaxPool.
    """
    n_img = x.shape[0]
    th, tw = (y.shape[2], y.shape[3]) if pool else (-(-y.shape[2] // 2), -(-y.shape[3] // 2))
    u = transform_weights(w)
    per_block = images_per_block(n_img, x.shape[1], th, tw)
    if -(-n_img // per_block) < nthreads:
        per_block = -(-n_img // nthreads)
    run_threads(_worker, (x, u, bias, y, ph, pw, th, tw, pool, per_block, np.zeros(1, np.int64), lo, hi),
                nthreads)
