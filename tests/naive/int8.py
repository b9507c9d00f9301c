"""Naive numpy oracles for the integer (int8) kernels.

Written from the quantization scheme, independently of ``lowbit.kernels``
(and of ``lowbit.formats.fixed_point``): inputs are padded explicitly with their
zero point, every sum is taken in int64 (or Python ints), and requantization
is spelled out with a floor division.  Slow on purpose; use small inputs.
"""
from __future__ import annotations

import math

import numpy as np

from lowbit.formats.fixed_point import quantize_multiplier  # the lead's helper: parameters only


def rounding_shift(v, multiplier, shift):
    """``floor((v * M0 + 2^(n-1)) / 2^n)`` elementwise, in exact integer arithmetic (object arrays)."""
    v = np.asarray(v, dtype=object)
    m = np.asarray(multiplier, dtype=object)
    n = np.asarray(shift, dtype=object)
    two_n = np.vectorize(lambda s: 2 ** int(s), otypes=[object])(n)
    return (v * m + two_n // 2) // two_n


def requantize(acc, multiplier, shift, zero_point, qmin, qmax, signed):
    """Rounding shift, plus zero point, clamp; cast to int8 (``signed``) or uint8."""
    y = rounding_shift(acc, multiplier, shift) + int(zero_point)
    y = np.vectorize(lambda v: min(max(int(v), int(qmin)), int(qmax)), otypes=[object])(y)
    return np.asarray(y.astype(np.int64), dtype=np.int8 if signed else np.uint8)


def _pads_2d(h, w, kh, kw, strides, dilations, pads, auto_pad, ceil_mode=0):
    """``(top, left, bottom, right)`` following the ONNX spec."""
    sh, sw = strides
    dh, dw = dilations
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = []
        for size, k, s, d in ((h, kh, sh, dh), (w, kw, sw, dw)):
            o = math.ceil(size / s)
            total = max(0, (o - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            out.append((small, big) if auto_pad == "SAME_UPPER" else (big, small))
        return out[0][0], out[1][0], out[0][1], out[1][1]
    if auto_pad == "VALID" or pads is None:
        return 0, 0, 0, 0
    return tuple(int(p) for p in pads)


def conv_acc(x_q, w_q, bias_q, x_zero_point, auto_pad="NOTSET", dilations=None, group=1, pads=None,
             strides=None):
    """int64 accumulators of an integer Conv (2-D; 1-D input is lifted)."""
    x = np.asarray(x_q).astype(np.int64)
    w = np.asarray(w_q).astype(np.int64)
    if x.ndim == 3:
        acc = conv_acc(x[:, :, None, :], w[:, :, None, :], bias_q, x_zero_point, auto_pad,
                       None if dilations is None else [1, dilations[0]], group,
                       None if pads is None else [0, pads[0], 0, pads[1]],
                       None if strides is None else [1, strides[0]])
        return acc[:, :, 0, :]
    n, c, h, wid = x.shape
    m, cg, kh, kw = w.shape
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    top, left, bottom, right = _pads_2d(h, wid, kh, kw, (sh, sw), (dh, dw), pads, auto_pad)
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=int(x_zero_point))
    xp = xp - int(x_zero_point)
    ho = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    wo = (wid + left + right - (kw - 1) * dw - 1) // sw + 1
    mg = m // group
    acc = np.zeros((n, m, ho, wo), dtype=np.int64)
    for mo in range(m):
        g = mo // mg
        for oh in range(ho):
            for ow in range(wo):
                window = xp[:, g * cg:(g + 1) * cg, oh * sh:oh * sh + (kh - 1) * dh + 1:dh,
                            ow * sw:ow * sw + (kw - 1) * dw + 1:dw]
                acc[:, mo, oh, ow] = (window * w[mo]).sum(axis=(1, 2, 3))
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64).reshape(1, m, 1, 1)
    return acc


def conv(x_q, w_q, bias_q, multiplier, shift, *, x_zero_point, y_zero_point, qmin, qmax, y_signed=0,
         auto_pad="NOTSET", dilations=None, group=1, pads=None, strides=None):
    """Integer Conv: int64 accumulation over an explicitly zp-padded input, then requantization."""
    acc = conv_acc(x_q, w_q, bias_q, x_zero_point, auto_pad, dilations, group, pads, strides)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    return requantize(acc, np.asarray(multiplier).reshape(shape), np.asarray(shift).reshape(shape),
                      y_zero_point, qmin, qmax, y_signed)


def gemm(a_q, w_q, bias_q, multiplier, shift, *, a_zero_point, y_zero_point, qmin, qmax, y_signed=0):
    """Integer Gemm ``y[n, m]`` from ``a_q`` (N, K) and ``w_q`` (M, K)."""
    a = np.asarray(a_q).astype(np.int64) - int(a_zero_point)
    w = np.asarray(w_q).astype(np.int64)
    acc = np.zeros((a.shape[0], w.shape[0]), dtype=np.int64)
    for i in range(a.shape[0]):
        for j in range(w.shape[0]):
            acc[i, j] = int((a[i] * w[j]).sum())
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64)[None, :]
    return requantize(acc, np.asarray(multiplier)[None, :], np.asarray(shift)[None, :],
                      y_zero_point, qmin, qmax, y_signed)


