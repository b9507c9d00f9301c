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
from numba import prange

from lowbit.config import jit
from lowbit.kernels.common import window_attributes


@jit
def _taps(start, dilation, kernel, limit):
    """Taps ``t`` of a window starting at ``start`` with ``0 <= start + t*dilation < limit``,
    as a half-open range ``(first, stop)``."""
    first = 0 if start >= 0 else (-start + dilation - 1) // dilation
    stop = 0 if start >= limit else min(kernel, (limit - 1 - start) // dilation + 1)
    return first, max(first, stop)


@jit(parallel=True)
def _max_pool_kernel(x, out, kh, kw, sh, sw, dh, dw, top, left, line_width):
    # x: (planes, H, W); out: (planes, OH, OW).  Max is separable: for each
    # output row, a vertical max over the window's input rows (contiguous,
    # vectorises) into a -inf padded line, then a horizontal max along it.
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    for p in prange(x.shape[0]):
        line = np.full(line_width, -np.inf, dtype=np.float32)
        inner = line[left:left + width]
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


@jit(parallel=True)
def _average_pool_kernel(x, out, kh, kw, sh, sw, dh, dw, top, left, line_width, row_scale, col_scale):
    # As _max_pool_kernel, summing into a zero-padded line (in float32, like
    # onnxruntime: a window holds few taps).  The divisor is separable too:
    # y = sum * row_scale[oh] * col_scale[ow], the scales being 1/count (0 for
    # a window with nothing to count) from the caller.
    height, width = x.shape[1], x.shape[2]
    out_h, out_w = out.shape[1], out.shape[2]
    for p in prange(x.shape[0]):
        line = np.zeros(line_width, dtype=np.float32)
        total = np.empty(out_w, dtype=np.float32)
        inner = line[left:left + width]
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
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: supports 1-D (N,C,L) and 2-D (N,C,H,W) input, got shape {x.shape}")
    if kernel_shape is None:
        raise ValueError(f"{op}: attribute 'kernel_shape' is required")
    rank = x.ndim - 2
    for name, value in (("kernel_shape", kernel_shape), ("strides", strides), ("dilations", dilations)):
        if value is not None and (len(value) != rank or any(int(v) < 1 for v in value)):
            raise ValueError(f"{op}: '{name}' must be {rank} positive ints for input shape {x.shape}, got {tuple(value)}")
    if pads is not None and (len(pads) != 2 * rank or any(int(p) < 0 for p in pads)):
        raise ValueError(f"{op}: 'pads' must be {2 * rank} non-negative ints, got {tuple(pads)}")
    kernel, stride, dilation, begin, end, out_spatial = window_attributes(
        x.shape, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    if any(o < 1 for o in out_spatial):
        raise ValueError(f"{op}: window {kernel} (dilations {dilation}, pads {begin}+{end}) "
                         f"does not fit input shape {x.shape}")
    out_shape = x.shape[:2] + tuple(out_spatial)
    if rank == 1:
        x = x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
        kernel, stride, dilation = (1,) + kernel, (1,) + stride, (1,) + dilation
        begin, end, out_spatial = (0,) + begin, (0,) + end, (1,) + out_spatial
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
    _max_pool_kernel(xs, out, *k, *s, *d, *begin, _line_width(xs.shape[2], k[1], s[1], d[1], begin[1], out_spatial[1]))
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
    _average_pool_kernel(xs, out, *k, *s, *d, *begin,
                         _line_width(xs.shape[2], k[1], s[1], d[1], begin[1], out_spatial[1]), *scales)
    return out.reshape(out_shape)


@jit(parallel=True, fast=True)
def _global_average_kernel(x, out):
    # fast: lets the float64 sum vectorise; each row is summed by one thread,
    # so the result does not depend on the thread count.
    for row in prange(x.shape[0]):
        total = 0.0
        for k in range(x.shape[1]):
            total += x[row, k]
        out[row] = total / x.shape[1]


@jit(parallel=True)
def _global_max_kernel(x, out):
    for row in prange(x.shape[0]):
        best = x[row, 0]
        for k in range(1, x.shape[1]):
            best = max(best, x[row, k])
        out[row] = best


def _global_pool(op, kernel, x):
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"{op}: expected float32 input, got {x.dtype}")
    if x.ndim < 3 or 0 in x.shape[2:]:
        raise ValueError(f"{op}: expected (N, C, D1, ...) input with non-empty spatial dims, got shape {x.shape}")
    rows = np.ascontiguousarray(x).reshape(x.shape[0] * x.shape[1], -1)
    out = np.empty(rows.shape[0], dtype=np.float32)
    kernel(rows, out)
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
    return _global_pool("GlobalAveragePool", _global_average_kernel, x)


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
    return _global_pool("GlobalMaxPool", _global_max_kernel, x)
