"""Integer MaxPool and GlobalAveragePool."""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.common import pool_window
from lowbit.kernels.int8.common import activation, as_bytes, output_dtype, output_range, zero_point_of
from lowbit.formats.fixed_point import quantize_multiplier


@jit
def _row_taps(start, stride, out_len, limit):
    """Outputs ``o`` in ``[0, out_len)`` whose tap ``start + o*stride`` lies in ``[0, limit)``."""
    lo = 0 if start >= 0 else (-start + stride - 1) // stride
    if limit - 1 - start < 0:
        return lo, lo
    hi = min(out_len, (limit - 1 - start) // stride + 1)
    return lo, max(lo, hi)


@jit(multithread=True)
def _max_pool_2x2_kernel(x, y, planes, h, w, ho, wo):
    # 2x2 windows, stride 2, no padding: every window lies inside the input.
    for plane in prange(planes):
        xp = x[plane * h * w:(plane + 1) * h * w]
        yp = y[plane * ho * wo:(plane + 1) * ho * wo]
        for oh in range(ho):
            r0 = xp[2 * oh * w:(2 * oh + 1) * w]
            r1 = xp[(2 * oh + 1) * w:(2 * oh + 2) * w]
            yrow = yp[oh * wo:(oh + 1) * wo]
            for e in range(wo):
                yrow[e] = max(max(r0[2 * e], r0[2 * e + 1]), max(r1[2 * e], r1[2 * e + 1]))


@jit(multithread=True)
def _max_pool_kernel(x, y, planes, h, w, ho, wo, kh, kw, sh, sw, dh, dw, ph, pw, floor, nthreads):
    for t in prange(nthreads):
        col = np.empty(w, dtype=x.dtype)
        for plane in range(t * planes // nthreads, (t + 1) * planes // nthreads):
            _max_pool_plane(x, y, col, plane, h, w, ho, wo, kh, kw, sh, sw, dh, dw, ph, pw, floor)


@jit
def _max_pool_plane(x, y, col, plane, h, w, ho, wo, kh, kw, sh, sw, dh, dw, ph, pw, floor):
    """One (n, c) plane of MaxPool; ``col`` is scratch of the input width."""
    xp = x[plane * h * w:(plane + 1) * h * w]
    yp = y[plane * ho * wo:(plane + 1) * ho * wo]
    for oh in range(ho):
        yrow = yp[oh * wo:(oh + 1) * wo]
        for e in range(wo):
            yrow[e] = floor
        # Max over the window's rows that lie inside the input, for every input column ...
        first = True
        for i in range(kh):
            ih = oh * sh - ph + i * dh
            if ih < 0 or ih >= h:
                continue
            xrow = xp[ih * w:(ih + 1) * w]
            if first:
                for e in range(w):
                    col[e] = xrow[e]
                first = False
            else:
                for e in range(w):
                    col[e] = max(col[e], xrow[e])
        if first:
            continue
        # ... then over the window's columns inside the input (constant strides vectorise).
        for j in range(kw):
            off = j * dw - pw
            lo, hi = _row_taps(off, sw, wo, w)
            if hi <= lo:
                continue
            yv = yrow[lo:hi]
            cv = col[lo * sw + off:]
            if sw == 1:
                for e in range(hi - lo):
                    yv[e] = max(yv[e], cv[e])
            elif sw == 2:
                for e in range(hi - lo):
                    yv[e] = max(yv[e], cv[2 * e])
            else:
                for e in range(hi - lo):
                    yv[e] = max(yv[e], cv[e * sw])


def max_pool_int8(x_q, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None,
                  storage_order=0, strides=None):
    """ONNX MaxPool on uint8/int8 data (output ``Y`` only); same dtype, scale and zero point.

    ``y[n, c, oh, ow] = max over taps (a, b) inside the input of
    x[n, c, oh*s_h - pad_h + a*d_h, ow*s_w - pad_w + b*d_w]``: padding never
    wins.  (A window with no tap inside the input, possible only with pads as
    large as the kernel, gives the type's minimum.)  Max commutes with the
    monotone dequantization, so the result is exact.

    Parameters
    ----------
    x_q : ndarray
        uint8 or int8, (N, C, H, W) or (N, C, L).
    auto_pad, ceil_mode, dilations, kernel_shape, pads, strides
        As in the ONNX spec; ``kernel_shape`` is required.
    storage_order : int
        Only affects ``Indices``; accepted and ignored.

    Returns
    -------
    ndarray
        The dtype of ``x_q``, (N, C, oH, oW) (or (N, C, oL)).
    """
    op = "max_pool_int8"
    x = activation(op, "x_q", x_q)
    x, kernel, stride, dilation, begin, _, out_spatial, out_shape = pool_window(
        op, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    n, c, h, w = x.shape
    ho, wo = out_spatial
    y = np.empty((n, c, ho, wo), dtype=x.dtype)
    if y.size == 0:
        return y.reshape(out_shape)
    if kernel == (2, 2) and stride == (2, 2) and dilation == (1, 1) and begin == (0, 0) \
            and 2 * ho <= h and 2 * wo <= w:
        _max_pool_2x2_kernel(x.reshape(-1), y.reshape(-1), n * c, h, w, ho, wo)
    else:
        floor = np.iinfo(x.dtype).min
        _max_pool_kernel(x.reshape(-1), y.reshape(-1), n * c, h, w, ho, wo, kernel[0], kernel[1],
                         stride[0], stride[1], dilation[0], dilation[1], begin[0], begin[1], x.dtype.type(floor),
                         min(n * c, numba.get_num_threads()))
    return y.reshape(out_shape)


@jit(multithread=True)
def _global_average_kernel(x, y, rows, count, zp_x, m0, shift, zp_y, qmin, qmax):
    rnd = np.int64(1) << (shift - 1)
    for row in prange(rows):
        src = x[row * count:(row + 1) * count]
        total = np.int64(0)
        for e in range(count):
            total += np.int64(src[e])
        total -= np.int64(zp_x) * count
        v = ((total * m0 + rnd) >> shift) + zp_y
        y[row] = min(max(v, qmin), qmax) & 0xFF


def global_average_pool_int8(x_q, *, x_scale, x_zero_point, y_scale, y_zero_point, qmin, qmax, y_signed=0):
    """ONNX GlobalAveragePool on quantized data, in integer arithmetic.

    ``acc[n, c] = sum over the S spatial positions of (x_q - x_zero_point)``
    (exact; int64, which equals int32 accumulation whenever that does not
    overflow), then ``y = clamp(y_zero_point + ((acc * M0 + 2^(n-1)) >> n),
    qmin, qmax)`` with ``(M0, n)`` the fixed-point form
    (:func:`lowbit.formats.fixed_point.quantize_multiplier`) of
    ``M = x_scale / (S * y_scale)``.

    Parameters
    ----------
    x_q : ndarray
        uint8 or int8, (N, C, D1, ..., Dk), k >= 1.
    x_scale, x_zero_point : float, int
        Input quantization.
    y_scale, y_zero_point : float, int
        Output quantization.
    qmin, qmax : int
        Output clamp.
    y_signed : int
        0: uint8 output; 1: int8 output.

    Returns
    -------
    ndarray
        uint8 or int8, (N, C, 1, ..., 1).
    """
    op = "global_average_pool_int8"
    x = activation(op, "x_q", x_q)
    if x.ndim < 3 or 0 in x.shape[2:]:
        raise ValueError(f"{op}: expected (N, C, D1, ...) input with non-empty spatial dims, got shape {x.shape}")
    zp_x = zero_point_of(op, "x_zero_point", x_zero_point, x.dtype)
    dtype = output_dtype(y_signed)
    zp_y = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    qmin, qmax = output_range(op, qmin, qmax, dtype)
    count = int(np.prod(x.shape[2:]))
    (m0,), (shift,) = quantize_multiplier(float(x_scale) / (count * float(y_scale)))
    rows = x.shape[0] * x.shape[1]
    y = np.empty(rows, dtype=dtype)
    if rows:
        _global_average_kernel(x.reshape(-1), as_bytes(y), rows, count, zp_x, m0, shift, zp_y, qmin, qmax)
    return y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))