def float_output(acc, scale, y_min=-math.inf, y_max=math.inf):
    """Float-output form of Conv/Gemm: each exact sum rounded once to float32, times the float32 scale
    of its output channel (axis 1) in float32, then clamped to ``[y_min, y_max]``."""
    acc = np.asarray(acc, dtype=np.int64)
    shape = (1, -1) + (1,) * (acc.ndim - 2)
    y = acc.astype(np.float32) * np.asarray(scale, dtype=np.float32).reshape(shape)
    return np.clip(y, np.float32(y_min), np.float32(y_max)).astype(np.float32)


def gemm_acc(a_q, w_q, bias_q, a_zero_point):
    """int64 accumulators ``bias[m] + sum_k (a[n, k] - zp) w[m, k]`` of an integer Gemm."""
    a = np.asarray(a_q).astype(np.int64) - int(a_zero_point)
    w = np.asarray(w_q).astype(np.int64)
    acc = np.zeros((a.shape[0], w.shape[0]), dtype=np.int64)
    for i in range(a.shape[0]):
        for j in range(w.shape[0]):
            acc[i, j] = int((a[i] * w[j]).sum())
    if bias_q is not None:
        acc += np.asarray(bias_q, dtype=np.int64)[None, :]
    return acc


def max_pool(x_q, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None, pads=None, strides=None):
    """Integer MaxPool (2-D): the max over the window taps inside the input."""
    x = np.asarray(x_q)
    n, c, h, w = x.shape
    kh, kw = kernel_shape
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    top, left, bottom, right = _pads_2d(h, w, kh, kw, (sh, sw), (dh, dw), pads, auto_pad)

    def out_len(size, k, s, d, b, e):
        span = (k - 1) * d + 1
        if ceil_mode:
            o = -(-(size + b + e - span) // s) + 1
            if (o - 1) * s >= size + b:  # a last window starting in the end padding is dropped
                o -= 1
            return o
        return (size + b + e - span) // s + 1

    ho, wo = out_len(h, kh, sh, dh, top, bottom), out_len(w, kw, sw, dw, left, right)
    y = np.zeros((n, c, ho, wo), dtype=x.dtype)
    for oh in range(ho):
        for ow in range(wo):
            best = None
            for i in range(kh):
                for j in range(kw):
                    ih, iw = oh * sh - top + i * dh, ow * sw - left + j * dw
                    if 0 <= ih < h and 0 <= iw < w:
                        v = x[:, :, ih, iw]
                        best = v.copy() if best is None else np.maximum(best, v)
            y[:, :, oh, ow] = best
    return y


def add(a_q, b_q, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point, qmin, qmax,
        y_signed=0, left_shift=20):
    """Integer Add, following the formula in ``add_int8``'s docstring, in Python ints.

    ``twice = 2 max(s_a, s_b)``; each input ``v`` becomes
    ``r_v = rshift(((v - zp_v) * 2^L) * M0_v, n_v)`` with ``(M0_v, n_v)`` the
    fixed-point form of ``s_v / twice``; then
    ``y = clamp(zp_y + rshift((r_a + r_b) * M0_y, n_y))`` with ``s_y``'s
    multiplier ``twice / (2^L s_y)``.  ``rshift(v, n) = floor((v + 2^(n-1)) / 2^n)``.
    """
    a = np.asarray(a_q).astype(np.int64)
    b = np.asarray(b_q).astype(np.int64)
    twice = 2.0 * max(float(a_scale), float(b_scale))
    (ma,), (na,) = quantize_multiplier(float(a_scale) / twice)
    (mb,), (nb,) = quantize_multiplier(float(b_scale) / twice)
    (my,), (ny,) = quantize_multiplier(twice / (2.0 ** left_shift * float(y_scale)))
    a, b = np.broadcast_arrays(a, b)
    out = np.zeros(a.shape, dtype=np.int64)
    for idx in np.ndindex(*a.shape):
        ra = ((int(a[idx]) - int(a_zero_point)) * 2 ** left_shift * int(ma) + 2 ** (int(na) - 1)) // 2 ** int(na)
        rb = ((int(b[idx]) - int(b_zero_point)) * 2 ** left_shift * int(mb) + 2 ** (int(nb) - 1)) // 2 ** int(nb)
        v = int(y_zero_point) + ((ra + rb) * int(my) + 2 ** (int(ny) - 1)) // 2 ** int(ny)
        out[idx] = min(max(v, int(qmin)), int(qmax))
    return out.astype(np.int8 if y_signed else np.uint8)


def add_float(a_q, b_q, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point, qmin, qmax):
    """The float formula the integer Add approximates: ``round((s_a(a-zp_a) + s_b(b-zp_b)) / s_y) + zp_y``."""
    real = (float(a_scale) * (np.asarray(a_q, np.float64) - a_zero_point)
            + float(b_scale) * (np.asarray(b_q, np.float64) - b_zero_point))
    return np.clip(np.rint(real / float(y_scale)) + y_zero_point, qmin, qmax).astype(np.int64)


def rescale(q, *, in_scale, in_zero_point, y_scale, y_zero_point, qmin, qmax, y_signed=0):
    """``q`` requantized to new parameters with the fixed-point multiplier of ``in_scale / y_scale``."""
    (m,), (n,) = quantize_multiplier(float(in_scale) / float(y_scale))
    acc = np.asarray(q).astype(np.int64) - int(in_zero_point)
    return requantize(acc, m, n, y_zero_point, qmin, qmax, y_signed)


def concat(*inputs, axis, in_scales, in_zero_points, y_scale, y_zero_point, y_signed=0):
    """Each input rescaled to the output parameters (copied when they are equal), then joined."""
    lo, hi = (-128, 127) if y_signed else (0, 255)
    parts = []
    for q, s, z in zip(inputs, in_scales, in_zero_points):
        q = np.asarray(q)
        same_type = q.dtype == (np.int8 if y_signed else np.uint8)
        if float(s) == float(y_scale) and int(z) == int(y_zero_point) and same_type:
            parts.append(q)
        else:
            parts.append(rescale(q, in_scale=s, in_zero_point=z, y_scale=y_scale, y_zero_point=y_zero_point,
                                 qmin=lo, qmax=hi, y_signed=y_signed))
    return np.concatenate(parts, axis=axis)


def global_average_pool(x_q, *, x_scale, x_zero_point, y_scale, y_zero_point, qmin, qmax, y_signed=0):
    """Sum of ``q - zp`` over the spatial axes, requantized by ``s_x / (H W s_y)``."""
    x = np.asarray(x_q).astype(np.int64) - int(x_zero_point)
    count = int(np.prod(x.shape[2:]))
    total = x.reshape(x.shape[0], x.shape[1], -1).sum(axis=2)
    (m,), (n,) = quantize_multiplier(float(x_scale) / (count * float(y_scale)))
    y = requantize(total, m, n, y_zero_point, qmin, qmax, y_signed)
    return y.reshape(x.shape[:2] + (1,) * (x.ndim - 2))


def relu(x_q, *, zero_point):
    """``max(q, zp)``."""
    x = np.asarray(x_q)
    return np.where(x.astype(np.int64) < int(zero_point), int(zero_point), x).astype(x.dtype)
