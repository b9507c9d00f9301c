"""fp32 activations: Relu, LeakyRelu, Clip, Sigmoid, Tanh, HardSigmoid, HardSwish,
Elu, Selu, Celu, Softplus, Softsign, Mish, PRelu, ThresholdedRelu.

Each public function takes any shape, runs a flat Numba loop for float32
(the exponential ones put numpy's SIMD exp/expm1/log1p in front of it) and a
numpy expression for other dtypes.  NaN propagates through every op except
ThresholdedRelu, whose spec maps anything not above alpha to 0.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit

from .elementwise import _channel_run


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


# --- Elu, Selu, Celu, Softplus, Softsign, Mish, PRelu, ThresholdedRelu ---------------------------
# The exponentials run as numpy's SIMD float32 ufuncs (np.expm1, np.exp, np.log1p: 20x a Numba
# loop calling libm) into one scratch buffer; a Numba pass then applies the rest in place.
# Other float dtypes (float16, float64, bfloat16) are computed in float64 and rounded back.

def _require_float(op, x):
    kind = x.dtype.kind
    if kind != "f" and not (kind == "V" and x.dtype.name.startswith(("bfloat", "float"))):
        raise ValueError(f"{op}: input has dtype {x.dtype}; expected a float tensor")


def _via_float64(x, fn):
    with np.errstate(all="ignore"):
        return np.asarray(fn(x.astype(np.float64))).astype(x.dtype)


def _flat_f32(x):
    return np.ascontiguousarray(x).reshape(-1)


@jit(multithread=True)
def _exp_branch_kernel(x, e, scale, alpha):
    # e holds expm1(min(x, 0)) on entry and the result on return.
    for i in prange(x.size):
        v = x[i]
        e[i] = scale * v if v > 0 else scale * alpha * e[i]


@jit(multithread=True)
def _softplus_kernel(x, t):
    # t holds log1p(exp(-|x|)) on entry and the result on return.
    for i in prange(x.size):
        v = x[i]
        t[i] = (v if v > 0 else np.float32(0.0)) + t[i]


@jit(multithread=True)
def _mish_kernel(x, e):
    # e holds exp(min(x, 20)) on entry.  tanh(log(1 + e)) = n / (n + 2) with n = e (e + 2);
    # at x = 20 that ratio is 1 in float64, so clamping the exponent changes nothing.
    for i in prange(x.size):
        ef = np.float64(e[i])
        n = ef * (ef + 2.0)
        e[i] = x[i] * (n / (n + 2.0))


@jit(multithread=True)
def _softsign_kernel(x, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = v / (np.float32(1.0) + abs(v))


@jit(multithread=True)
def _thresholded_relu_kernel(x, out, alpha):
    for i in prange(x.size):
        v = x[i]
        out[i] = v if v > alpha else np.float32(0.0)


@jit(multithread=True)
def _prelu_same_kernel(x, slope, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = slope[i] * v if v < 0 else v


@jit(multithread=True)
def _prelu_scalar_kernel(x, s, out):
    for i in prange(x.size):
        v = x[i]
        out[i] = s * v if v < 0 else v


@jit(multithread=True)
def _prelu_channel_kernel(x, slope, out):
    # x, out: (outer * mid, inner); slope: (mid,)
    rows, inner = x.shape
    mid = slope.size
    for r in prange(rows):
        s = slope[r % mid]
        for k in range(inner):
            v = x[r, k]
            out[r, k] = s * v if v < 0 else v


def _exp_branch(x, scale, alpha, divisor=1.0):
    flat = _flat_f32(x)
    e = np.minimum(flat, np.float32(0.0))
    if divisor != 1.0:
        e /= np.float32(divisor)
    np.expm1(e, out=e)
    _exp_branch_kernel(flat, e, np.float64(scale), np.float64(alpha))
    return e.reshape(x.shape)


def elu(x, *, alpha=1.0):
    """ONNX ``Elu``: ``y = x`` for ``x >= 0``, ``alpha * (exp(x) - 1)`` for ``x < 0``.

    ``exp(x) - 1`` is computed as ``expm1(x)`` (no cancellation near 0).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.
    alpha : float
        Scale of the negative branch.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("Elu", x)
    if not _is_float32(x):
        return _via_float64(x, lambda v: np.where(v < 0, alpha * np.expm1(np.minimum(v, 0)), v))
    return _exp_branch(x, 1.0, alpha)


def selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    """ONNX ``Selu``: ``y = gamma * x`` for ``x > 0``, ``gamma * alpha * (exp(x) - 1)`` for ``x <= 0``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.
    alpha, gamma : float
        ONNX defaults are the self-normalising constants (float32-rounded).

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("Selu", x)
    if not _is_float32(x):
        return _via_float64(x, lambda v: gamma * np.where(v > 0, v, alpha * np.expm1(np.minimum(v, 0))))
    return _exp_branch(x, gamma, alpha)


def celu(x, *, alpha=1.0):
    """ONNX ``Celu``: ``y = max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.
    alpha : float
        Nonzero; scale of the negative branch.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("Celu", x)
    if alpha == 0:
        raise ValueError("Celu: alpha must be nonzero, got 0")
    if not _is_float32(x) or alpha < 0:
        # (alpha < 0 flips which side of 0 the exponential branch lands on: take the formula literally.)
        return _via_float64(x, lambda v: np.maximum(0, v) + np.minimum(0, alpha * np.expm1(v / alpha)))
    return _exp_branch(x, 1.0, alpha, divisor=alpha)


def softplus(x):
    """ONNX ``Softplus``: ``y = ln(exp(x) + 1)``, computed as ``max(x, 0) + log1p(exp(-|x|))``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``; never overflows for large ``x``.
    """
    x = np.asarray(x)
    _require_float("Softplus", x)
    if not _is_float32(x):
        return _via_float64(x, lambda v: np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v))))
    flat = _flat_f32(x)
    t = np.abs(flat)
    np.negative(t, out=t)
    np.exp(t, out=t)
    np.log1p(t, out=t)
    _softplus_kernel(flat, t)
    return t.reshape(x.shape)


def softsign(x):
    """ONNX ``Softsign``: ``y = x / (1 + |x|)``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("Softsign", x)
    if not _is_float32(x):
        return _via_float64(x, lambda v: v / (1 + np.abs(v)))
    return _run_flat(_softsign_kernel, x)


def mish(x):
    """ONNX ``Mish``: ``y = x * tanh(softplus(x)) = x * tanh(ln(1 + exp(x)))``.

    Uses ``tanh(ln(1 + e)) = n / (n + 2)`` with ``e = exp(x)``, ``n = e (e + 2)``,
    the exponent clamped at 20 (where the ratio is 1 in float64).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("Mish", x)
    if not _is_float32(x):
        def formula(v):
            e = np.exp(np.minimum(v, 20.0))
            n = e * (e + 2.0)
            return v * (n / (n + 2.0))
        return _via_float64(x, formula)
    flat = _flat_f32(x)
    e = np.minimum(flat, np.float32(20.0))
    np.exp(e, out=e)
    _mish_kernel(flat, e)
    return e.reshape(x.shape)


def thresholded_relu(x, *, alpha=1.0):
    """ONNX ``ThresholdedRelu``: ``y = x`` for ``x > alpha``, else ``0``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.
    alpha : float
        Threshold.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    _require_float("ThresholdedRelu", x)
    if not _is_float32(x):
        return _via_float64(x, lambda v: np.where(v > alpha, v, 0.0))
    return _run_flat(_thresholded_relu_kernel, x, np.float32(alpha))


def prelu(x, slope):
    """ONNX ``PRelu``: ``y = x`` for ``x >= 0``, ``slope * x`` for ``x < 0``.

    ``slope`` broadcasts to ``x`` one way (ONNX "unidirectional": the output
    has ``x``'s shape); a per-channel slope ``(C, 1, 1)`` or ``(1, C, 1, 1)``
    runs without materialising it.

    Parameters
    ----------
    x : numpy.ndarray
        Input, float (or integer, computed in numpy).
    slope : numpy.ndarray
        Same dtype as ``x``; its shape must broadcast to ``x.shape``.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x, slope = np.asarray(x), np.asarray(slope)
    shape = x.shape
    try:
        fits = slope.ndim <= x.ndim and np.broadcast_shapes(shape, slope.shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"PRelu: slope shape {slope.shape} does not broadcast to input shape {shape} "
                         "(unidirectional: trailing dims of slope must equal x's or be 1)")
    if not (_is_float32(x) and slope.dtype == np.float32):
        if x.dtype.kind in "iu":
            return np.where(x < 0, x * slope, x).astype(x.dtype)
        _require_float("PRelu", x)
        return _via_float64(x, lambda v: np.where(v < 0, v * slope.astype(np.float64), v))
    flat = _flat_f32(x)
    out = np.empty_like(flat)
    if flat.size == 0:
        return out.reshape(shape)
    if slope.size == 1:
        _prelu_scalar_kernel(flat, slope.reshape(-1)[0], out)
        return out.reshape(shape)
    run = _channel_run(slope.shape, shape)
    if run is not None:
        outer, mid, inner = run
        rows = (outer * mid, inner)
        _prelu_channel_kernel(flat.reshape(rows), _flat_f32(slope), out.reshape(rows))
        return out.reshape(shape)
    _prelu_same_kernel(flat, _flat_f32(np.broadcast_to(slope, shape)), out)
    return out.reshape(shape)
