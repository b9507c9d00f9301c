"""Integer Conv (NCHW, 2-D or 1-D): exact int32 accumulation, fixed-point requantization.

All products go through the register-blocked tiles of :mod:`lowbit.kernels.int8.tile`
(4 output channels x 24 positions; int32 accumulators, nothing saturates).
Each parallel task takes a block of output rows of one image; what it feeds
the tile depends on the stride:

* stride 1 (any dilation): the input rows are copied once into a slab of
  int32 words, each holding adjacent channels of one pixel: with VNNI
  (:data:`USE_QUADS`) four raw uint8 values (int8 input is offset by 128),
  multiplied by ``vpdpbusd`` and corrected by ``zp * sum(w)`` afterwards;
  otherwise two int16 values ``x - zp`` (0 in the padding), multiplied by
  ``vpmaddwd``.  Output position ``p = r * ws + col`` (``ws`` = padded width)
  reads tap ``(i, j)`` of channel group ``cg`` at word ``p + offs[cg, i, j]``:
  the tile reads the slab directly, no im2col copy.  Columns ``col >= wo``
  are computed and dropped.
* other strides: the rows are copied into a channels-first int16 slab of
  ``x - zp`` and, per group, gathered into an im2col panel of int16 pairs
  ``panel[q, p, e]`` (reduction index ``k = 2q + e``, ``k`` over ``(c, kh, kw)``).

The int32 sums are requantized as they are written into the NCHW output (or, in
the float-output form, scaled to float32: every kernel takes ``fscale, yf, flo,
fhi, fmode`` and writes ``yf`` instead of ``y`` when ``fmode`` is set).
Groups with fewer than 4 output channels (depthwise convolutions) take a
direct kernel instead: per output plane, one vectorised ``acc_row += w * x_row``
per tap, in int32.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.common import conv_shapes, window_attributes
from lowbit.kernels.int8.common import (activation, as_bytes, bias_of, dequantize_rows, float_output, output_dtype,
                                        requant_output, requant_params, requantize, requantize_rows, zero_point_of)
from lowbit.kernels.int8.tile import LANES, TILE_M, TILE_P, VNNI, madd4_tile, madd_tile

# int32 words (k pairs x positions) in one im2col panel: 128 KiB, well inside L2.
_PANEL_WORDS = 32768
# int32 words (channel pairs or quads x rows x width) in one stride-1 input slab: 256 KiB.
_SLAB_WORDS = 65536
# int32 accumulators (channels x positions) of one stride-1 row block: 256 KiB.
_ACC_WORDS = 65536
#: Stride-1 convolutions use the quad (u8 x s8, vpdpbusd) tile where the CPU has it.
USE_QUADS = VNNI


@jit
def _fill_pair_slab(x, slab, img, c_in, h, w_in, groups, cpn, ih0, rows_in, rows_max, ws, pw, zp):
    """Channel-pair slab of the input rows ``[ih0, ih0 + rows_in)`` of one image, as int32 words.

    Word ``slab[(g*cpn + cp, r, jw)]`` holds the int16 pair
    ``(x[img, c, ih0 + r, jw - pw] - zp, x[img, c + 1, ih0 + r, jw - pw] - zp)``,
    ``c = g*C/G + 2cp``, low half first; 0 where that is outside ``x`` (the
    padding) or past the group's last channel.
    """
    cg = c_in // groups
    j_lo = min(ws, pw)
    j_hi = max(j_lo, min(ws, w_in + pw))
    n = j_hi - j_lo
    for g in range(groups):
        for cp in range(cpn):
            ca = g * cg + 2 * cp
            has_b = 2 * cp + 1 < cg
            for r in range(rows_in):
                d = slab[((g * cpn + cp) * rows_max + r) * ws:((g * cpn + cp) * rows_max + r + 1) * ws]
                ih = ih0 + r
                if ih < 0 or ih >= h or n == 0:
                    for e in range(ws):
                        d[e] = 0
                    continue
                for e in range(j_lo):
                    d[e] = 0
                for e in range(j_hi, ws):
                    d[e] = 0
                inner = d[j_lo:j_hi]
                xa = x[((img * c_in + ca) * h + ih) * w_in + j_lo - pw:]
                if has_b:
                    xb = x[((img * c_in + ca + 1) * h + ih) * w_in + j_lo - pw:]
                    for e in range(n):
                        inner[e] = ((np.int32(xa[e]) - zp) & 0xFFFF) | ((np.int32(xb[e]) - zp) << 16)
                else:
                    for e in range(n):
                        inner[e] = (np.int32(xa[e]) - zp) & 0xFFFF


@jit
def _fill_quad_slab(x, slab, img, c_in, h, w_in, groups, cqn, ih0, rows_in, rows_max, ws, pw, x_off, zp_raw):
    """Channel-quad slab of raw bytes, as int32 words.

    Like :func:`_fill_pair_slab`, but word ``(g*cqn + cq, r, jw)`` holds the four bytes
    ``(x + x_off) & 0xFF`` of channels ``c .. c+3`` (``c = g*C/G + 4cq``), low byte first;
    the padding holds ``zp_raw`` (the raw zero) in each byte, channels past the group's last 0.
    """
    cg = c_in // groups
    j_lo = min(ws, pw)
    j_hi = max(j_lo, min(ws, w_in + pw))
    n = j_hi - j_lo
    for g in range(groups):
        for cq in range(cqn):
            c0 = g * cg + 4 * cq
            live = min(4, cg - 4 * cq)
            pad = np.int64(0)
            for e in range(live):
                pad |= np.int64(zp_raw) << (8 * e)
            pad = ((pad + 2**31) & 0xFFFFFFFF) - 2**31
            for r in range(rows_in):
                d = slab[((g * cqn + cq) * rows_max + r) * ws:((g * cqn + cq) * rows_max + r + 1) * ws]
                ih = ih0 + r
                if ih < 0 or ih >= h or n == 0:
                    for e in range(ws):
                        d[e] = pad
                    continue
                for e in range(j_lo):
                    d[e] = pad
                for e in range(j_hi, ws):
                    d[e] = pad
                inner = d[j_lo:j_hi]
                base = ((img * c_in + c0) * h + ih) * w_in + j_lo - pw
                if live == 4:
                    x0 = x[base:]
                    x1 = x[base + h * w_in:]
                    x2 = x[base + 2 * h * w_in:]
                    x3 = x[base + 3 * h * w_in:]
                    for e in range(n):
                        # The top byte enters signed, so the word fits int32 as it is.
                        inner[e] = (((np.int64(x0[e]) + x_off) & 0xFF) | (((np.int64(x1[e]) + x_off) & 0xFF) << 8)
                                    | (((np.int64(x2[e]) + x_off) & 0xFF) << 16)
                                    | ((((np.int64(x3[e]) + x_off + 128) & 0xFF) - 128) << 24))
                else:
                    # Fewer than 4 channels left: the top byte stays 0.
                    x0 = x[base:]
                    for e in range(n):
                        inner[e] = (np.int64(x0[e]) + x_off) & 0xFF
                    for k in range(1, live):
                        xk = x[base + k * h * w_in:]
                        for e in range(n):
                            inner[e] |= ((np.int64(xk[e]) + x_off) & 0xFF) << (8 * k)


@jit(multithread=True)
def _slab_kernel(x, offs, wpk, bias, corr, mult, shift, y, n_img, c_in, h, w_in, groups, mg, mgp, cgn, quads,
                 kh_, dh, ph, pw, ho, wo, ws, kq, zp_x, x_off, zp_y, qmin, qmax, rows_block, blocks, nthreads,
                 fscale, yf, flo, fhi, fmode):
    # Stride 1: the channel pair (or quad) cp at tap (i, j) for output position p = r*ws + col sits
    # at slab word offs[q] + g*cgn*rows_max*ws + p, so the tile reads the slab directly.  Columns
    # col >= wo of each row are computed and dropped.  Quads hold raw bytes: the sum is corrected
    # by corr[m] = raw zero point * sum of the weights of channel m, in wrapping int32.
    m_out = groups * mg
    items = n_img * blocks
    rows_max = rows_block + (kh_ - 1) * dh
    pmax = (rows_block * ws + LANES - 1) // LANES * LANES
    wpad = (wo + LANES - 1) // LANES * LANES
    for t in prange(nthreads):
        first = t * items // nthreads
        last = (t + 1) * items // nthreads
        # Slack past the last plane: the dropped columns (col >= wo) of the last row read up to
        # (kW-1)*dW words beyond it, and a tail tile up to LANES - 1 more.
        slab = np.zeros(groups * cgn * rows_max * ws + ws + LANES, dtype=np.int32)
        # (+ LANES: a row's LANES-wide read may run past the last accumulator row.)
        acc = np.zeros(mgp * pmax + LANES, dtype=np.int32)
        for item in range(first, last):
            img = item // blocks
            oh0 = (item % blocks) * rows_block
            oh1 = min(ho, oh0 + rows_block)
            if oh0 >= oh1:
                continue
            rows_out = oh1 - oh0
            rows_in = rows_out + (kh_ - 1) * dh
            if quads:
                _fill_quad_slab(x, slab, img, c_in, h, w_in, groups, cgn, oh0 - ph, rows_in, rows_max, ws, pw,
                                x_off, zp_x + x_off)
            else:
                _fill_pair_slab(x, slab, img, c_in, h, w_in, groups, cgn, oh0 - ph, rows_in, rows_max, ws, pw,
                                zp_x)
            npos = rows_out * ws
            pp = (npos + LANES - 1) // LANES * LANES
            for g in range(groups):
                gbase = g * cgn * rows_max * ws
                for p0 in range(0, npos, TILE_P):
                    nv = (min(TILE_P, npos - p0) + LANES - 1) // LANES
                    for mt in range(0, mgp, TILE_M):
                        w_off = (g * mgp + mt) * kq
                        if quads:
                            madd4_tile(slab, offs, gbase + p0, wpk, w_off, kq, acc, mt * pp + p0, pp, nv)
                        else:
                            madd_tile(slab, offs, gbase + p0, wpk, w_off, kq, acc, mt * pp + p0, pp, nv)
                for m in range(mg):
                    mo = g * mg + m
                    b = np.int64(bias[mo])
                    cr = np.int64(corr[mo])
                    m0 = mult[mo]
                    n = shift[mo]
                    rnd = np.int64(1) << (n - 1)
                    plane = ((img * m_out + mo) * ho + oh0) * wo
                    for r in range(rows_out):
                        # Every row but the last is written LANES-wide: its spill past wo lands on
                        # the next rows' starts, which are written next (whole vectors, no remainder).
                        # The spill stays inside this block's rows of this channel: beyond them lie
                        # rows of other blocks (other threads) and, after the last plane, the end of y.
                        width = min(wpad, (rows_out - r) * wo) if r < rows_out - 1 else wo
                        src = acc[m * pp + r * ws:m * pp + r * ws + width]
                        if fmode:
                            dstf = yf[plane + r * wo:plane + r * wo + width]
                            fs = fscale[mo]
                            for col in range(width):
                                a = ((np.int64(src[col]) - cr + 2**31) & 0xFFFFFFFF) - 2**31
                                dstf[col] = min(max(np.float32(a + b) * fs, flo), fhi)
                            continue
                        dst = y[plane + r * wo:plane + r * wo + width]
                        for col in range(width):
                            a = ((np.int64(src[col]) - cr + 2**31) & 0xFFFFFFFF) - 2**31
                            v = (((a + b) * m0 + rnd) >> n) + zp_y
                            dst[col] = min(max(v, qmin), qmax) & 0xFF


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


@jit(multithread=True)
def _panel_kernel(x, wpk, bias, mult, shift, y, n_img, c_in, h, w_in, groups, mg, mgp, kh_, kw_,
                  sh, sw, dh, dw, ph, pw, ho, wo, kq, zp_x, zp_y, qmin, qmax, rows_block, blocks, nthreads,
                  fscale, yf, flo, fhi, fmode):
    # Any stride: gather an im2col panel per group, then tile it.
    cg = c_in // groups
    kg = cg * kh_ * kw_
    m_out = groups * mg
    items = n_img * blocks
    rows_max = (rows_block - 1) * sh + (kh_ - 1) * dh + 1
    ws = (wo - 1) * sw + (kw_ - 1) * dw + 1
    pmax = (rows_block * wo + LANES - 1) // LANES * LANES
    for t in prange(nthreads):
        first = t * items // nthreads
        last = (t + 1) * items // nthreads
        slab = np.empty(c_in * rows_max * ws, dtype=np.int16)
        words = np.empty(kq * pmax, dtype=np.int32)
        panel = words.view(np.int16)
        acc = np.empty(TILE_M * TILE_P, dtype=np.int32)
        qb = np.empty(TILE_M * TILE_P, dtype=y.dtype)
        fb = np.empty(TILE_M * TILE_P, dtype=yf.dtype)
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
            pp = (npos + LANES - 1) // LANES * LANES
            for q in range(kq):
                offs[q] = q * pp
            for g in range(groups):
                _fill_panel(slab, panel, pp, g, cg, kh_, kw_, kg, kq, rows_max, ws, sh, sw, dh, dw,
                            oh1 - oh0, wo)
                for p0 in range(0, pp, TILE_P):
                    nvalid = min(TILE_P, npos - p0)
                    for mt in range(0, mgp, TILE_M):
                        madd_tile(words, offs, p0, wpk, (g * mgp + mt) * kq, kq, acc, 0, TILE_P,
                                  (nvalid + LANES - 1) // LANES)
                        rows_m = min(TILE_M, mg - mt)
                        if fmode:
                            dequantize_rows(acc, TILE_P, bias, fscale, g * mg + mt, rows_m, flo, fhi, fb)
                            for rr in range(rows_m):
                                o = (img * m_out + g * mg + mt + rr) * ho * wo + oh0 * wo + p0
                                srcf = fb[rr * TILE_P:rr * TILE_P + nvalid]
                                dstf = yf[o:o + nvalid]
                                for c in range(nvalid):
                                    dstf[c] = srcf[c]
                            continue
                        requantize_rows(acc, TILE_P, bias, mult, shift, g * mg + mt, rows_m, zp_y, qmin, qmax, qb)
                        for rr in range(rows_m):
                            src = qb[rr * TILE_P:rr * TILE_P + nvalid]
                            o = (img * m_out + g * mg + mt + rr) * ho * wo + oh0 * wo + p0
                            dst = y[o:o + nvalid]
                            for c in range(nvalid):
                                dst[c] = src[c]


@jit(multithread=True)
def _direct_kernel(x, w, bias, mult, shift, y, n_img, c_in, h, w_in, groups, m_out, kh_, kw_,
                   sh, sw, dh, dw, ph, pw, ho, wo, zp_x, zp_y, qmin, qmax, fscale, yf, flo, fhi, fmode):
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
        if fmode:
            dstf = yf[task * ho * wo:(task + 1) * ho * wo]
            fs = fscale[mo]
            for q in range(ho * wo):
                dstf[q] = min(max(np.float32(np.int64(plane[q]) + b) * fs, flo), fhi)
        else:
            dst = y[task * ho * wo:(task + 1) * ho * wo]
            for q in range(ho * wo):
                dst[q] = requantize(np.int64(plane[q]) + b, m0, n, zp_y, qmin, qmax) & 0xFF


def conv_int8(x_q, w_q, bias_q, multiplier=None, shift=None, y_scale=None, *, x_zero_point, y_zero_point=None,
              qmin=None, qmax=None, y_signed=0, y_min=-np.inf, y_max=np.inf,
              auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None, pads=None, strides=None):
    """Integer Conv (2-D NCHW, or 1-D NCL) with int32 accumulation and fixed-point requantization
    (or float output).

    ``acc[n, m, oh, ow] = bias_q[m] + sum_{c, i, j} w_q[m, c, i, j] *
    (Xpad[n, g*C/G + c, oh*sH + i*dH, ow*sW + j*dW] - x_zero_point)``
    where ``g = m // (M/G)`` and ``Xpad`` is ``x_q`` padded with
    ``x_zero_point`` (padding is the real value 0 and adds exactly 0).  The sum
    is exact in (wrapping) int32: products are summed in int32 lanes, either
    int16 pairs of ``x - zp`` (``vpmaddwd``) or, with VNNI, uint8 quads of raw
    ``x`` (``vpdpbusd``) minus ``zp * sum(w[m])``; no saturating instruction is
    used.  Then, in int64,

    ``y = clamp(y_zero_point + ((acc * M0[m] + 2^(n[m]-1)) >> n[m]), qmin, qmax)``

    (arithmetic shift: ties round toward +inf); the clamp is also how a fused
    ReLU or Clip is applied.  Float-output form (``y_scale`` given; ``multiplier``,
    ``shift``, ``y_zero_point``, ``qmin``, ``qmax`` unused), in float32:

    ``y = min(max(float32(acc) * y_scale[m], y_min), y_max)``

    (the int32 sum rounded once to float32, then one float32 product): for a
    layer read only by float ops, the output is never requantized to 8 bits.

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
        (see :func:`lowbit.formats.fixed_point.quantize_multiplier`).
    y_scale : ndarray, optional
        float32 (M,) ``s_x * s_w[m]``: return float32 instead of requantizing.
    x_zero_point : int
        Zero point of ``x_q`` (in the range of its dtype).
    y_zero_point, qmin, qmax : int
        Output zero point and clamp bounds, inside the output dtype's range.
    y_signed : int
        0: uint8 output; 1: int8 output.
    y_min, y_max : float
        Clamp of the float output (a fused ReLU or Clip).
    auto_pad, dilations, group, kernel_shape, pads, strides
        As in the ONNX Conv operator; ``pads`` is ``[h_begin, w_begin, h_end, w_end]``.

    Returns
    -------
    ndarray
        uint8, int8 or (float output) float32 (N, M, oH, oW) (or (N, M, oL)), C-contiguous.
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
        y = conv_int8(x[:, :, None, :], w[:, :, None, :], bias_q, multiplier, shift, y_scale,
                      x_zero_point=x_zero_point, y_zero_point=y_zero_point, qmin=qmin, qmax=qmax,
                      y_signed=y_signed, y_min=y_min, y_max=y_max, auto_pad=auto_pad, dilations=lift(dilations, 1), group=group,
                      kernel_shape=lift(kernel_shape, 1), pads=pads, strides=lift(strides, 1))
        return y[:, :, 0, :]
    n_img, c_in, h, w_in, m_out, cg, kh_, kw_, group = conv_shapes(op, x.shape, w.shape, group, kernel_shape)
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
    bias = bias_of(op, bias_q, m_out)
    fmode = y_scale is not None
    if fmode:
        fscale, flo, fhi = float_output(op, y_scale, m_out, y_min, y_max)
        zp_y, qmin, qmax, mult, shifts = 0, 0, 0, np.zeros(m_out, np.int64), np.ones(m_out, np.int64)
        out = np.empty((n_img, m_out, ho, wo), dtype=np.float32)
        y, yf = np.empty(0, dtype=np.uint8), out.reshape(-1)
    else:
        dtype = output_dtype(y_signed)
        zp_y, qmin, qmax = requant_output(op, y_zero_point, qmin, qmax, dtype)
        mult, shifts = requant_params(op, multiplier, shift, m_out)
        fscale, flo, fhi = np.ones(m_out, np.float32), np.float32(0), np.float32(0)
        out = np.empty((n_img, m_out, ho, wo), dtype=dtype)
        y, yf = as_bytes(out), np.empty(0, dtype=np.float32)
    if out.size == 0:
        return out
    fout = (fscale, yf, flo, fhi, fmode)
    mg = m_out // group
    if mg < TILE_M:
        _direct_kernel(x.reshape(-1), w.reshape(-1), bias, mult, shifts, y, n_img, c_in, h, w_in,
                       group, m_out, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, zp_x, zp_y, qmin, qmax, *fout)
        return out
    nthreads = numba.get_num_threads()
    # At least one row block per thread when the batch is small.
    min_blocks = min(ho, -(-nthreads // n_img))
    mgp = -(-mg // TILE_M) * TILE_M
    if sh == 1 and sw == 1:
        # Quads pay off from 3 channels per group on (with 1 or 2, pairs take as many steps).
        quads = USE_QUADS and cg > 2
        size = 4 if quads else 2
        cgn = -(-cg // size)
        kq = cgn * kh_ * kw_
        ws = wo + (kw_ - 1) * dw
        # Weights as words (group, channel, cp, i, j) holding (w[size*cp], ..., w[size*cp + size-1]) at (i, j).
        wg = np.zeros((group, mgp, size * cgn, kh_, kw_), dtype=np.int8 if quads else np.int16)
        wg[:, :mg, :cg] = w.reshape(group, mg, cg, kh_, kw_)
        packed = wg.reshape(group, mgp, cgn, size, kh_, kw_).transpose(0, 1, 2, 4, 5, 3)
        wpk = np.ascontiguousarray(packed).view(np.int32).reshape(-1)
        x_off = 128 if (quads and x.dtype == np.int8) else 0
        corr = np.zeros(m_out, dtype=np.int64)
        if quads:
            raw = (zp_x + x_off) * w.reshape(m_out, -1).astype(np.int64).sum(axis=1)
            corr = (raw + 2**31) % 2**32 - 2**31
        rows_block = max(1, min(ho, _SLAB_WORDS // (group * cgn * ws) - (kh_ - 1) * dh, _ACC_WORDS // (mgp * ws)))
        rows_block = min(rows_block, -(-ho // min_blocks))
        rows_max = rows_block + (kh_ - 1) * dh
        cp, i, j = np.meshgrid(np.arange(cgn), np.arange(kh_), np.arange(kw_), indexing="ij")
        offs = ((cp * rows_max + i * dh) * ws + j * dw).reshape(-1).astype(np.int64)
        _slab_kernel(x.reshape(-1), offs, wpk, bias, corr, mult, shifts, y, n_img, c_in, h, w_in,
                     group, mg, mgp, cgn, quads, kh_, dh, ph, pw, ho, wo, ws, kq, zp_x, x_off, zp_y, qmin, qmax,
                     rows_block, -(-ho // rows_block), nthreads, *fout)
        return out
    kg = cg * kh_ * kw_
    kq = (kg + 1) // 2
    w16 = np.zeros((group, mgp, 2 * kq), dtype=np.int16)
    w16[:, :mg, :kg] = w.reshape(group, mg, kg)
    wpk = w16.view(np.int32).reshape(-1)
    rows_block = max(1, min(ho, _PANEL_WORDS // (kq * wo)))
    rows_block = min(rows_block, -(-ho // min_blocks))
    _panel_kernel(x.reshape(-1), wpk, bias, mult, shifts, y, n_img, c_in, h, w_in, group, mg, mgp,
                  kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, kq, zp_x, zp_y, qmin, qmax, rows_block,
                  -(-ho // rows_block), nthreads, *fout)
    return out
