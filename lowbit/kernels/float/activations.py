"""fp32 activations: Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish.

Each public function takes any shape, runs a flat Numba loop for float32
and a numpy expression for other dtypes.  NaN propagates through every op.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit


@jit(multithread=True)
def _relu_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = np.float32(0.0) if v < 0 else v


@jit(multithread=True)
def _leaky_relu_kernel(x, out, alpha):
    for i in prange(x.size):
        v = x[i]
        out[i] = alpha * v if v < 0 else v


@jit(multithread=True)
def _clip_kernel(x, out, lo, hi):
    # max first, then min: when lo > hi every value becomes hi (ONNX spec).
    for i in prange(x.size):
        v = x[i]
        if v < lo:
            v = lo
        if v > hi:
            v = hi
        out[i] = v


@jit(multithread=True)
def _sigmoid_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        # exp(-|v|) never overflows; 1/(1+e) for v >= 0, e/(1+e) below.
        e = np.exp(-abs(v))
        numerator = np.float32(1.0) if v >= 0 else e
        out[i] = numerator / (np.float32(1.0) + e)


@jit(multithread=True)
def _tanh_kernel(x, out):
    # tanh|v| = (1 - e) / (1 + e) with e = exp(-2|v|), in float64 so the
    # subtraction keeps float32 accuracy; below 1e-4, tanh v = v to 3e-9.
    # Measured several times faster than math.tanh, which Numba runs in float64.
    for i in prange(x.size):
        v = np.float64(x[i])
        a = abs(v)
        e = np.exp(-2.0 * a)
        t = a if a < 1e-4 else (1.0 - e) / (1.0 + e)
        out[i] = t if v >= 0 else -t


@jit(multithread=True)
def _hard_sigmoid_kernel(x, out, alpha, beta):
    for i in prange(x.size):
        v = alpha * x[i] + beta
        if v < 0:
            v = np.float32(0.0)
        if v > 1:
            v = np.float32(1.0)
        out[i] = v


@jit(multithread=True)
def _hard_swish_kernel(x, out):
    sixth = np.float32(1.0 / 6.0)
    for i in prange(x.size):
        v = x[i]
        g = v * sixth + np.float32(0.5)
        if g < 0:
            g = np.float32(0.0)
        if g > 1:
            g = np.float32(1.0)
        out[i] = v * g


def _run_flat(kernel, x, *params):
    flat = np.ascontiguousarray(x).reshape(-1)
    out = np.empty_like(flat)
    kernel(flat, out, *params)
    return out.reshape(np.shape(x))


def _is_float32(x):
    return x.dtype == np.float32


def relu(x):
    """ONNX ``Relu``: ``y = max(0, x)``.

    Parameters
    ----------
    x : numpy.ndarray

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return np.where(x < 0, np.zeros((), x.dtype), x)
    return _run_flat(_relu_kernel, x)


def leaky_relu(x, *, alpha=0.01):
    """ONNX ``LeakyRelu``: ``y = x if x >= 0 else alpha * x``.

    Parameters
    ----------
    x : numpy.ndarray
    alpha : float
        Slope for negative inputs.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return np.where(x < 0, (alpha * x).astype(x.dtype), x)
    return _run_flat(_leaky_relu_kernel, x, np.float32(alpha))


def _clip_bound(value, name):
    if value is None:
        return None
    value = np.asarray(value)
    if value.size != 1:
        raise ValueError(f"Clip: '{name}' must be a scalar (0-d or 1-element tensor), got shape {value.shape}")
    return value.reshape(-1)[0]


def clip(x, min=None, max=None):  # noqa: A002 - ONNX input names
    """ONNX ``Clip`` (opset 11+): ``y = min(max(x, min), max)``.

    Parameters
    ----------
    x : numpy.ndarray
    min, max : numpy.ndarray or None
        Optional scalar inputs (0-d or 1-element); ``None`` means unbounded on
        that side.  When ``min > max`` every output equals ``max``.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    lo, hi = _clip_bound(min, "min"), _clip_bound(max, "max")
    if not _is_float32(x):
        y = np.array(x, copy=True)
        if lo is not None:
            y = np.where(y < lo, np.asarray(lo, x.dtype), y)
        if hi is not None:
            y = np.where(y > hi, np.asarray(hi, x.dtype), y)
        return y
    lo = np.float32(-np.inf) if lo is None else np.float32(lo)
    hi = np.float32(np.inf) if hi is None else np.float32(hi)
    return _run_flat(_clip_kernel, x, lo, hi)


def sigmoid(x):
    """ONNX ``Sigmoid``: ``y = 1 / (1 + exp(-x))``.

    Parameters
    ----------
    x : numpy.ndarray

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return (1.0 / (1.0 + np.exp(-x))).astype(x.dtype)
    return _run_flat(_sigmoid_kernel, x)


def tanh(x):
    """ONNX ``Tanh``: ``y = tanh(x)``.

    Parameters
    ----------
    x : numpy.ndarray

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return np.tanh(x)
    return _run_flat(_tanh_kernel, x)


def hard_sigmoid(x, *, alpha=0.2, beta=0.5):
    """ONNX ``HardSigmoid``: ``y = max(0, min(1, alpha * x + beta))``.

    Parameters
    ----------
    x : numpy.ndarray
    alpha, beta : float
        Slope and offset.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return np.clip(alpha * x + beta, 0, 1).astype(x.dtype)
    return _run_flat(_hard_sigmoid_kernel, x, np.float32(alpha), np.float32(beta))


def hard_swish(x):
    """ONNX ``HardSwish``: ``y = x * max(0, min(1, x / 6 + 0.5))``.

    Parameters
    ----------
    x : numpy.ndarray

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if not _is_float32(x):
        return (x * np.clip(x / 6 + 0.5, 0, 1)).astype(x.dtype)
    return _run_flat(_hard_swish_kernel, x)
