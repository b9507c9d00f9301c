"""fp32 pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

MaxPool and AveragePool take 2-D NCHW input (1-D NCL input runs as a 2-D pool
of height 1); output sizes and pads come from
:func:`lowbit.kernels.common.window_attributes`.  Both reductions are
separable: per output row, the window's input rows are reduced into one
padded line (-inf padding for MaxPool, 0 for AveragePool) by a contiguous,
vectorised loop, then each output reduces ``kernel_w`` entries of that line.

Window rules, checked against onnxruntime:

* MaxPool: padding never wins the max (it acts as ``-inf``).
* AveragePool sums the taps inside the input.  With ``count_include_pad=0``
  it divides by their number; with ``count_include_pad=1`` by the number of
  taps inside the padded input ``[-pad_begin, size + pad_end)``.  A
  ``ceil_mode`` window that runs past the end padding is averaged over the
  taps it covers there: the overhang counts in neither case.
* With ``auto_pad=SAME_*`` and a dilation above 1 the pads follow the ONNX
  spec (output ``ceil(size / stride)``); onnxruntime 1.32 computes those pads
  from the undilated kernel and returns a smaller output.
"""
from __future__ import annotations

import numpy as np

from lowbit.config import jit
from lowbit.kernels.common import pool_window
from lowbit.kernels.float.gemm import claim, run_threads


