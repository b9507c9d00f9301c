"""Slow oracles for the elementwise math, comparison, logic and extra activation ops.

Written from the ONNX operator spec: one Python scalar computation per output
element (float64 via the ``math`` module), broadcasting by explicit index
mapping.  Nothing from lowbit is imported.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def _broadcast_shape(*shapes):
    rank = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (rank - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ValueError(f"shapes {shapes} do not broadcast")
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _element(a, index):
    """a[index] with numpy broadcasting: trailing alignment, size-1 dims read at 0."""
    offset = len(index) - a.ndim
    return a[tuple(0 if a.shape[k] == 1 else index[offset + k] for k in range(a.ndim))]


def elementwise(fn, *arrays, dtype):
    """``out[i] = fn(a[i], b[i], ...)`` over the broadcast shape, stored as ``dtype``."""
    arrays = [np.asarray(a) for a in arrays]
    shape = _broadcast_shape(*(a.shape for a in arrays))
    out = np.empty(shape, dtype=dtype)
    for index in itertools.product(*(range(d) for d in shape)):
        out[index] = fn(*(_element(a, index) for a in arrays))
    return out


def _f(v):
    return float(v)


# --- unary math (results in float64) -----------------------------------------------------------

def sqrt(v):
    v = _f(v)
    return math.nan if v < 0 or math.isnan(v) else math.sqrt(v)


def exp(v):
    v = _f(v)
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def log(v):
    v = _f(v)
    if math.isnan(v) or v < 0:
        return math.nan
    return -math.inf if v == 0 else math.log(v)


def erf(v):
    return math.erf(_f(v))


def reciprocal(v):
    v = _f(v)
    return math.copysign(math.inf, v) if v == 0 else 1.0 / v


def floor(v):
    v = _f(v)
    return v if math.isnan(v) or math.isinf(v) else float(math.floor(v))


def ceil(v):
    v = _f(v)
    return v if math.isnan(v) or math.isinf(v) else float(math.ceil(v))


def round_half_even(v):
    v = _f(v)
    if math.isnan(v) or math.isinf(v):
        return v
    low = math.floor(v)
    frac = v - low
    if frac > 0.5 or (frac == 0.5 and low % 2 == 1):
        return float(low + 1)
    return float(low)


def sign(v):
    if isinstance(v, (float, np.floating)) and math.isnan(v):
        return v
    return 1 if v > 0 else (-1 if v < 0 else 0)


def power(base, exponent):
    """Real ``base ** exponent`` in float64 (NaN where it is not real)."""
    b, e = _f(base), _f(exponent)
    if b == 0 and e < 0:
        return math.inf
    try:
        return math.pow(b, e)
    except ValueError:
        return math.nan
    except OverflowError:
        return math.inf


def integer_power(base, exponent):
    """Exact integer ``base ** exponent``; a negative exponent truncates ``1 / base**|e|`` toward 0."""
    b, e = int(base), int(exponent)
    if e >= 0:
        return b ** e
    if b == 1:
        return 1
    if b == -1:
        return -1 if e % 2 else 1
    return 0


# --- activations -------------------------------------------------------------------------------
# exp(x) - 1 is written expm1(x) and ln(1 + t) log1p(t): the same real numbers, without the float64
# cancellation that would make the oracle less accurate than the float32 kernels near 0.

def _expm1(v):
    try:
        return math.expm1(v)
    except OverflowError:
        return math.inf


def elu(v, alpha=1.0):
    v = _f(v)
    return alpha * _expm1(v) if v < 0 else v


def selu(v, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875):
    v = _f(v)
    return gamma * alpha * _expm1(v) if v <= 0 else gamma * v


def celu(v, alpha=1.0):
    v = _f(v)
    if math.isnan(v):
        return v
    return max(0.0, v) + min(0.0, alpha * _expm1(v / alpha))


def softplus(v):
    v = _f(v)
    if math.isnan(v) or v > 700:
        return v
    return math.log1p(math.exp(v))


def softsign(v):
    v = _f(v)
    return v / (1.0 + abs(v))


def mish(v):
    return _f(v) * math.tanh(softplus(v))


def thresholded_relu(v, alpha=1.0):
    v = _f(v)
    return v if v > alpha else 0.0


def prelu(x, slope):
    """PRelu with slope broadcast to x (unidirectional); float64 result."""
    x = np.asarray(x)
    slope = np.asarray(slope)
    if _broadcast_shape(x.shape, slope.shape) != x.shape:
        raise ValueError("slope does not broadcast to x")
    out = np.empty(x.shape, dtype=np.float64)
    for index in itertools.product(*(range(d) for d in x.shape)):
        v = float(x[index])
        out[index] = float(_element(slope, index)) * v if v < 0 else v
    return out


# --- variadic ----------------------------------------------------------------------------------

def _nan_aware(pick):
    def fn(*values):
        floats = [float(v) for v in values]
        if any(math.isnan(v) for v in floats):
            return math.nan
        return pick(values)
    return fn


def min_(*arrays):
    return elementwise(_nan_aware(min), *arrays, dtype=np.asarray(arrays[0]).dtype)


def max_(*arrays):
    return elementwise(_nan_aware(max), *arrays, dtype=np.asarray(arrays[0]).dtype)


def mean(*arrays):
    return elementwise(lambda *v: sum(float(t) for t in v) / len(v), *arrays, dtype=np.float64)


def where(condition, x, y):
    return elementwise(lambda c, a, b: a if bool(c) else b, condition, x, y, dtype=np.asarray(x).dtype)
