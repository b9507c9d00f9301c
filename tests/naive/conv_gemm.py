"""Naive numpy oracles for Conv, Gemm and MatMul.

Written from the ONNX spec, independently of ``lowbit.kernels``: the input is
padded explicitly with ``np.pad`` and every output element is a plain sum
over its window, in float64.  Slow on purpose; use small inputs.
"""
from __future__ import annotations

import math

import numpy as np


def _same_pads(size, kernel, stride, dilation, upper):
    """Begin/end pads for auto_pad SAME_UPPER / SAME_LOWER on one axis."""
    out = math.ceil(size / stride)
    total = max(0, (out - 1) * stride + (kernel - 1) * dilation + 1 - size)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def conv(x, w, b=None, auto_pad="NOTSET", dilations=None, group=1, pads=None, strides=None,
         clip_min=-math.inf, clip_max=math.inf):
    """ONNX Conv for 1-D or 2-D inputs, with an optional clamp of the result (float64)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if x.ndim == 3:
        pads1 = None if pads is None else [0, pads[0], 0, pads[1]]
        y = conv(x[:, :, None, :], w[:, :, None, :], b, auto_pad,
                 None if dilations is None else [1, dilations[0]], group, pads1,
                 None if strides is None else [1, strides[0]], clip_min, clip_max)
        return y[:, :, 0, :]
    n, c, h, wid = x.shape
    m, cg, kh, kw = w.shape
    sh, sw = strides or (1, 1)
    dh, dw = dilations or (1, 1)
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        top, bottom = _same_pads(h, kh, sh, dh, auto_pad == "SAME_UPPER")
        left, right = _same_pads(wid, kw, sw, dw, auto_pad == "SAME_UPPER")
    elif auto_pad == "VALID" or pads is None:
        top = bottom = left = right = 0
    else:
        top, left, bottom, right = pads
    xp = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    ho = (h + top + bottom - (kh - 1) * dh - 1) // sh + 1
    wo = (wid + left + right - (kw - 1) * dw - 1) // sw + 1
    mg = m // group
    y = np.zeros((n, m, ho, wo))
    for img in range(n):
        for oc in range(m):
            g = oc // mg
            channels = xp[img, g * cg:(g + 1) * cg]
            for oh in range(ho):
                for ow in range(wo):
                    window = channels[:, oh * sh:oh * sh + (kh - 1) * dh + 1:dh,
                                      ow * sw:ow * sw + (kw - 1) * dw + 1:dw]
                    y[img, oc, oh, ow] = np.sum(window * w[oc])
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return np.clip(y, clip_min, clip_max)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0, clip_min=-math.inf, clip_max=math.inf):
    """ONNX Gemm with an optional clamp, by explicit loops over the output (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if transA:
        a = a.T
    if transB:
        b = b.T
    m, k = a.shape
    n = b.shape[1]
    y = np.zeros((m, n))
    for i in range(m):
        for j in range(n):
            y[i, j] = alpha * sum(a[i, t] * b[t, j] for t in range(k))
    if c is not None:
        y += beta * np.broadcast_to(np.asarray(c, dtype=np.float64), (m, n))
    return np.clip(y, clip_min, clip_max)


def matmul(a, b):
    """numpy-style matmul by broadcasting the batch axes and looping over them (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    batch = np.broadcast_shapes(a2.shape[:-2], b2.shape[:-2])
    a3 = np.broadcast_to(a2, batch + a2.shape[-2:])
    b3 = np.broadcast_to(b2, batch + b2.shape[-2:])
    y = np.zeros(batch + (a2.shape[-2], b2.shape[-1]))
    for index in np.ndindex(*batch):
        y[index] = np.einsum("ik,kj->ij", a3[index], b3[index])
    if a.ndim == 1:
        y = y[..., 0, :]
    if b.ndim == 1:
        y = y[..., 0]
    return y
