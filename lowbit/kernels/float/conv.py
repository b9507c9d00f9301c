"""fp32 Conv (ONNX semantics, NCHW input and output), four kernels behind one function.

* **3x3, stride 1, one group, at least 16 input and output channels, and
  enough 2x2 output tiles per block of images** (at least 128): Winograd's
  F(2x2, 3x3) (:mod:`lowbit.kernels.float.winograd`), 2.25x fewer
  multiply-adds than the direct sum.
* **other 3x3, stride 1** (with 1 or at least 4 output channels per group;
  any padding, vertical dilation): a direct kernel.  A few images are copied one
  under the other into a zero-padded plane per input channel, laid out so
  that every tap ``(i, j)`` of every output position is one contiguous run
  of that plane at a fixed offset.  A pass over the plane then adds the 9
  taps of one input channel to 4 output-channel accumulator rows (1 for
  depthwise convolutions), a loop LLVM vectorises with 36 multiply-adds per
  vector of positions and no im2col copy.  The price is the positions
  computed on the shared pad rows and columns and discarded (7% more work at
  28x28, 27% at 8x8).
* **other shapes with a larger per-group reduction** (and 3x3 on images so
  small that the direct kernel's pads would cost more): im2col + GEMM.  Each
  thread copies the input rows it needs into a zero-padded channels-last
  slab (one kernel row of a patch is then a contiguous run of ``kW * C``
  floats), gathers blocks of output positions into a panel
  ``cols[p, (kh, kw, c)]`` and multiplies it with the weights packed as
  ``wp[g, m, (kh, kw, c)]`` by :func:`lowbit.kernels.float.gemm.dot_tile`.
* **tiny per-group reductions** (strided depthwise convolutions, one input
  channel with another kernel size): one ``y_row += w * x_row`` per tap.

All four add the bias and clamp (lowbit's fused activation) while writing
the NCHW output; Winograd can also fuse a following 2x2 max-pool
(``max_pool_2x2``).  Work items (images, and output channels or rows when the
batch is smaller than the thread count) are claimed by the threads as they
come free; an output element's summation order never depends on which
thread computes it, so results are bit-identical for any thread count.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from lowbit.config import jit
from lowbit.kernels.common import conv_shapes, window_attributes
from lowbit.kernels.float import winograd
from lowbit.kernels.float.gemm import K_ALIGN, TILE_M, TILE_N, claim, clamp, dot_tile, round_up, run_threads
from lowbit.kernels.float.pool import max_pool

# Input and output channels from which a 3x3 convolution goes to Winograd
# (measured on the seed CNN, batch 256, one thread: 16->16 channels on 28x28
# about even with the direct kernel, 32->32 on 16x16 1.2-1.4x, 64->64 on 8x8
# 1.3-1.5x faster).
_WINOGRAD_MIN_CHANNELS = 16
# ... and when a block of images has at least this many 2x2 tiles: with many
# channels on small images a block holds one image of few tiles, and the
# multiply-add loops over tiles get too short (measured: 256->256 channels on
# 14x14, 49 tiles, 1.7x slower than the direct kernel; 512 on 7x7, 3.5x).
_WINOGRAD_MIN_TILES = 128
# Per-group reductions (C/group * kH * kW) up to this size use the direct kernel.
_SMALL_K = 16
# A 3x3 stride-1 convolution goes to im2col + GEMM instead of the direct kernel
# when the direct kernel would compute more than this many positions per
# output (pads of small images) and the reduction is long enough for the GEMM
# to run well (on 8x8 images with 32-64 channels: 63-78 against 51-66 GFLOP/s).
_MAX_WASTE = 1.2
_IM2COL_MIN_K = 144
# The direct 3x3 kernel stacks images until a pass covers about this many
# positions, and splits larger images into passes of about this many
# (4 accumulator rows of it stay in L1).
_STACK_POSITIONS = 1200
# Positions per pass are rounded up to a multiple of this (the widest vector
# of floats), and the planes carry as many floats of zero slack at the end.
_SLACK = 16
# Floats in one im2col panel (96 KiB: stays in L2 while every channel tile sweeps it).
_PANEL_FLOATS = 24576


@jit(fast=True)
def _im2col_worker(x, wp, bias, y, n_img, c_in, h, w_in, groups, mg, mgp, kh_, kw_,
                   sh, sw, dh, dw, ph, pw, ho, wo, kp, split, rows_max, ws, block, nthreads, counter,
                   lo, hi):
    cg = c_in // groups
    kg = cg * kh_ * kw_
    m_out = groups * mg
    items = n_img * split
    # With unit dilation along W and one group, a kernel row of a patch is one
    # contiguous run of kW * C floats in the slab.
    merge = dw == 1 and groups == 1
    run = kw_ * c_in if merge else cg
    runs = 1 if merge else kw_
    slab = np.empty(rows_max * ws * c_in, dtype=np.float32)
    cols = np.zeros(block * kp, dtype=np.float32)
    while True:
        item = claim(counter)
        if item >= items:
            break
        img = item // split
        part = item % split
        oh0 = part * ho // split
        oh1 = (part + 1) * ho // split
        if oh0 == oh1:
            continue
        ih0 = oh0 * sh - ph
        rows = (oh1 - 1 - oh0) * sh + (kh_ - 1) * dh + 1
        # Input rows [ih0, ih0 + rows) -> zero-padded channels-last slab.
        # (Unsigned offsets instead of slices here and below: no wraparound code,
        # no reference counting per row or patch.)
        plane_u = np.uint64(h * w_in)
        for r in range(rows):
            ih = ih0 + r
            row0 = np.uint64(r * ws * c_in)
            if ih < 0 or ih >= h:
                for q in range(np.uint64(ws * c_in)):
                    slab[row0 + q] = 0.0
                continue
            for jw in range(ws):
                iw = jw - pw
                d0 = row0 + np.uint64(jw * c_in)
                if iw < 0 or iw >= w_in:
                    for c in range(np.uint64(c_in)):
                        slab[d0 + c] = 0.0
                else:
                    s0 = np.uint64((img * c_in * h + ih) * w_in + iw)
                    for c in range(np.uint64(c_in)):
                        slab[d0 + c] = x[s0 + c * plane_u]
        p_begin = oh0 * wo
        p_end = oh1 * wo
        for g in range(groups):
            for p0 in range(p_begin, p_end, block):
                npos = min(block, p_end - p0)
                npad = (npos + TILE_N - 1) // TILE_N * TILE_N
                for q in range(npos):
                    oh = (p0 + q) // wo
                    ow = (p0 + q) % wo
                    d = np.uint64(q * kp)
                    for i in range(kh_):
                        s = ((oh - oh0) * sh + i * dh) * ws * c_in + ow * sw * c_in + g * cg
                        for j in range(runs):
                            s_j = np.uint64(s + j * dw * c_in)
                            for e in range(np.uint64(run)):
                                cols[d + e] = slab[s_j + e]
                            d += np.uint64(run)
                for q in range(npos, npad):
                    d = np.uint64(q * kp)
                    for e in range(np.uint64(kg)):
                        cols[d + e] = 0.0
                for it in range(0, mgp, TILE_M):
                    ia = (g * mgp + it) * kp
                    for jt in range(0, npad, TILE_N):
                        acc = dot_tile(wp, ia, cols, jt * kp, kp)
                        for r in range(TILE_M):
                            if it + r < mg:
                                mo = g * mg + it + r
                                bv = bias[mo]
                                o = (img * m_out + mo) * ho * wo + p0 + jt
                                for c in range(TILE_N):
                                    if jt + c < npos:
                                        y[o + c] = clamp(acc[r * TILE_N + c] + bv, lo, hi)


@jit
def _taps3x3(acc, npos, pitch, xp, off, row, wq):
    """``acc[r, p] += sum_{i,j} wq[r, i, j] * xp[off + p + i*row + j]`` for 4 rows ``r``."""
    a0 = acc[0:npos]
    a1 = acc[pitch:pitch + npos]
    a2 = acc[2 * pitch:2 * pitch + npos]
    a3 = acc[3 * pitch:3 * pitch + npos]
    xa = xp[off:]
    xb = xp[off + row:]
    xc = xp[off + 2 * row:]
    # Weights in locals (loads inside the loop could alias acc) and constant
    # column offsets (a run-time offset defeats LLVM's vectoriser): both
    # measured at ~5x.  No fastmath: reassociation turns the three-way tree
    # below into one serial chain of 9 FMAs per row (measured 86 against 99
    # GFLOP/s on one Zen 4 core).
    w00, w01, w02, w03, w04, w05, w06, w07, w08 = (
        wq[0], wq[1], wq[2], wq[3], wq[4], wq[5], wq[6], wq[7], wq[8])
    w10, w11, w12, w13, w14, w15, w16, w17, w18 = (
        wq[9], wq[10], wq[11], wq[12], wq[13], wq[14], wq[15], wq[16], wq[17])
    w20, w21, w22, w23, w24, w25, w26, w27, w28 = (
        wq[18], wq[19], wq[20], wq[21], wq[22], wq[23], wq[24], wq[25], wq[26])
    w30, w31, w32, w33, w34, w35, w36, w37, w38 = (
        wq[27], wq[28], wq[29], wq[30], wq[31], wq[32], wq[33], wq[34], wq[35])
    for p in range(npos):
        x0 = xa[p]; x1 = xa[p + 1]; x2 = xa[p + 2]
        x3 = xb[p]; x4 = xb[p + 1]; x5 = xb[p + 2]
        x6 = xc[p]; x7 = xc[p + 1]; x8 = xc[p + 2]
        a0[p] += ((w00 * x0 + w01 * x1 + w02 * x2) + (w03 * x3 + w04 * x4 + w05 * x5)
                  + (w06 * x6 + w07 * x7 + w08 * x8))
        a1[p] += ((w10 * x0 + w11 * x1 + w12 * x2) + (w13 * x3 + w14 * x4 + w15 * x5)
                  + (w16 * x6 + w17 * x7 + w18 * x8))
        a2[p] += ((w20 * x0 + w21 * x1 + w22 * x2) + (w23 * x3 + w24 * x4 + w25 * x5)
                  + (w26 * x6 + w27 * x7 + w28 * x8))
        a3[p] += ((w30 * x0 + w31 * x1 + w32 * x2) + (w33 * x3 + w34 * x4 + w35 * x5)
                  + (w36 * x6 + w37 * x7 + w38 * x8))


@jit
def _taps3x3_row(acc, npos, xp, off, row, wq):
    """``acc[p] += sum_{i,j} wq[i, j] * xp[off + p + i*row + j]``: :func:`_taps3x3` for one output channel."""
    a0 = acc[0:npos]
    xa = xp[off:]
    xb = xp[off + row:]
    xc = xp[off + 2 * row:]
    w0, w1, w2, w3, w4, w5, w6, w7, w8 = wq[0], wq[1], wq[2], wq[3], wq[4], wq[5], wq[6], wq[7], wq[8]
    for p in range(npos):
        a0[p] += ((w0 * xa[p] + w1 * xa[p + 1] + w2 * xa[p + 2])
                  + (w3 * xb[p] + w4 * xb[p + 1] + w5 * xb[p + 2])
                  + (w6 * xc[p] + w7 * xc[p + 1] + w8 * xc[p + 2]))


@jit
def _direct3x3_worker(x, wq, bias, y, n_img, c_in, h, w_in, groups, mg, mgp, dh, ph, pw,
                      ho, wo, pitch, gap, stack, chunk, split, nthreads, counter, lo, hi):
    cg = c_in // groups
    m_out = groups * mg
    # Output channels go by blocks of 4 (one output channel per group, as in
    # depthwise convolutions, by blocks of 1).
    rb = 4 if mgp % 4 == 0 else 1
    blocks = mgp // rb
    # `stack` images are laid out one under the other in a zero-filled plane per
    # input channel: rows of `pitch` >= w_in + pad floats, `gap` zero rows
    # between images (one gap serves as the bottom pad of an image and the top
    # pad of the next, one run of zero columns as the right and left pads).
    # Outputs are computed at every position of that plane, border ones
    # included and discarded, so each tap is one contiguous run.  Positions go
    # by chunks of `chunk_rows` plane rows, so the 4 accumulator rows stay in L1.
    rows = h + gap
    plane = (stack * rows + gap + 1) * pitch
    base = (gap - ph) * pitch
    chunk_rows = max(1, chunk // pitch)
    stacks = (n_img + stack - 1) // stack
    items = stacks * split
    # Only image interiors are ever written, so the pads stay zero; slots of
    # a short last stack keep stale images, which feed only discarded outputs.
    xp = np.zeros(c_in * plane + _SLACK, dtype=np.float32)
    acc = np.empty(rb * (chunk_rows * pitch + _SLACK), dtype=np.float32)
    loaded = -1
    while True:
        item = claim(counter)
        if item >= items:
            break
        img0 = (item // split) * stack
        count = min(stack, n_img - img0)
        part = item % split
        if img0 != loaded:
            loaded = img0
            for k in range(count):
                for c in range(c_in):
                    src = np.uint64(((img0 + k) * c_in + c) * h * w_in)
                    dst = np.uint64(c * plane + (gap + k * rows) * pitch + pw)
                    for ih in range(h):
                        s0, d0 = src + np.uint64(ih * w_in), dst + np.uint64(ih * pitch)
                        for iw in range(np.uint64(w_in)):
                            xp[d0 + iw] = x[s0 + iw]
        out_rows = (count - 1) * rows + ho
        for gb in range(part * groups * blocks // split, (part + 1) * groups * blocks // split):
            g = gb // blocks
            m0 = (gb % blocks) * rb
            for r0 in range(0, out_rows, chunk_rows):
                r1 = min(r0 + chunk_rows, out_rows)
                # A whole number of vectors: the scalar remainder loop would cost as
                # much per position as a vector iteration does per 16.
                n = ((r1 - r0 - 1) * pitch + wo + _SLACK - 1) // _SLACK * _SLACK
                for q in range(rb * n):
                    acc[q] = 0.0
                for ci in range(cg):
                    off = (g * cg + ci) * plane + base + r0 * pitch
                    w0 = (gb * cg + ci) * 9 * rb
                    if rb == 4:
                        _taps3x3(acc, n, n, xp, off, dh * pitch, wq[w0:w0 + 36])
                    else:
                        _taps3x3_row(acc, n, xp, off, dh * pitch, wq[w0:w0 + 9])
                for r in range(rb):
                    if m0 + r < mg:
                        mo = g * mg + m0 + r
                        bv = bias[mo]
                        for row in range(r0, r1):
                            k = row // rows
                            oh = row - k * rows
                            if oh < ho:
                                # Unsigned offsets rather than a slice per row: no
                                # wraparound code and no reference counting per row.
                                o = np.uint64((((img0 + k) * m_out + mo) * ho + oh) * wo)
                                a = np.uint64(r * n + (row - r0) * pitch)
                                for q in range(np.uint64(wo)):
                                    y[o + q] = clamp(acc[a + q] + bv, lo, hi)


@jit
def _direct_worker(x, w, bias, y, n_img, c_in, h, w_in, groups, m_out, kh_, kw_,
                   sh, sw, dh, dw, ph, pw, ho, wo, lo, hi, step, counter):
    cg = c_in // groups
    mg = m_out // groups
    tasks = n_img * m_out
    while True:
        item = claim(counter)
        if item * step >= tasks:
            break
        for task in range(item * step, min(tasks, (item + 1) * step)):
            _direct_plane(x, w, bias, y, task, c_in, h, w_in, m_out, cg, mg, kh_, kw_,
                          sh, sw, dh, dw, ph, pw, ho, wo, lo, hi)


@jit
def _direct_plane(x, w, bias, y, task, c_in, h, w_in, m_out, cg, mg, kh_, kw_,
              sh, sw, dh, dw, ph, pw, ho, wo, lo, hi):
    img = task // m_out
    mo = task % m_out
    g = mo // mg
    plane = y[task * ho * wo:(task + 1) * ho * wo]
    for q in range(ho * wo):
        plane[q] = 0.0
    for oh in range(ho):
        yrow = plane[oh * wo:(oh + 1) * wo]
        for ci in range(cg):
            c = g * cg + ci
            for i in range(kh_):
                ih = oh * sh - ph + i * dh
                if ih < 0 or ih >= h:
                    continue
                xrow = x[((img * c_in + c) * h + ih) * w_in:((img * c_in + c) * h + ih + 1) * w_in]
                for j in range(kw_):
                    wv = w[((mo * cg + ci) * kh_ + i) * kw_ + j]
                    off = j * dw - pw
                    # Outputs whose tap lands inside the row: 0 <= ow*sw + off < w_in.
                    ow_lo = 0 if off >= 0 else (-off + sw - 1) // sw
                    ow_hi = 0 if w_in - 1 - off < 0 else min(wo, (w_in - 1 - off) // sw + 1)
                    if ow_hi <= ow_lo:
                        continue
                    yv = yrow[ow_lo:ow_hi]
                    xv = xrow[ow_lo * sw + off:]
                    if sw == 1:
                        for q in range(ow_hi - ow_lo):
                            yv[q] += wv * xv[q]
                    else:
                        for q in range(ow_hi - ow_lo):
                            yv[q] += wv * xv[q * sw]
    bv = bias[mo]
    for q in range(ho * wo):
        plane[q] = clamp(plane[q] + bv, lo, hi)


def _direct3x3(x, w, bias, y, group, mg, cg, dh, ph, pw, pitch, gap, per_image, nthreads, lo, hi):
    """Pack the weights and run :func:`_direct3x3_worker` (see ``conv`` for the layout)."""
    n_img, c_in, h, w_in = x.shape
    ho, wo = y.shape[2:]
    rb = 4 if mg >= 4 else 1
    mgp = round_up(mg, rb)
    wq = np.zeros((group, mgp, cg, 9), dtype=np.float32)
    wq[:, :mg] = w.reshape(group, mg, cg, 9)
    wq = np.ascontiguousarray(wq.reshape(group, mgp // rb, rb, cg, 9).transpose(0, 1, 3, 2, 4))
    # As many images per stack as fit, with a multiple of the thread count of stacks.
    stacks = round_up(-(-n_img // max(1, _STACK_POSITIONS // per_image)), nthreads)
    stack = -(-n_img // stacks)
    stacks = -(-n_img // stack)
    split = 1 if stacks >= nthreads else min(group * mgp // rb, -(-nthreads // stacks))
    run_threads(_direct3x3_worker, (x.reshape(-1), wq.reshape(-1), bias, y.reshape(-1), n_img, c_in, h, w_in,
                                    group, mg, mgp, dh, ph, pw, ho, wo, pitch, gap, stack, _STACK_POSITIONS,
                                    split, nthreads, np.zeros(1, dtype=np.int64), lo, hi), nthreads)


def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None, clip_min=-math.inf, clip_max=math.inf, max_pool_2x2=False):
    """ONNX Conv in fp32 (2-D, or 1-D by adding a unit height), with lowbit's fused clamp and max-pool.

    ``Y[n, m, oh, ow] = clip(B[m] + sum_{c, i, j} W[m, c, i, j] *
    Xpad[n, g*C/G + c, oh*sH + i*dH, ow*sW + j*dW], clip_min, clip_max)``
    where ``g = m // (M/G)`` is the group of output channel ``m`` and ``Xpad``
    is ``X`` zero-padded by ``pads`` (or as ``auto_pad`` asks).

    Parameters
    ----------
    x : ndarray
        float32 input (N, C, H, W), or (N, C, L) for a 1-D convolution.
    w : ndarray
        float32 weights (M, C/group, kH, kW) (or (M, C/group, kL)).
    b : ndarray or None
        Bias (M,).
    auto_pad, dilations, group, kernel_shape, pads, strides
        As in the ONNX operator; ``pads`` is ``[h_begin, w_begin, h_end, w_end]``.
    clip_min, clip_max : float
        Fused activation bounds applied after the bias (ReLU: ``clip_min=0``).
    max_pool_2x2 : bool
        Return ONNX ``MaxPool(kernel_shape=[2, 2], strides=[2, 2])`` of the
        result instead (2-D only).  Fused into the Winograd kernel, whose 2x2
        output tiles are the pooling windows, when it runs the convolution:
        the full-size output is then never written.

    Returns
    -------
    ndarray
        float32 (N, M, oH, oW) (``(N, M, oH // 2, oW // 2)`` with
        ``max_pool_2x2``), C-contiguous.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    if x.ndim == 3 and w.ndim == 3:
        if max_pool_2x2:
            raise ValueError("Conv max_pool_2x2 needs a 2-D input")
        # 1-D: run as 2-D with a unit height.
        lift = lambda v, fill: None if v is None else (fill,) + tuple(v)
        if pads is not None:
            pads = (0, int(pads[0]), 0, int(pads[1]))
        y = conv(x[:, :, None, :], w[:, :, None, :], b, auto_pad=auto_pad,
                 dilations=lift(dilations, 1), group=group, kernel_shape=lift(kernel_shape, 1),
                 pads=pads, strides=lift(strides, 1), clip_min=clip_min, clip_max=clip_max)
        return y[:, :, 0, :]
    n_img, c_in, h, w_in, m_out, cg, kh_, kw_, group = conv_shapes("Conv", x.shape, w.shape, group, kernel_shape)
    for name, values in (("strides", strides), ("dilations", dilations)):
        if values is not None and (len(values) != 2 or min(int(v) for v in values) < 1):
            raise ValueError(f"Conv {name} must be 2 positive integers for a 2-D input, got {list(values)}")
    if pads is not None and any(int(p) < 0 for p in pads):
        raise ValueError(f"Conv pads {tuple(int(p) for p in pads)} must be non-negative")
    _, (sh, sw), (dh, dw), (ph, pw), _, (ho, wo) = window_attributes(
        x.shape, (kh_, kw_), strides, dilations, pads, auto_pad)
    if ho < 1 or wo < 1:
        raise ValueError(f"Conv output would be empty: input {x.shape}, kernel {(kh_, kw_)},"
                         f" pads {pads}, strides {strides}, dilations {dilations}")
    if b is None:
        bias = np.zeros(m_out, dtype=np.float32)
    else:
        bias = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
        if bias.shape != (m_out,):
            raise ValueError(f"Conv bias has shape {np.shape(b)}; expected ({m_out},)")
    lo, hi = np.float32(clip_min), np.float32(clip_max)
    nthreads = numba.get_num_threads()
    use_winograd = ((kh_, kw_, sh, sw, dh, dw) == (3, 3, 1, 1, 1, 1) and group == 1
                    and min(c_in, m_out) >= _WINOGRAD_MIN_CHANNELS and (not max_pool_2x2 or min(ho, wo) >= 2))
    if use_winograd:
        th, tw = (ho // 2, wo // 2) if max_pool_2x2 else (-(-ho // 2), -(-wo // 2))
        use_winograd = winograd.images_per_block(n_img, c_in, th, tw) * th * tw >= _WINOGRAD_MIN_TILES
    if max_pool_2x2:
        if not use_winograd:
            return max_pool(conv(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                                 kernel_shape=kernel_shape, pads=pads, strides=strides, clip_min=clip_min,
                                 clip_max=clip_max), kernel_shape=(2, 2), strides=(2, 2))
        pooled = np.empty((n_img, m_out, ho // 2, wo // 2), dtype=np.float32)
        if pooled.size:
            winograd.conv3x3(x, w, bias, pooled, ph, pw, lo, hi, nthreads, pool=True)
        return pooled
    y = np.empty((n_img, m_out, ho, wo), dtype=np.float32)
    if y.size == 0:
        return y
    kg = cg * kh_ * kw_
    mg = m_out // group
    if use_winograd:
        winograd.conv3x3(x, w, bias, y, ph, pw, lo, hi, nthreads)
        return y
    if (kh_, kw_, sh, sw, dw) == (3, 3, 1, 1, 1) and (mg >= 4 or mg == 1):
        pad_w_end = wo + 2 - w_in - pw
        pad_h_end = ho + 2 * dh - h - ph
        pitch = max(w_in + max(pw, pad_w_end), wo)
        # The zero rows between two stacked images serve as the bottom pad of
        # one and the top pad of the next (gap >= both), and each image's
        # ho output rows must fit in its h + gap plane rows, so the pads
        # together may exceed the gap by at most the kernel's reach (2 * dh).
        gap = max(ph, pad_h_end, ph + pad_h_end - 2 * dh)
        per_image = (h + gap) * pitch
        if per_image <= _MAX_WASTE * ho * wo or kg < _IM2COL_MIN_K:
            _direct3x3(x, w, bias, y, group, mg, cg, dh, ph, pw, pitch, gap, per_image, nthreads, lo, hi)
            return y
    if kg <= _SMALL_K:
        tasks = n_img * m_out
        run_threads(_direct_worker, (x.reshape(-1), w.reshape(-1), bias, y.reshape(-1), n_img, c_in, h, w_in,
                                     group, m_out, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, lo, hi,
                                     max(1, tasks // (8 * nthreads)), np.zeros(1, dtype=np.int64)), nthreads)
        return y
    mgp = round_up(mg, TILE_M)
    kp = round_up(kg, K_ALIGN)
    wp = np.zeros((group, mgp, kp), dtype=np.float32)
    wp[:, :mg, :kg] = w.reshape(group, mg, cg, kh_, kw_).transpose(0, 1, 3, 4, 2).reshape(group, mg, kg)
    split = 1 if n_img >= nthreads else min(ho, -(-nthreads // n_img))
    rows_max = (-(-ho // split) - 1) * sh + (kh_ - 1) * dh + 1
    ws = (wo - 1) * sw + (kw_ - 1) * dw + 1
    block = max(TILE_N, _PANEL_FLOATS // kp // TILE_N * TILE_N)
    run_threads(_im2col_worker, (x.reshape(-1), wp.reshape(-1), bias, y.reshape(-1), n_img, c_in, h, w_in,
                                 group, mg, mgp, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, kp, split,
                                 rows_max, ws, block, nthreads, np.zeros(1, dtype=np.int64), lo, hi), nthreads)
    return y
