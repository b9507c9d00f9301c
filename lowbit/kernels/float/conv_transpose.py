"""fp32 ConvTranspose (ONNX semantics, 1-D and 2-D, NCHW), two kernels behind one function.

Every input pixel is scattered into the output through the whole kernel:
``Y[n, g*M/G + m, ih*sH + i*dH - pH, iw*sW + j*dW - pW] += X[n, g*C/G + c, ih, iw] * W[g*C/G + c, m, i, j]``.

* **at least** :data:`_SMALL_C` **input channels per group**: a channel-blocked
  product.  The weights are packed as rows ``(m, i, j)`` of ``C/G`` floats,
  in groups of 4; a pass over a chunk of whole input rows accumulates
  ``acc[r, p] = sum_c W[c, r] * X[c, p]`` for 4 rows at once, 8 channels per
  step, a loop over contiguous positions that LLVM vectorises (8 input
  loads and 4 accumulator updates per 32 multiply-adds, no transposed copy
  of the input).  Each accumulator row is then added into its output row
  ``oh = ih*sH + i*dH - pH`` at columns ``iw*sW + j*dW - pW``, over the
  input rows and columns whose output lands inside the result (bounds
  computed once per row, not checked per element).
* **fewer channels per group** (depthwise upsampling): a direct scatter,
  one ``y_row[iw*sW + off] += w * x_row[iw]`` per tap.

A work item is one image, one group and a fixed block of output channels
(one output plane for the direct kernel): it first fills its planes with
the bias, then adds every contribution in an order fixed by the shapes
alone.  Two items never write the same element and the blocking does not
depend on the thread count, so results are bit-identical for any number of
threads.
"""
from __future__ import annotations

import numba
import numpy as np

from lowbit.config import jit
from lowbit.kernels.float.gemm import claim, round_up, run_threads

# Input channels per group from which the channel-blocked kernel runs (below,
# the direct scatter, with no accumulator pass, is faster: measured 8.6 against
# 16.6 ms on a depthwise 4x4 stride-2 ConvTranspose of 1x32x80x80).
_SMALL_C = 4
# Weight rows (output channel x tap) per work item: 8 output channels of a 2x2
# kernel, 2 of a 4x4.
_ROWS_PER_ITEM = 32
# Input positions (whole input rows) per pass: 4 accumulator rows of them
# stay in L1, and 64 channels of them (128 KiB) in L2 while every group of 4
# weight rows sweeps them.
_CHUNK_POSITIONS = 512
# Products of fewer multiply-adds run on the calling thread alone (a helper
# thread's wake-up would cost more, see gemm.py).
_PARALLEL_MIN_MACS = 1 << 24


def _ints(op, name, values, rank, least):
    """``values`` as a tuple of ``rank`` ints >= ``least``, or ValueError."""
    values = tuple(int(v) for v in values)
    if len(values) != rank or any(v < least for v in values):
        raise ValueError(f"{op}: '{name}' must be {rank} ints >= {least} for a {rank}-D transposed"
                         f" convolution, got {list(values)}")
    return values


def transpose_geometry(spatial, kernel, strides, dilations, pads, output_padding, output_shape, auto_pad):
    """Begin pads and output sizes of a transposed convolution, per the ONNX spec.

    The full result along an axis has ``F = s*(in-1) + output_padding + (k-1)*d + 1``
    positions.  Without ``output_shape`` and with ``auto_pad`` NOTSET the
    output is ``F - pad_begin - pad_end`` (VALID: no pads).  With
    ``output_shape`` (or SAME_UPPER / SAME_LOWER, which ask for
    ``out = in * s``) the total padding is ``F - out``: SAME_UPPER puts
    ``total // 2`` at the beginning, everything else ``total - total // 2``
    (the extra one at the beginning).  An ``out`` larger than ``F`` adds
    positions at the end that only the bias reaches; it may not exceed the
    largest size output_padding could give, ``F - output_padding + s - 1``
    (onnxruntime's limit too).

    Returns
    -------
    begin, out : tuple of int
        Per spatial axis: the positions cropped at the beginning, the output size.
    """
    op = "ConvTranspose"
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ValueError(f"{op}: unknown auto_pad {auto_pad!r}; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER")
    full = [s * (n - 1) + a + (k - 1) * d + 1
            for n, k, s, d, a in zip(spatial, kernel, strides, dilations, output_padding)]
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = tuple(n * s for n, s in zip(spatial, strides))
    if output_shape is None:
        if auto_pad == "VALID" or pads is None:
            return (0,) * len(spatial), tuple(full)
        rank = len(spatial)
        out = tuple(f - pads[i] - pads[rank + i] for i, f in enumerate(full))
        if min(out) < 1:
            raise ValueError(f"{op}: pads {list(pads)} crop away the whole output (full size {full}); "
                             f"each axis needs s*(in-1) + output_padding + (k-1)*d + 1 - pads >= 1")
        return tuple(pads[:rank]), out
    begin = []
    for f, o, s, a in zip(full, output_shape, strides, output_padding):
        total = f - o
        if o > f - a + s - 1:
            raise ValueError(f"{op}: output_shape {list(output_shape)} is larger than output_padding could make"
                             f" it (full result {full} without output_padding, plus stride {list(strides)} - 1)")
        total = max(total, 0)
        begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return tuple(begin), tuple(output_shape)


