"""fp32 pooling: MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

MaxPool and AveragePool take 2-D NCHW input (1-D NCL input runs as a 2-D pool
of height 1); output sizes and pads come from
:func:`lowbit.kernels.common.window_attributes`.  The kernels never build a
padded copy: for each output position they work out which window taps land
inside the input and loop over those only.

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
    """Taps ``t`` in ``[0, kernel)`` with ``0 <= start + t*dilation < limit``,
    as a half-open range ``(first, stop)``."""
    first = 0 if start >= 0 else (-start + dilation - 1) // dilation
    if limit - 1 - start < 0:
        return first, first
    stop = min(kernel, (limit - 1 - start) // dilation + 1)
    return first, max(first, stop)


@jit(parallel=True)
def _max_pool_kernel(x, out, kh, kw, sh, sw, dh, dw, ph, pw):
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in prange(n * c):
        i, j = plane // c, plane % c
        for oh in range(out_h):
            h0 = oh * sh - ph
            a0, a1 = _taps(h0, dh, kh, height)
            for ow in range(out_w):
                w0 = ow * sw - pw
                b0, b1 = _taps(w0, dw, kw, width)
                best = -np.inf
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        v = x[i, j, h0 + a * dh, w0 + b * dw]
                        if v > best:
                            best = v
                out[i, j, oh, ow] = best


@jit(parallel=True)
def _average_pool_kernel(x, out, kh, kw, sh, sw, dh, dw, ph, pw, pad_h_end, pad_w_end, include_pad):
    n, c, height, width = x.shape
    out_h, out_w = out.shape[2], out.shape[3]
    for plane in prange(n * c):
        i, j = plane // c, plane % c
        for oh in range(out_h):
            h0 = oh * sh - ph
            a0, a1 = _taps(h0, dh, kh, height)
            # Taps inside the padded extent; every window starts at or after -pad_begin.
            pad_rows = _taps(h0 + ph, dh, kh, height + ph + pad_h_end)[1]
            for ow in range(out_w):
                w0 = ow * sw - pw
                b0, b1 = _taps(w0, dw, kw, width)
                pad_cols = _taps(w0 + pw, dw, kw, width + pw + pad_w_end)[1]
                total = 0.0
                for a in range(a0, a1):
                    for b in range(b0, b1):
                        total += x[i, j, h0 + a * dh, w0 + b * dw]
                count = pad_rows * pad_cols if include_pad else (a1 - a0) * (b1 - b0)
                out[i, j, oh, ow] = total / count if count > 0 else 0.0


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
    return np.ascontiguousarray(x), kernel, stride, dilation, begin, end, out_spatial, out_shape


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
    out = np.empty(xs.shape[:2] + tuple(out_spatial), dtype=np.float32)
    _max_pool_kernel(xs, out, k[0], k[1], s[0], s[1], d[0], d[1], begin[0], begin[1])
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
    out = np.empty(xs.shape[:2] + tuple(out_spatial), dtype=np.float32)
    _average_pool_kernel(xs, out, k[0], k[1], s[0], s[1], d[0], d[1], begin[0], begin[1],
                         end[0], end[1], bool(count_include_pad))
    return out.reshape(out_shape)


@jit(parallel=True)
def _global_average_kernel(x, out):
    for row in prange(x.shape[0]):
        total = 0.0
        for k in range(x.shape[1]):
            total += x[row, k]
        out[row] = total / x.shape[1]


@jit(parallel=True)
def _global_max_kernel(x, out):
    for row in prange(x.shape[0]):
        best = -np.inf
        for k in range(x.shape[1]):
            if x[row, k] > best:
                best = x[row, k]
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
