"""Integer Conv (NCHW, 2-D or 1-D): exact int32 accumulation, fixed-point requantization.

Each parallel task takes a block of output rows of one image.  It copies the
input rows the block needs into a channels-first int16 slab holding
``x - zp_x`` (so padding is a plain 0, exactly the real value 0), then, per
group, gathers an im2col panel ``panel[q, p, e]`` = slab value of reduction
index ``k = 2q + e`` (``k`` runs over ``(c, kh, kw)`` like the weights) at
output position ``p``.  The panel is multiplied with the weights packed as
int16 pairs by :func:`lowbit.kernels.int8.tile.madd_tile` (``vpmaddwd``:
4 channels x 24 positions per tile), and every int32 sum is requantized as it
is written straight into the NCHW output.

Groups with fewer than 4 output channels (depthwise convolutions) take a
direct kernel instead: per output plane, one vectorised ``acc_row += w * x_row``
per tap, in int32.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.common import window_attributes
from lowbit.kernels.int8.common import (activation, bias_of, output_dtype, output_range, requant_params,
                                        requantize, requantize_rows, zero_point_of)
from lowbit.kernels.int8.tile import TILE_M, TILE_P, madd_tile

# int32 words (k pairs x positions) in one im2col panel: 128 KiB, well inside L2.
_PANEL_WORDS = 32768
# int32 words (channel pairs x rows x width) in one stride-1 input slab: 256 KiB.
_SLAB_WORDS = 65536


@jit
def _fill_pair_slab(x, slab, img, c_in, h, w_in, groups, cpn, ih0, rows_in, rows_max, ws, pw, zp):
    """Channel-pair-interleaved slab of the input rows ``[ih0, ih0 + rows_in)`` of one image.

    ``slab[(g*cpn + cp, r, jw), e] = x[img, g*C/G + 2cp + e, ih0 + r, jw - pw] - zp``, and 0
    where that is outside ``x`` (the padding) or past the group's last channel.
    """
    cg = c_in // groups
    j_lo = min(ws, pw)
    j_hi = max(j_lo, min(ws, w_in + pw))
    for g in range(groups):
        for cp in range(cpn):
            ca = g * cg + 2 * cp
            has_b = 2 * cp + 1 < cg
            for r in range(rows_in):
                d = slab[2 * ((g * cpn + cp) * rows_max + r) * ws:2 * ((g * cpn + cp) * rows_max + r + 1) * ws]
                ih = ih0 + r
                if ih < 0 or ih >= h:
                    for e in range(2 * ws):
                        d[e] = 0
                    continue
                for e in range(2 * j_lo):
                    d[e] = 0
                for e in range(2 * j_hi, 2 * ws):
                    d[e] = 0
                if j_hi == j_lo:
                    continue
                n = j_hi - j_lo
                inner = d[2 * j_lo:2 * j_hi]
                xa = x[((img * c_in + ca) * h + ih) * w_in + j_lo - pw:]
                if has_b:
                    xb = x[((img * c_in + ca + 1) * h + ih) * w_in + j_lo - pw:]
                    for e in range(n):
                        inner[2 * e] = np.int16(xa[e]) - zp
                        inner[2 * e + 1] = np.int16(xb[e]) - zp
                else:
                    for e in range(n):
                        inner[2 * e] = np.int16(xa[e]) - zp
                        inner[2 * e + 1] = 0


@jit(parallel=True)
def _pair_slab_kernel(x, offs, wpk, bias, mult, shift, y, n_img, c_in, h, w_in, groups, mg, mgp, cpn,
                      kh_, dh, ph, pw, ho, wo, ws, kq, zp_x, zp_y, qmin, qmax, rows_block, blocks, nthreads):
    # Stride 1: the pair of channels (2cp, 2cp+1) at tap (i, j) for output position p = r*ws + col
    # sits at slab word offs[q] + g*cpn*rows_max*ws + p, so the tile reads the slab directly.
    # Columns col >= wo of each row are computed and dropped.
    m_out = groups * mg
    items = n_img * blocks
    rows_max = rows_block + (kh_ - 1) * dh
    pmax = (rows_block * ws + TILE_P - 1) // TILE_P * TILE_P
    for t in prange(nthreads):
        first = t * items // nthreads
        last = (t + 1) * items // nthreads
        # Slack past the last row: a tile's tail positions read (and drop) up to TILE_P words there.
        slab = np.zeros(2 * (groups * cpn * rows_max * ws + pmax), dtype=np.int32).view(np.int16)
        acc = np.empty(mgp * pmax, dtype=np.int32)
        for item in range(first, last):
            img = item // blocks
            oh0 = (item % blocks) * rows_block
            oh1 = min(ho, oh0 + rows_block)
            if oh0 >= oh1:
                continue
            rows_out = oh1 - oh0
            _fill_pair_slab(x, slab, img, c_in, h, w_in, groups, cpn, oh0 - ph, rows_out + (kh_ - 1) * dh,
                            rows_max, ws, pw, zp_x)
            npos = rows_out * ws
            pp = (npos + TILE_P - 1) // TILE_P * TILE_P
            for g in range(groups):
                gbase = g * cpn * rows_max * ws
                for p0 in range(0, npos, TILE_P):
                    for mt in range(0, mgp, TILE_M):
                        madd_tile(slab, offs, gbase + p0, wpk, (g * mgp + mt) * kq, kq, acc, mt * pp + p0, pp)
                for m in range(mg):
                    mo = g * mg + m
                    b = np.int64(bias[mo])
                    m0 = mult[mo]
                    n = shift[mo]
                    rnd = np.int64(1) << (n - 1)
                    for r in range(rows_out):
                        src = acc[m * pp + r * ws:m * pp + r * ws + wo]
                        dst = y[((img * m_out + mo) * ho + oh0 + r) * wo:((img * m_out + mo) * ho + oh0 + r + 1) * wo]
                        for col in range(wo):
                            v = (((src[col] + b) * m0 + rnd) >> n) + zp_y
                            dst[col] = min(max(v, qmin), qmax)


@jit
def _fill_slab(x, slab, img, c_in, h, w_in, ih0, rows_in, rows_max, ws, pw, zp):
    """``slab[c, r, jw] = x[img, c, ih0 + r, jw - pw] - zp``, 0 where that is outside ``x``."""
    j_lo = min(ws, pw)
    j_hi = max(j_lo, min(ws, w_in + pw))
    for c in range(c_in):
        for r in range(rows_in):
            srow = slab[(c * rows_max + r) * ws:(c * rows_max + r + 1) * ws]
            ih = ih0 + r
            if ih < 0 or ih >= h:
                for jw in range(ws):
                    srow[jw] = 0
                continue
            for jw in range(j_lo):
                srow[jw] = 0
            for jw in range(j_hi, ws):
                srow[jw] = 0
            if j_hi > j_lo:
                xrow = x[((img * c_in + c) * h + ih) * w_in + j_lo - pw:]
                inner = srow[j_lo:j_hi]
                for e in range(j_hi - j_lo):
                    inner[e] = np.int16(xrow[e]) - zp


@jit
def _fill_panel(slab, panel, pp, g, cg, kh_, kw_, kg, kq, rows_max, ws, sh, sw, dh, dw, rows_out, wo):
    """im2col of one group: ``panel[q, p, e]`` = slab value of ``k = 2q + e`` at position ``p``."""
    taps = kh_ * kw_
    npos = rows_out * wo
    for q in range(kq):
        dst = panel[q * pp * 2:(q + 1) * pp * 2]
        ka = 2 * q
        kb = ka + 1
        ca, ia, ja = ka // taps, (ka // kw_) % kh_, ka % kw_
        cb, ib, jb = kb // taps, (kb // kw_) % kh_, kb % kw_
        for r in range(rows_out):
            d = dst[2 * r * wo:2 * (r + 1) * wo]
            sa = slab[((g * cg + ca) * rows_max + r * sh + ia * dh) * ws + ja * dw:]
            if kb < kg:
                sb = slab[((g * cg + cb) * rows_max + r * sh + ib * dh) * ws + jb * dw:]
                for ow in range(wo):
                    d[2 * ow] = sa[ow * sw]
                    d[2 * ow + 1] = sb[ow * sw]
            else:
                for ow in range(wo):
                    d[2 * ow] = sa[ow * sw]
                    d[2 * ow + 1] = 0
        for e in range(2 * npos, 2 * pp):
            dst[e] = 0


@jit(parallel=True)
def _panel_kernel(x, wpk, bias, mult, shift, y, n_img, c_in, h, w_in, groups, mg, mgp, kh_, kw_,
                  sh, sw, dh, dw, ph, pw, ho, wo, kq, zp_x, zp_y, qmin, qmax, rows_block, blocks, nthreads):
    # Any stride: gather an im2col panel per group, then tile it.
    cg = c_in // groups
    kg = cg * kh_ * kw_
    m_out = groups * mg
    items = n_img * blocks
    rows_max = (rows_block - 1) * sh + (kh_ - 1) * dh + 1
    ws = (wo - 1) * sw + (kw_ - 1) * dw + 1
    pmax = (rows_block * wo + TILE_P - 1) // TILE_P * TILE_P
    for t in prange(nthreads):
        first = t * items // nthreads
        last = (t + 1) * items // nthreads
        slab = np.empty(c_in * rows_max * ws, dtype=np.int16)
        panel = np.empty(kq * pmax * 2, dtype=np.int16)
        acc = np.empty(TILE_M * TILE_P, dtype=np.int32)
        qb = np.empty(TILE_M * TILE_P, dtype=y.dtype)
        offs = np.empty(kq, dtype=np.int64)
        for item in range(first, last):
            img = item // blocks
            oh0 = (item % blocks) * rows_block
            oh1 = min(ho, oh0 + rows_block)
            if oh0 >= oh1:
                continue
            rows_in = (oh1 - 1 - oh0) * sh + (kh_ - 1) * dh + 1
            _fill_slab(x, slab, img, c_in, h, w_in, oh0 * sh - ph, rows_in, rows_max, ws, pw, zp_x)
            npos = (oh1 - oh0) * wo
            pp = (npos + TILE_P - 1) // TILE_P * TILE_P
            for q in range(kq):
                offs[q] = q * pp
            for g in range(groups):
                _fill_panel(slab, panel, pp, g, cg, kh_, kw_, kg, kq, rows_max, ws, sh, sw, dh, dw,
                            oh1 - oh0, wo)
                for p0 in range(0, pp, TILE_P):
                    nvalid = min(TILE_P, npos - p0)
                    for mt in range(0, mgp, TILE_M):
                        madd_tile(panel, offs, p0, wpk, (g * mgp + mt) * kq, kq, acc, 0, TILE_P)
                        rows_m = min(TILE_M, mg - mt)
                        requantize_rows(acc, TILE_P, bias, mult, shift, g * mg + mt, rows_m, zp_y, qmin, qmax, qb)
                        for rr in range(rows_m):
                            src = qb[rr * TILE_P:rr * TILE_P + nvalid]
                            o = (img * m_out + g * mg + mt + rr) * ho * wo + oh0 * wo + p0
                            dst = y[o:o + nvalid]
                            for c in range(nvalid):
                                dst[c] = src[c]


@jit(parallel=True)
def _direct_kernel(x, w, bias, mult, shift, y, n_img, c_in, h, w_in, groups, m_out, kh_, kw_,
                   sh, sw, dh, dw, ph, pw, ho, wo, zp_x, zp_y, qmin, qmax):
    cg = c_in // groups
    mg = m_out // groups
    for task in prange(n_img * m_out):
        img = task // m_out
        mo = task % m_out
        g = mo // mg
        plane = np.zeros(ho * wo, dtype=np.int32)
        for oh in range(ho):
            arow = plane[oh * wo:(oh + 1) * wo]
            for ci in range(cg):
                c = g * cg + ci
                for i in range(kh_):
                    ih = oh * sh - ph + i * dh
                    if ih < 0 or ih >= h:
                        continue
                    xrow = x[((img * c_in + c) * h + ih) * w_in:((img * c_in + c) * h + ih + 1) * w_in]
                    for j in range(kw_):
                        wv = np.int32(w[((mo * cg + ci) * kh_ + i) * kw_ + j])
                        off = j * dw - pw
                        # Taps inside the row: 0 <= ow*sw + off < w_in; padding adds exactly 0.
                        ow_lo = 0 if off >= 0 else (-off + sw - 1) // sw
                        ow_hi = 0 if w_in - 1 - off < 0 else min(wo, (w_in - 1 - off) // sw + 1)
                        if ow_hi <= ow_lo:
                            continue
                        av = arow[ow_lo:ow_hi]
                        xv = xrow[ow_lo * sw + off:]
                        for q in range(ow_hi - ow_lo):
                            av[q] += wv * (np.int32(xv[q * sw]) - zp_x)
        b, m0, n = bias[mo], mult[mo], shift[mo]
        dst = y[task * ho * wo:(task + 1) * ho * wo]
        for q in range(ho * wo):
            dst[q] = requantize(np.int64(plane[q]) + b, m0, n, zp_y, qmin, qmax)


def conv_int8(x_q, w_q, bias_q, multiplier, shift, *, x_zero_point, y_zero_point, qmin, qmax, y_signed=0,
              auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Integer Conv (2-D NCHW, or 1-D NCL) with int32 accumulation and fixed-point requantization.

    ``acc[n, m, oh, ow] = bias_q[m] + sum_{c, i, j} w_q[m, c, i, j] *
    (Xpad[n, g*C/G + c, oh*sH + i*dH, ow*sW + j*dW] - x_zero_point)``
    where ``g = m // (M/G)`` and ``Xpad`` is ``x_q`` padded with
    ``x_zero_point`` (padding is the real value 0 and adds exactly 0).  The sum
    is exact in int32 (int16 x int16 products summed in pairs; no saturating
    instruction is used).  Then, in int64,

    ``y = clamp(y_zero_point + ((acc * M0[m] + 2^(n[m]-1)) >> n[m]), qmin, qmax)``

    (arithmetic shift: ties round toward +inf); the clamp is also how a fused
    ReLU or Clip is applied.

    Parameters
    ----------
    x_q : ndarray
        uint8 or int8 input (N, C, H, W) (or (N, C, L)).
    w_q : ndarray
        int8 weights (M, C/group, kH, kW) (or (M, C/group, kL)).
    bias_q : ndarray or None
        int32 (M,) at scale ``s_x * s_w[m]``.
    multiplier, shift : ndarray
        int64 (M,): ``M0`` in [0, 2^31) and ``n`` in [1, 62] per output channel
        (see :func:`lowbit.quant.fixed_point.quantize_multiplier`).
    x_zero_point : int
        Zero point of ``x_q`` (in the range of its dtype).
    y_zero_point, qmin, qmax : int
        Output zero point and clamp bounds, inside the output dtype's range.
    y_signed : int
        0: uint8 output; 1: int8 output.
    auto_pad, dilations, group, kernel_shape, pads, strides
        As in the ONNX Conv operator; ``pads`` is ``[h_begin, w_begin, h_end, w_end]``.

    Returns
    -------
    ndarray
        uint8 or int8 (N, M, oH, oW) (or (N, M, oL)), C-contiguous.
    """
    op = "conv_int8"
    x = activation(op, "x_q", x_q)
    w = np.asarray(w_q)
    if w.dtype != np.int8:
        raise ValueError(f"{op}: weights must be int8, got {w.dtype}")
    w = np.ascontiguousarray(w)
    if x.ndim == 3 and w.ndim == 3:
        # 1-D: run as 2-D with a unit height.
        lift = lambda v, fill: None if v is None else (fill,) + tuple(v)
        if pads is not None:
            pads = (0, int(pads[0]), 0, int(pads[1]))
        y = conv_int8(x[:, :, None, :], w[:, :, None, :], bias_q, multiplier, shift,
                      x_zero_point=x_zero_point, y_zero_point=y_zero_point, qmin=qmin, qmax=qmax,
                      y_signed=y_signed, auto_pad=auto_pad, dilations=lift(dilations, 1), group=group,
                      kernel_shape=lift(kernel_shape, 1), pads=pads, strides=lift(strides, 1))
        return y[:, :, 0, :]
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"{op}: supports 1-D and 2-D convolutions (input (N, C, H, W) with weights"
                         f" (M, C/group, kH, kW)); got input {x.shape} and weights {w.shape}")
    n_img, c_in, h, w_in = x.shape
    m_out, cg, kh_, kw_ = w.shape
    group = int(group)
    if group < 1 or c_in != cg * group or m_out % group != 0:
        raise ValueError(f"{op}: group={group} does not fit input channels {c_in} and weights {w.shape}:"
                         f" need C == C/group * group and M divisible by group")
    if kernel_shape is not None and tuple(int(k) for k in kernel_shape) != (kh_, kw_):
        raise ValueError(f"{op}: kernel_shape {tuple(kernel_shape)} disagrees with weights {w.shape}")
    _, (sh, sw), (dh, dw), (ph, pw), _, (ho, wo) = window_attributes(
        x.shape, (kh_, kw_), strides, dilations, pads, auto_pad)
    if pads is not None and any(int(p) < 0 for p in pads):
        raise ValueError(f"{op}: pads {tuple(pads)} must be non-negative")
    if min(sh, sw, dh, dw) < 1:
        raise ValueError(f"{op}: strides {strides} and dilations {dilations} must be positive")
    if ho < 1 or wo < 1:
        raise ValueError(f"{op}: output would be empty: input {x.shape}, kernel {(kh_, kw_)},"
                         f" pads {pads}, strides {strides}, dilations {dilations}")
    zp_x = zero_point_of(op, "x_zero_point", x_zero_point, x.dtype)
    dtype = output_dtype(y_signed)
    zp_y = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    qmin, qmax = output_range(op, qmin, qmax, dtype)
    bias = bias_of(op, bias_q, m_out)
    mult, shifts = requant_params(op, multiplier, shift, m_out)
    y = np.empty((n_img, m_out, ho, wo), dtype=dtype)
    if y.size == 0:
        return y
    mg = m_out // group
    if mg < TILE_M:
        _direct_kernel(x.reshape(-1), w.reshape(-1), bias, mult, shifts, y.reshape(-1), n_img, c_in, h, w_in,
                       group, m_out, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, zp_x, zp_y, qmin, qmax)
        return y
    nthreads = numba.get_num_threads()
    # At least one row block per thread when the batch is small.
    min_blocks = min(ho, -(-nthreads // n_img))
    mgp = -(-mg // TILE_M) * TILE_M
    if sh == 1 and sw == 1:
        cpn = (cg + 1) // 2
        kq = cpn * kh_ * kw_
        ws = wo + (kw_ - 1) * dw
        # Weights as (group, channel, pair, i, j) -> int16 pairs (w[2cp], w[2cp+1]) at tap (i, j).
        w16 = np.zeros((group, mgp, cpn, 2, kh_, kw_), dtype=np.int16)
        w16[:, :mg, :, :, :, :].reshape(group, mg, 2 * cpn, kh_, kw_)[:, :, :cg] = w.reshape(group, mg, cg, kh_, kw_)
        wpk = np.ascontiguousarray(w16.transpose(0, 1, 2, 4, 5, 3)).view(np.int32).reshape(-1)
        rows_block = max(1, min(ho, _SLAB_WORDS // (group * cpn * ws) - (kh_ - 1) * dh))
        rows_block = min(rows_block, -(-ho // min_blocks))
        rows_max = rows_block + (kh_ - 1) * dh
        cp, i, j = np.meshgrid(np.arange(cpn), np.arange(kh_), np.arange(kw_), indexing="ij")
        offs = ((cp * rows_max + i * dh) * ws + j * dw).reshape(-1).astype(np.int64)
        _pair_slab_kernel(x.reshape(-1), offs, wpk, bias, mult, shifts, y.reshape(-1), n_img, c_in, h, w_in,
                          group, mg, mgp, cpn, kh_, dh, ph, pw, ho, wo, ws, kq, zp_x, zp_y, qmin, qmax,
                          rows_block, -(-ho // rows_block), nthreads)
        return y
    kg = cg * kh_ * kw_
    kq = (kg + 1) // 2
    w16 = np.zeros((group, mgp, 2 * kq), dtype=np.int16)
    w16[:, :mg, :kg] = w.reshape(group, mg, kg)
    wpk = w16.view(np.int32).reshape(-1)
    rows_block = max(1, min(ho, _PANEL_WORDS // (kq * wo)))
    rows_block = min(rows_block, -(-ho // min_blocks))
    _panel_kernel(x.reshape(-1), wpk, bias, mult, shifts, y.reshape(-1), n_img, c_in, h, w_in, group, mg, mgp,
                  kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, kq, zp_x, zp_y, qmin, qmax, rows_block,
                  -(-ho // rows_block), nthreads)
    return y