@jit
def _direct_worker(x, w, y, bias, n_img, c_in, h, w_in, groups, mg, kh_, kw_, sh, sw, dh, dw,
                   ph, pw, ho, wo, counter):
    cg = c_in // groups
    m_out = groups * mg
    while True:
        task = claim(counter)
        if task >= n_img * m_out:
            break
        img = task // m_out
        mo = task % m_out
        g = mo // mg
        m = mo % mg
        plane = y[task * ho * wo:(task + 1) * ho * wo]
        bv = bias[mo]
        for q in range(ho * wo):
            plane[q] = bv
        for ci in range(cg):
            c = g * cg + ci
            for ih in range(h):
                xrow = x[((img * c_in + c) * h + ih) * w_in:((img * c_in + c) * h + ih + 1) * w_in]
                for i in range(kh_):
                    oh = ih * sh + i * dh - ph
                    if oh < 0 or oh >= ho:
                        continue
                    yrow = plane[oh * wo:(oh + 1) * wo]
                    for j in range(kw_):
                        wv = w[((c * mg + m) * kh_ + i) * kw_ + j]
                        off = j * dw - pw
                        # Inputs whose output lands inside the row: 0 <= iw*sw + off < wo.
                        iw_lo = 0 if off >= 0 else (-off + sw - 1) // sw
                        iw_hi = 0 if wo - 1 - off < 0 else min(w_in, (wo - 1 - off) // sw + 1)
                        for iw in range(iw_lo, iw_hi):
                            yrow[iw * sw + off] += wv * xrow[iw]


@jit
def _rows4(acc, n, x, x0, plane, cg, wq, w0):
    """``acc[r, p] += sum_c wq[w0 + 4c + r] * x[x0 + c*plane + p]`` for 4 rows ``r`` and ``p < n``."""
    a0 = acc[0:n]
    a1 = acc[n:2 * n]
    a2 = acc[2 * n:3 * n]
    a3 = acc[3 * n:4 * n]
    c = 0
    # Eight channels per pass: 8 input loads and 4 accumulator updates feed 32
    # multiply-adds.  Weights in locals, or LLVM reloads them (acc may alias wq).
    while c + 8 <= cg:
        xa = x[x0 + c * plane:x0 + c * plane + n]
        xb = x[x0 + (c + 1) * plane:x0 + (c + 1) * plane + n]
        xc = x[x0 + (c + 2) * plane:x0 + (c + 2) * plane + n]
        xd = x[x0 + (c + 3) * plane:x0 + (c + 3) * plane + n]
        xe = x[x0 + (c + 4) * plane:x0 + (c + 4) * plane + n]
        xf = x[x0 + (c + 5) * plane:x0 + (c + 5) * plane + n]
        xg = x[x0 + (c + 6) * plane:x0 + (c + 6) * plane + n]
        xh = x[x0 + (c + 7) * plane:x0 + (c + 7) * plane + n]
        o = w0 + 4 * c
        w00, w01, w02, w03 = wq[o], wq[o + 1], wq[o + 2], wq[o + 3]
        w10, w11, w12, w13 = wq[o + 4], wq[o + 5], wq[o + 6], wq[o + 7]
        w20, w21, w22, w23 = wq[o + 8], wq[o + 9], wq[o + 10], wq[o + 11]
        w30, w31, w32, w33 = wq[o + 12], wq[o + 13], wq[o + 14], wq[o + 15]
        w40, w41, w42, w43 = wq[o + 16], wq[o + 17], wq[o + 18], wq[o + 19]
        w50, w51, w52, w53 = wq[o + 20], wq[o + 21], wq[o + 22], wq[o + 23]
        w60, w61, w62, w63 = wq[o + 24], wq[o + 25], wq[o + 26], wq[o + 27]
        w70, w71, w72, w73 = wq[o + 28], wq[o + 29], wq[o + 30], wq[o + 31]
        for p in range(n):
            va, vb, vc, vd = xa[p], xb[p], xc[p], xd[p]
            ve, vf, vg, vh = xe[p], xf[p], xg[p], xh[p]
            a0[p] += ((w00 * va + w10 * vb) + (w20 * vc + w30 * vd)) + ((w40 * ve + w50 * vf) + (w60 * vg + w70 * vh))
            a1[p] += ((w01 * va + w11 * vb) + (w21 * vc + w31 * vd)) + ((w41 * ve + w51 * vf) + (w61 * vg + w71 * vh))
            a2[p] += ((w02 * va + w12 * vb) + (w22 * vc + w32 * vd)) + ((w42 * ve + w52 * vf) + (w62 * vg + w72 * vh))
            a3[p] += ((w03 * va + w13 * vb) + (w23 * vc + w33 * vd)) + ((w43 * ve + w53 * vf) + (w63 * vg + w73 * vh))
        c += 8
    while c < cg:
        xa = x[x0 + c * plane:x0 + c * plane + n]
        o = w0 + 4 * c
        w00, w01, w02, w03 = wq[o], wq[o + 1], wq[o + 2], wq[o + 3]
        for p in range(n):
            va = xa[p]
            a0[p] += w00 * va
            a1[p] += w01 * va
            a2[p] += w02 * va
            a3[p] += w03 * va
        c += 1


@jit
def _scatter_worker(x, wq, y, bias, row_m, row_i, row_j, n_img, c_in, h, w_in, groups, mg, mb, blocks,
                    rows_p, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, chunk_rows, counter):
    # x: (n_img, c_in, h, w_in); wq: (groups, blocks, rows_p / 4, c_in / groups, 4) weights of
    # the rows (m, i, j) of each block of mb output channels; row_m/row_i/row_j: the output
    # channel in its group (-1 for padding rows) and the tap of each row.
    cg = c_in // groups
    m_out = groups * mg
    plane = h * w_in
    oplane = ho * wo
    n_max = chunk_rows * w_in
    acc = np.empty(4 * n_max, dtype=np.float32)
    while True:
        item = claim(counter)
        if item >= n_img * groups * blocks:
            break
        img = item // (groups * blocks)
        g = (item // blocks) % groups
        blk = item % blocks
        for m in range(blk * mb, min(mg, (blk + 1) * mb)):
            o = (img * m_out + g * mg + m) * oplane
            bv = bias[g * mg + m]
            for q in range(oplane):
                y[o + q] = bv
        x0 = (img * c_in + g * cg) * plane
        for ih0 in range(0, h, chunk_rows):
            ih1 = min(h, ih0 + chunk_rows)
            n = (ih1 - ih0) * w_in
            for rg in range(rows_p // 4):
                for q in range(4 * n):
                    acc[q] = 0.0
                _rows4(acc, n, x, x0 + ih0 * w_in, plane, cg, wq, ((g * blocks + blk) * (rows_p // 4) + rg) * cg * 4)
                for r in range(4):
                    row = blk * rows_p + rg * 4 + r
                    m = row_m[row]
                    if m < 0:
                        continue
                    o = (img * m_out + g * mg + m) * oplane
                    off = row_j[row] * dw - pw
                    # Inputs whose output lands inside the row: 0 <= iw*sw + off < wo.
                    iw_lo = 0 if off >= 0 else (-off + sw - 1) // sw
                    iw_hi = 0 if wo - 1 - off < 0 else min(w_in, (wo - 1 - off) // sw + 1)
                    if iw_hi <= iw_lo:
                        continue
                    for ih in range(ih0, ih1):
                        oh = ih * sh + row_i[row] * dh - ph
                        if oh < 0 or oh >= ho:
                            continue
                        # Unsigned offsets: no wraparound code in the loop (all are >= 0 here).
                        d0 = np.uint64(o + oh * wo + iw_lo * sw + off)
                        a0 = np.uint64(r * n + (ih - ih0) * w_in + iw_lo)
                        step = np.uint64(sw)
                        for q in range(np.uint64(iw_hi - iw_lo)):
                            y[d0 + q * step] += acc[a0 + q]


def _scatter(x, w, bias, y, group, sh, sw, dh, dw, ph, pw, nthreads):
    """Pack the weights and run :func:`_scatter_worker` (see the module docstring)."""
    n_img, c_in, h, w_in = x.shape
    _, mg, kh_, kw_ = w.shape
    ho, wo = y.shape[2:]
    cg = c_in // group
    taps = kh_ * kw_
    mb = max(1, min(mg, _ROWS_PER_ITEM // taps))
    blocks = -(-mg // mb)
    rows_p = round_up(mb * taps, 4)
    # W (C, M/G, kH, kW) -> rows (m, i, j) by blocks of mb output channels, in groups of 4 rows
    # stored channel-major: wq[g, block, row group, c, row in group].
    wr = np.zeros((group, blocks * mb, taps, cg), dtype=np.float32)
    wr[:, :mg] = w.reshape(group, cg, mg, taps).transpose(0, 2, 3, 1)
    wq = np.zeros((group, blocks, rows_p, cg), dtype=np.float32)
    wq[:, :, :mb * taps] = wr.reshape(group, blocks, mb * taps, cg)
    wq = np.ascontiguousarray(wq.reshape(group, blocks, rows_p // 4, 4, cg).transpose(0, 1, 2, 4, 3))
    r = np.arange(rows_p)
    m = np.arange(blocks)[:, None] * mb + r // taps
    row_m = np.where((r < mb * taps) & (m < mg), m, -1).astype(np.int64).reshape(-1)
    row_i = np.tile(r % taps // kw_, blocks).astype(np.int64)
    row_j = np.tile(r % taps % kw_, blocks).astype(np.int64)
    chunk_rows = max(1, _CHUNK_POSITIONS // w_in)
    args = (x.reshape(-1), wq.reshape(-1), y.reshape(-1), bias, row_m, row_i, row_j, n_img, c_in, h, w_in,
            group, mg, mb, blocks, rows_p, kh_, kw_, sh, sw, dh, dw, ph, pw, ho, wo, chunk_rows,
            np.zeros(1, dtype=np.int64))
    macs = n_img * group * blocks * rows_p * h * w_in * cg
    run_threads(_scatter_worker, args, 1 if macs < _PARALLEL_MIN_MACS else nthreads)


def conv_transpose(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
                   output_padding=None, output_shape=None, pads=None, strides=None):
    """ONNX ConvTranspose in fp32, 2-D (N, C, H, W) or 1-D (N, C, L).

    ``Y[n, g*M/G + m, oh, ow] = B[g*M/G + m] + sum X[n, g*C/G + c, ih, iw] * W[g*C/G + c, m, i, j]``
    over ``c < C/G``, taps ``(i, j)`` and input positions with
    ``oh = ih*sH + i*dH - pH_begin`` and ``ow = iw*sW + j*dW - pW_begin``:
    every input pixel scattered through the kernel, the result cropped by
    the begin pads.  Output size per axis
    ``s*(in-1) + output_padding + (k-1)*d + 1 - pad_begin - pad_end``, or
    ``output_shape`` (pads then derived from it, see
    :func:`transpose_geometry`); SAME_UPPER / SAME_LOWER ask for ``in * s``.

    Parameters
    ----------
    x : ndarray
        float32 input (N, C, H, W) or (N, C, L).
    w : ndarray
        float32 weights (C, M/group, kH, kW) or (C, M/group, kL).
    b : ndarray or None
        Bias (M,).
    auto_pad, dilations, group, kernel_shape, output_padding, output_shape, pads, strides
        As in the ONNX operator (every opset); ``pads`` is
        ``[h_begin, w_begin, h_end, w_end]``, ``output_shape`` the spatial
        sizes (a leading N, C is accepted and ignored).

    Returns
    -------
    ndarray
        float32 (N, M, oH, oW) (or (N, M, oL)), C-contiguous.
    """
    op = "ConvTranspose"
    x = np.ascontiguousarray(x, dtype=np.float32)
    w = np.ascontiguousarray(w, dtype=np.float32)
    if x.ndim not in (3, 4) or w.ndim != x.ndim:
        raise ValueError(f"{op}: supports 1-D (N, C, L) and 2-D (N, C, H, W) inputs with weights of the same rank"
                         f" (C, M/group, k...); got input {x.shape} and weights {w.shape}"
                         + (" (3-D transposed convolutions are not supported)" if x.ndim == 5 else ""))
    rank = x.ndim - 2
    group = int(group)
    n_img, c_in = x.shape[:2]
    if group < 1 or c_in % group != 0 or w.shape[0] != c_in:
        raise ValueError(f"{op}: group={group} does not fit input {x.shape} and weights {w.shape}:"
                         f" need weights (C, M/group, k...) with C = {c_in} divisible by group")
    kernel = tuple(int(k) for k in w.shape[2:])
    if min(kernel) < 1 or min(x.shape[2:]) < 1:
        raise ValueError(f"{op}: empty kernel or spatial axis: input {x.shape}, weights {w.shape}")
    if kernel_shape is not None and tuple(int(k) for k in kernel_shape) != kernel:
        raise ValueError(f"{op}: kernel_shape {list(kernel_shape)} disagrees with weights {w.shape}")
    strides = _ints(op, "strides", strides, rank, 1) if strides is not None else (1,) * rank
    dilations = _ints(op, "dilations", dilations, rank, 1) if dilations is not None else (1,) * rank
    if pads is not None:
        pads = _ints(op, "pads", pads, 2 * rank, 0)
    output_padding = (_ints(op, "output_padding", output_padding, rank, 0)
                      if output_padding is not None else (0,) * rank)
    for a, s, d in zip(output_padding, strides, dilations):
        if a >= max(s, d):
            raise ValueError(f"{op}: output_padding {list(output_padding)} must be less than the stride"
                             f" {list(strides)} or the dilation {list(dilations)} on each axis")
    if output_shape is not None:
        output_shape = tuple(int(v) for v in output_shape)
        if len(output_shape) == rank + 2:
            output_shape = output_shape[2:]
        output_shape = _ints(op, "output_shape", output_shape, rank, 1)
    begin, out = transpose_geometry(x.shape[2:], kernel, strides, dilations, pads, output_padding,
                                    output_shape, auto_pad)
    m_out = group * w.shape[1]
    if b is None:
        bias = np.zeros(m_out, dtype=np.float32)
    else:
        bias = np.ascontiguousarray(b, dtype=np.float32).reshape(-1)
        if bias.shape != (m_out,):
            raise ValueError(f"{op}: bias has shape {np.shape(b)}; expected ({m_out},)")
    if rank == 1:
        x = x[:, :, None, :]
        w = w[:, :, None, :]
        strides, dilations, begin, out = (1,) + strides, (1,) + dilations, (0,) + begin, (1,) + out
    y = np.empty((n_img, m_out) + out, dtype=np.float32)
    if y.size == 0:
        return y
    (sh, sw), (dh, dw), (ph, pw) = strides, dilations, begin
    nthreads = numba.get_num_threads()
    if c_in // group >= _SMALL_C:
        _scatter(x, w, bias, y, group, sh, sw, dh, dw, ph, pw, nthreads)
    else:
        h, w_in = x.shape[2:]
        _, mg, kh_, kw_ = w.shape
        run_threads(_direct_worker, (x.reshape(-1), w.reshape(-1), y.reshape(-1), bias, n_img, c_in, h, w_in,
                                     group, mg, kh_, kw_, sh, sw, dh, dw, ph, pw, out[0], out[1],
                                     np.zeros(1, dtype=np.int64)), nthreads)
    return y[:, :, 0, :] if rank == 1 else y

