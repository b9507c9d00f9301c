"""Naive numpy oracles for the binary (XNOR / popcount) kernels.

Written from the definitions, independently of ``lowbit.kernels``: values are
+-1 integer arrays (``sign(0) = +1``), a convolution zero-pads its +-1 input
explicitly (a padded position contributes 0 to the sum) and sums plain
products in int64, max pooling pads with -inf.  Packing is spelled out with
Python integers, bit by bit.  Slow on purpose; use small inputs.
"""
from __future__ import annotations

import numpy as np


def sign(x):
    """+1 where ``x >= 0`` (and for 0, -0.0, NaN), -1 where ``x < 0``; int64."""
    x = np.asarray(x)
    return np.where(x < 0, -1, 1).astype(np.int64)


def pack(values, channel_axis):
    """Pack a +-1 array, channel axis moved last, into uint64 words (bit 1 = -1)."""
    v = np.moveaxis(np.asarray(values), channel_axis, -1)
    channels = v.shape[-1]
    words = (channels + 63) // 64
    flat = v.reshape(-1, channels)
    out = np.zeros((flat.shape[0], words), dtype=np.uint64)
    for r in range(flat.shape[0]):
        for w in range(words):
            word = 0
            for c in range(64 * w, min(64 * w + 64, channels)):
                if flat[r, c] < 0:
                    word += 2 ** (c - 64 * w)
            out[r, w] = word
    return out.reshape(v.shape[:-1] + (words,))


def unpack(packed, channels, channel_axis):
    """+-1 int64 values of a packed array, channel axis put back at ``channel_axis``."""
    packed = np.asarray(packed)
    flat = packed.reshape(-1, packed.shape[-1])
    out = np.empty((flat.shape[0], channels), dtype=np.int64)
    for r in range(flat.shape[0]):
        for c in range(channels):
            bit = (int(flat[r, c // 64]) >> (c % 64)) & 1
            out[r, c] = -1 if bit else 1
    return np.moveaxis(out.reshape(packed.shape[:-1] + (channels,)), -1, channel_axis)


def conv(xs, ws, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1)):
    """Conv of +-1 arrays xs (N, C, H, W) and ws (M, C, kH, kW), zero-padded; int64 (N, M, oH, oW)."""
    xs = np.asarray(xs, dtype=np.int64)
    ws = np.asarray(ws, dtype=np.int64)
    top, left, bottom, right = pads
    sh, sw = strides
    dh, dw = dilations
    m, c, kh, kw = ws.shape
    xp = np.pad(xs, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (xp.shape[2] - (dh * (kh - 1) + 1)) // sh + 1
    wo = (xp.shape[3] - (dw * (kw - 1) + 1)) // sw + 1
    out = np.zeros((xs.shape[0], m, ho, wo), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            out += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j])
    return out


def gemm(a, w):
    """``a @ w.T`` for +-1 matrices, int64."""
    return np.asarray(a, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T


def threshold_sign(dot, thresholds, flip):
    """+-1 of ``(dot < thresholds[m]) XOR flip[m]`` per channel (axis 1); True means -1."""
    t = np.asarray(thresholds, dtype=np.int64).reshape(1, -1, *([1] * (dot.ndim - 2)))
    f = np.asarray(flip, dtype=bool).reshape(t.shape)
    negative = (dot < t) != f
    return np.where(negative, -1, 1).astype(np.int64)


def max_pool(xs, kernel_shape, pads=(0, 0, 0, 0), strides=(1, 1), dilations=(1, 1), ceil_mode=0):
    """MaxPool of +-1 values (N, C, H, W), padded with -inf; an all-padding window gives -1."""
    xs = np.asarray(xs, dtype=np.float64)
    top, left, bottom, right = pads
    kh, kw = kernel_shape
    sh, sw = strides
    dh, dw = dilations
    h, w = xs.shape[2:]

    def out_len(size, k, s, d, p0, p1):
        span = d * (k - 1) + 1
        if ceil_mode:
            n = -(-(size + p0 + p1 - span) // s) + 1
            if (n - 1) * s >= size + p0:
                n -= 1
            return n
        return (size + p0 + p1 - span) // s + 1

    ho = out_len(h, kh, sh, dh, top, bottom)
    wo = out_len(w, kw, sw, dw, left, right)
    extra_h = max(0, (ho - 1) * sh + dh * (kh - 1) + 1 - (h + top))
    extra_w = max(0, (wo - 1) * sw + dw * (kw - 1) + 1 - (w + left))
    xp = np.pad(xs, ((0, 0), (0, 0), (top, extra_h), (left, extra_w)), constant_values=-np.inf)
    out = np.full(xs.shape[:2] + (ho, wo), -np.inf)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw]
            out = np.maximum(out, patch)
    return np.where(out < 0, -1, 1).astype(np.int64)
