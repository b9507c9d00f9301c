"""fp32 normalization: BatchNormalization (inference) and LRN."""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit


@jit(multithread=True)
def _affine_kernel(x, out, a, c):
    # x, out: (N, M, inner); a, c: (M,) float64.
    n, m, inner = x.shape
    for plane in prange(n * m):
        i, j = plane // m, plane % m
        for k in range(inner):
            out[i, j, k] = x[i, j, k] * a[j] + c[j]


def batch_normalization(x, scale, b, input_mean, input_var, *, epsilon=1e-5, momentum=0.9, spatial=1,
                        training_mode=0):
    """ONNX ``BatchNormalization``, inference mode.

    ``y = scale * (x - mean) / sqrt(var + epsilon) + b`` per channel, computed
    as ``y = x * a + c`` with ``a = scale / sqrt(var + epsilon)`` and
    ``c = b - mean * a`` folded in float64.

    Parameters
    ----------
    x : numpy.ndarray
        float32 ``(N, C, D1, ..., Dk)`` (k >= 0).
    scale, b, input_mean, input_var : numpy.ndarray
        ``(C,)``; with ``spatial=0`` (opset < 9) they may instead have
        shape ``x.shape[1:]`` (one value per feature).
    epsilon : float
    momentum : float
        Training only; ignored.
    spatial : int
        Legacy attribute (opset < 9); see ``scale``.
    training_mode : int
        Must be 0: batch statistics are not supported.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``x``.
    """
    if training_mode:
        raise ValueError("BatchNormalization: training_mode=1 is not supported (inference only)")
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"BatchNormalization: expected float32 input, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"BatchNormalization: expected (N, C, ...) input, got shape {x.shape}")
    params = [np.asarray(p, dtype=np.float64).reshape(-1) for p in (scale, b, input_mean, input_var)]
    channels = x.shape[1]
    per_feature = int(np.prod(x.shape[1:]))
    m = params[0].size
    if m not in (channels, per_feature) or any(p.size != m for p in params) or (m != channels and spatial):
        shapes = [np.shape(p) for p in (scale, b, input_mean, input_var)]
        raise ValueError(f"BatchNormalization: scale, B, mean, var must each have {channels} values "
                         f"for input shape {x.shape}, got shapes {shapes}")
    g, bias, mean, var = params
    a = g / np.sqrt(var + float(epsilon))
    c = bias - mean * a
    xs = np.ascontiguousarray(x).reshape(x.shape[0], m, -1)
    out = np.empty(xs.shape, dtype=np.float32)
    _affine_kernel(xs, out, a, c)
    return out.reshape(x.shape)


@jit(multithread=True)
def _lrn_kernel(x, out, before, after, alpha_over_size, beta, bias):
    # x, out: (N, C, inner)
    n, c, inner = x.shape
    for plane in prange(n * c):
        i, j = plane // c, plane % c
        square_sum = np.zeros(inner)
        for jj in range(max(0, j - before), min(c, j + after + 1)):
            for k in range(inner):
                v = np.float64(x[i, jj, k])
                square_sum[k] += v * v
        for k in range(inner):
            out[i, j, k] = x[i, j, k] / (bias + alpha_over_size * square_sum[k]) ** beta


def lrn(x, *, size=None, alpha=1e-4, beta=0.75, bias=1.0):
    """ONNX ``LRN`` (local response normalization across channels).

    ``square_sum[n, c] = sum of x[n, c', ...]**2`` over
    ``c' in [c - floor((size-1)/2), c + ceil((size-1)/2)]`` (clipped to the
    channels that exist), and
    ``y = x / (bias + alpha / size * square_sum) ** beta``.  Computed in
    float64.

    Parameters
    ----------
    x : numpy.ndarray
        float32 ``(N, C, D1, ..., Dk)``.
    size : int
        Number of channels summed (required).
    alpha, beta, bias : float

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``x``.
    """
    if size is None or int(size) < 1:
        raise ValueError(f"LRN: attribute 'size' must be a positive int, got {size!r}")
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"LRN: expected float32 input, got {x.dtype}")
    if x.ndim < 3:
        raise ValueError(f"LRN: expected (N, C, D1, ...) input, got shape {x.shape}")
    size = int(size)
    before, after = (size - 1) // 2, size // 2   # floor((size-1)/2), ceil((size-1)/2)
    xs = np.ascontiguousarray(x).reshape(x.shape[0], x.shape[1], -1)
    out = np.empty(xs.shape, dtype=np.float32)
    _lrn_kernel(xs, out, before, after, float(alpha) / size, float(beta), float(bias))
    return out.reshape(x.shape)