@jit
def _taps(start, dilation, kernel, limit):
    """Taps ``t`` of a window starting at ``start`` with ``0 <= start + t*dilation < limit``,
    as a half-open range ``(first, stop)``."""
    first = 0 if start >= 0 else (-start + dilation - 1) // dilation
    stop = 0 if start >= limit else min(kernel, (limit - 1 - start) // dilation + 1)
    return first, max(first, stop)


# Planes (rows, for the global pools) per work item, and the input size
# (floats) below which a pool runs on the calling thread alone: handing work
# to other threads costs their wake-up, tens of microseconds, and a pool
# over a few MB takes well under a millisecond.
_CHUNK = 64
_PARALLEL_MIN = 1 << 23


@jit
def _max_pool_planes(x, out, p0, p1, line, kh, kw, sh, sw, dh, dw, top, left):
    # x: (planes, H, W); out: (planes, OH, OW).  Max is separable: for each
    # output row, a vertical max over the window's input rows (contiguous,
    # vectorises) into a -inf padded line, then a horizontal max along it.
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    inner = line[left:left + width]
    for p in range(p0, p1):
        for oh in range(out_h):
            start = oh * sh - top
            first, stop = _taps(start, dh, kh, height)
            inner[:] = -np.inf
            for a in range(first, stop):
                src = x[p, start + a * dh]
                for c in range(width):
                    inner[c] = max(inner[c], src[c])
            row = out[p, oh]
            for ow in range(out_w):
                row[ow] = line[ow * sw]
            for b in range(1, kw):
                for ow in range(out_w):
                    row[ow] = max(row[ow], line[ow * sw + b * dw])


@jit
def _max_pool_inside(x, out, p0, p1, kh, kw, sh, sw, dh, dw):
    # _max_pool_planes for windows that all lie inside the input (no pads, no
    # ceil_mode overhang): the same maxima, in the same order, read straight
    # from the input without the padded line (3-6x faster on small planes).
    out_h, out_w = out.shape[1], out.shape[2]
    ninf = np.float32(-np.inf)
    for p in range(p0, p1):
        for oh in range(out_h):
            row = out[p, oh]
            h0 = oh * sh
            if kh == 2 and kw == 2 and sw == 2 and dw == 1:
                r0 = x[p, h0]
                r1 = x[p, h0 + dh]
                for ow in range(out_w):
                    j = 2 * ow
                    row[ow] = max(max(max(ninf, r0[j]), r1[j]), max(max(ninf, r0[j + 1]), r1[j + 1]))
            else:
                for ow in range(out_w):
                    j = ow * sw
                    best = ninf
                    for b in range(kw):
                        col = ninf
                        for a in range(kh):
                            col = max(col, x[p, h0 + a * dh, j + b * dw])
                        best = col if b == 0 else max(best, col)
                    row[ow] = best


@jit
def _max_pool_chunk(x, out, p0, p1, line, kh, kw, sh, sw, dh, dw, top, left):
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    if (top == 0 and left == 0 and (out_h - 1) * sh + (kh - 1) * dh < height
            and (out_w - 1) * sw + (kw - 1) * dw < width):
        _max_pool_inside(x, out, p0, p1, kh, kw, sh, sw, dh, dw)
    else:
        _max_pool_planes(x, out, p0, p1, line, kh, kw, sh, sw, dh, dw, top, left)


@jit
def _max_pool_worker(x, out, kh, kw, sh, sw, dh, dw, top, left, line_width, counter):
    line = np.full(line_width, -np.inf, dtype=np.float32)
    items = (x.shape[0] + _CHUNK - 1) // _CHUNK
    while True:
        item = claim(counter)
        if item >= items:
            break
        _max_pool_chunk(x, out, item * _CHUNK, min(x.shape[0], (item + 1) * _CHUNK), line,
                        kh, kw, sh, sw, dh, dw, top, left)


@jit
def _average_pool_planes(x, out, p0, p1, line, total, kh, kw, sh, sw, dh, dw, top, left,
                         row_scale, col_scale):
    # As _max_pool_planes, summing into a zero-padded line (in float32, like
    # onnxruntime: a window holds few taps).  The divisor is separable too:
    # y = sum * row_scale[oh] * col_scale[ow], the scales being 1/count (0 for
    # a window with nothing to count) from the caller.
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    inner = line[left:left + width]
    for p in range(p0, p1):
        for oh in range(out_h):
            start = oh * sh - top
            first, stop = _taps(start, dh, kh, height)
            inner[:] = 0.0
            for a in range(first, stop):
                src = x[p, start + a * dh]
                for c in range(width):
                    inner[c] += src[c]
            total[:] = 0.0
            for b in range(kw):
                for ow in range(out_w):
                    total[ow] += line[ow * sw + b * dw]
            row = out[p, oh]
            for ow in range(out_w):
                row[ow] = total[ow] * row_scale[oh] * col_scale[ow]


@jit
def _average_pool_worker(x, out, kh, kw, sh, sw, dh, dw, top, left, line_width, row_scale, col_scale,
                         counter):
    line = np.zeros(line_width, dtype=np.float32)
    total = np.empty(out.shape[2], dtype=np.float32)
    items = (x.shape[0] + _CHUNK - 1) // _CHUNK
    while True:
        item = claim(counter)
        if item >= items:
            break
        _average_pool_planes(x, out, item * _CHUNK, min(x.shape[0], (item + 1) * _CHUNK), line, total,
                             kh, kw, sh, sw, dh, dw, top, left, row_scale, col_scale)


def _run_pool(worker, xs, *args):
    """Run ``worker`` over the planes (rows) of ``xs``: on the calling thread
    alone for a small input, else on :func:`run_threads`."""
    args = (xs,) + args + (np.zeros(1, dtype=np.int64),)
    if xs.size < _PARALLEL_MIN or xs.shape[0] <= _CHUNK:
        worker(*args)
    else:
        run_threads(worker, args)


def _tap_scales(size, out, kernel, stride, dilation, begin, end, include_pad):
    """Per output position on one axis, 1 / (number of taps the average counts):
    taps inside the input, or (include_pad) inside ``[-begin, size + end)``."""
    limit = size + end if include_pad else size
    low = -begin if include_pad else 0
    scales = np.zeros(out, dtype=np.float64)
    for o in range(out):
        start = o * stride - begin
        count = sum(1 for t in range(kernel) if low <= start + t * dilation < limit)
        scales[o] = 1.0 / count if count else 0.0
    return scales


def _window_setup(op, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """Validate and normalise to a 2-D pool; returns the 4-D input view, the
    per-axis attributes and the output shape in the caller's rank."""
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"{op}: expected float32 input, got {x.dtype}")
    x, kernel, stride, dilation, begin, end, out_spatial, out_shape = pool_window(
        op, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    planes = np.ascontiguousarray(x).reshape(-1, x.shape[2], x.shape[3])
    return planes, kernel, stride, dilation, begin, end, out_spatial, out_shape


def _line_width(width, kernel, stride, dilation, begin, out):
    """Padded row that holds the input at offset ``begin`` and every window."""
    return max(begin + width, (out - 1) * stride + (kernel - 1) * dilation + 1)


def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
             storage_order=0, strides=None):
    """ONNX ``MaxPool`` (output ``Y`` only; ``Indices`` is not supported).

    ``y[n, c, oh, ow] = max over taps (a, b) inside the input of
    x[n, c, oh*s_h - pad_h + a*d_h, ow*s_w - pad_w + b*d_w]``.

    Parameters
    ----------
    x : numpy.ndarray
        float32, ``(N, C, H, W)`` or ``(N, C, L)``.
    auto_pad, ceil_mode, dilations, kernel_shape, pads, strides
        As in the ONNX spec; ``kernel_shape`` is required.
    storage_order : int
        Only affects ``Indices``; accepted and ignored.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, OH, OW)`` (or ``(N, C, OL)``).
    """
    xs, k, s, d, begin, _, out_spatial, out_shape = _window_setup(
        "MaxPool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    out = np.empty((xs.shape[0],) + out_spatial, dtype=np.float32)
    _run_pool(_max_pool_worker, xs, out, *k, *s, *d, *begin,
              _line_width(xs.shape[2], k[1], s[1], d[1], begin[1], out_spatial[1]))
    return out.reshape(out_shape)


def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None):
    """ONNX ``AveragePool``.

    ``y = (sum of the taps inside the input) / count``, where ``count`` is the
    number of taps inside the input (``count_include_pad=0``) or inside the
    padded input ``[-pad_begin, size + pad_end)`` (``count_include_pad=1``);
    taps of a ``ceil_mode`` window beyond the end padding never count.

    Parameters
    ----------
    x : numpy.ndarray
        float32, ``(N, C, H, W)`` or ``(N, C, L)``.
    auto_pad, ceil_mode, count_include_pad, dilations, kernel_shape, pads, strides
        As in the ONNX spec; ``kernel_shape`` is required.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, OH, OW)`` (or ``(N, C, OL)``).
    """
    xs, k, s, d, begin, end, out_spatial, out_shape = _window_setup(
        "AveragePool", x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    scales = [_tap_scales(xs.shape[1 + i], out_spatial[i], k[i], s[i], d[i], begin[i], end[i],
                          bool(count_include_pad)) for i in range(2)]
    out = np.empty((xs.shape[0],) + out_spatial, dtype=np.float32)
    _run_pool(_average_pool_worker, xs, out, *k, *s, *d, *begin,
              _line_width(xs.shape[2], k[1], s[1], d[1], begin[1], out_spatial[1]), *scales)
    return out.reshape(out_shape)


@jit(fast=True)
def _global_average_rows(x, out, r0, r1):
    # fast: lets the float64 sum vectorise; each row is summed by one thread
    # in a fixed order, so the result does not depend on the thread count.
    for row in range(r0, r1):
        total = 0.0
        for k in range(x.shape[1]):
            total += x[row, k]
        out[row] = total / x.shape[1]


@jit
def _global_max_rows(x, out, r0, r1):
    for row in range(r0, r1):
        best = x[row, 0]
        for k in range(1, x.shape[1]):
            best = max(best, x[row, k])
        out[row] = best


@jit
def _global_average_worker(x, out, counter):
    items = (x.shape[0] + _CHUNK - 1) // _CHUNK
    while True:
        item = claim(counter)
        if item >= items:
            break
        _global_average_rows(x, out, item * _CHUNK, min(x.shape[0], (item + 1) * _CHUNK))


@jit
def _global_max_worker(x, out, counter):
    items = (x.shape[0] + _CHUNK - 1) // _CHUNK
    while True:
        item = claim(counter)
        if item >= items:
            break
        _global_max_rows(x, out, item * _CHUNK, min(x.shape[0], (item + 1) * _CHUNK))


def _global_pool(op, worker, x):
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"{op}: expected float32 input, got {x.dtype}")
    if x.ndim < 3 or 0 in x.shape[2:]:
        raise ValueError(f"{op}: expected (N, C, D1, ...) input with non-empty spatial dims, got shape {x.shape}")
    rows = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], -1)
    out = np.empty(rows.shape[0], dtype=np.float32)
    _run_pool(worker, rows, out)
    return out.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def global_average_pool(x):
    """ONNX ``GlobalAveragePool``: ``y[n, c] = mean over all spatial positions of x[n, c]``.

    Sums in float64.

    Parameters
    ----------
    x : numpy.ndarray
        float32 ``(N, C, D1, ..., Dk)``, k >= 1.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, 1, ..., 1)``.
    """
    return _global_pool("GlobalAveragePool", _global_average_worker, x)


def global_max_pool(x):
    """ONNX ``GlobalMaxPool``: ``y[n, c] = max over all spatial positions of x[n, c]``.

    Parameters
    ----------
    x : numpy.ndarray
        float32 ``(N, C, D1, ..., Dk)``, k >= 1.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, 1, ..., 1)``.
    """
    return _global_pool("GlobalMaxPool", _global_max_worker, x)
