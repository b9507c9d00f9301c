"""Graph-level binary ops: what the executor calls for nodes at precision ``binary``.

A binary Conv/Gemm node reads a float32 tensor (binarized here as
``sign(x)``, ``sign(0) = +1``) or, with ``input_packed=1``, the packed signs
another binary node produced; its weights are packed signs and it computes
the integer ``dot = Σ sign(x)·sign(w)`` (padded taps contribute 0). Then:

* ``output="float"``: ``y = clamp(scale[m]·dot + shift[m], clip_min, clip_max)``
  as float32 NCHW (``scale = α·BN factor``, ``shift`` = folded bias);
* ``output="sign"``: the next binary layer's packed input
  ``sign(clamp(scale·dot + shift))``, computed from integer thresholds
  (BatchNorm + sign folded): bit = ``(dot < threshold[m]) XOR flip[m]``.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from lowbit.config import jit
from lowbit.kernels.binary.conv import binary_conv, binary_conv_sign
from lowbit.kernels.binary.gemm import binary_gemm
from lowbit.kernels.binary.pack import pack_signs, pack_signs_2d
from lowbit.kernels.binary.pool import binary_max_pool
from lowbit.kernels.common import resolve_pads


@jit(multithread=True)
def _affine_clamp(dot, scale, shift, lo, hi, out):
    n, m, plane = dot.shape
    for task in numba.prange(n * m):
        i, c = task // m, task % m
        a, b = scale[c], shift[c]
        for p in range(plane):
            v = np.float32(dot[i, c, p]) * a + b
            out[i, c, p] = min(max(v, lo), hi)


def affine_clamp(dot, scale, shift, clip_min=-math.inf, clip_max=math.inf):
    """``clamp(scale[m]·dot + shift[m])`` in float32 for int32 dots of shape (N, M, ...)."""
    n, m = dot.shape[:2]
    out = np.empty(dot.shape, dtype=np.float32)
    _affine_clamp(dot.reshape(n, m, -1), np.ascontiguousarray(scale, np.float32),
                  np.ascontiguousarray(shift, np.float32), np.float32(clip_min), np.float32(clip_max),
                  out.reshape(n, m, -1))
    return out


def conv_binary(x, w_packed, scale, shift, thresholds=None, flip=None, *, channels, kernel_shape, pads=None,
                strides=None, dilations=None, auto_pad="NOTSET", group=1, input_packed=0, output="float",
                clip_min=-math.inf, clip_max=math.inf):
    """Binary Conv node (see the module docstring for the formulas)."""
    if group != 1:
        raise ValueError("binary Conv supports group=1 only")
    x_packed = x if input_packed else pack_signs(x)
    kernel_shape = tuple(int(k) for k in kernel_shape)
    spatial = x_packed.shape[1:3]
    strides = tuple(strides) if strides is not None else (1, 1)
    dilations = tuple(dilations) if dilations is not None else (1, 1)
    begin, end = resolve_pads(spatial, kernel_shape, strides, dilations, pads, auto_pad)
    geometry = dict(channels=channels, kernel_shape=kernel_shape, pads=list(begin) + list(end), strides=strides,
                    dilations=dilations)
    if output == "sign":
        return binary_conv_sign(x_packed, w_packed, thresholds, flip, **geometry)
    return affine_clamp(binary_conv(x_packed, w_packed, **geometry), scale, shift, clip_min, clip_max)


def gemm_binary(a, w_packed, scale, shift, *, k, clip_min=-math.inf, clip_max=math.inf):
    """Binary Gemm node: ``y[n, m] = clamp(scale[m]·Σ_k sign(a)·sign(w) + shift[m])``, float32 (N, M)."""
    a = np.asarray(a)
    if a.ndim != 2:
        a = a.reshape(a.shape[0], -1)
    dot = binary_gemm(pack_signs_2d(a), w_packed, k=k)
    return affine_clamp(dot, scale, shift, clip_min, clip_max)


def max_pool_binary(x_packed, *, kernel_shape, pads=None, strides=None, dilations=None, ceil_mode=0,
                    auto_pad="NOTSET", storage_order=0, channels=None):
    """MaxPool of packed signs (the AND of sign bits); output packed."""
    kernel_shape = tuple(int(k) for k in kernel_shape)
    strides = tuple(strides) if strides is not None else (1, 1)
    dilations = tuple(dilations) if dilations is not None else (1, 1)
    begin, end = resolve_pads(x_packed.shape[1:3], kernel_shape, strides, dilations, pads, auto_pad)
    return binary_max_pool(x_packed, channels=channels, kernel_shape=kernel_shape, pads=list(begin) + list(end),
                           strides=strides, dilations=dilations, ceil_mode=ceil_mode)
