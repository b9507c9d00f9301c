"""fp32 elementwise math: Pow, Sqrt, Exp, Log, Erf, Reciprocal, Neg, Abs, Floor, Ceil, Round, Sign.

numpy's float32 ufuncs are SIMD code (measured on 1x64x160x160: ``np.exp``
0.8 ms against 18 ms for a Numba loop calling libm), so every op numpy
has runs as a ufunc writing into a fresh array.  Erf, which numpy lacks,
is a Numba loop over a float64 Chebyshev series, evaluated a block of
elements per coefficient so that the loop vectorises (no libm call).
IEEE results (``sqrt(-1)`` = NaN, ``log(0)`` = -inf, ``1/0`` = inf) come
back without warnings.  Float-only ops refuse integer tensors; bfloat16 and
float8 (ml_dtypes) are computed in float32 and rounded back.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit

from .broadcast import broadcast_shape, is_float_dtype, require_float


def _float_ufunc(op, ufunc, x):
    x = np.asarray(x)
    require_float(op, x)
    with np.errstate(all="ignore"):
        if x.dtype.kind == "f":
            return ufunc(x, out=np.empty_like(x))
        return ufunc(x.astype(np.float32)).astype(x.dtype)


def _numeric_ufunc(op, ufunc, x):
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" and not is_float_dtype(x.dtype):
        raise ValueError(f"{op}: input has dtype {x.dtype}; expected a numeric tensor")
    if x.dtype.kind in "iuf":
        return ufunc(x, out=np.empty_like(x))
    return ufunc(x.astype(np.float32)).astype(x.dtype)


def sqrt(x):
    """ONNX ``Sqrt``: ``y = sqrt(x)`` (NaN for ``x < 0``).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Sqrt", np.sqrt, x)


def exp(x):
    """ONNX ``Exp``: ``y = e ** x``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Exp", np.exp, x)


def log(x):
    """ONNX ``Log``: ``y = ln(x)`` (-inf at 0, NaN below).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Log", np.log, x)


def reciprocal(x):
    """ONNX ``Reciprocal``: ``y = 1 / x`` (±inf at ±0).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Reciprocal", np.reciprocal, x)


def floor(x):
    """ONNX ``Floor``: ``y`` = the largest integer ``<= x``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Floor", np.floor, x)


def ceil(x):
    """ONNX ``Ceil``: ``y`` = the smallest integer ``>= x``.

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Ceil", np.ceil, x)


def round_(x):
    """ONNX ``Round``: nearest integer, halves to even (``round(2.5) = 2``, ``round(-1.5) = -2``).

    Parameters
    ----------
    x : numpy.ndarray
        Float tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _float_ufunc("Round", np.rint, x)


def neg(x):
    """ONNX ``Neg``: ``y = -x`` (integers wrap: ``-(-128)`` is -128 in int8).

    Parameters
    ----------
    x : numpy.ndarray
        Numeric tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _numeric_ufunc("Neg", np.negative, x)


def abs_(x):
    """ONNX ``Abs``: ``y = |x|``.

    Parameters
    ----------
    x : numpy.ndarray
        Numeric tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _numeric_ufunc("Abs", np.absolute, x)


def sign(x):
    """ONNX ``Sign``: ``y = 1`` for ``x > 0``, ``-1`` for ``x < 0``, ``0`` for zero; NaN stays NaN.

    Parameters
    ----------
    x : numpy.ndarray
        Numeric tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    return _numeric_ufunc("Sign", np.sign, x)


# --- Pow --------------------------------------------------------------------------------------

def _integer_pow(x, y):
    wide = np.uint64 if x.dtype.kind == "u" else np.int64
    e = y.astype(np.int64) if y.dtype != np.uint64 else y
    negative = e < 0
    result = np.power(x.astype(wide), np.where(negative, 0, e).astype(wide))
    if np.any(negative):
        # |x| >= 2 to a negative power truncates to 0 (C's cast of pow's double); +-1 stay +-1.
        odd = (np.abs(e) % 2).astype(bool)
        small = np.where(x == 1, 1, np.where((x == -1) & odd, -1, np.where(x == -1, 1, 0)))
        result = np.where(negative, small, result)
    return np.asarray(result).astype(x.dtype)


def pow_(x, y):
    """ONNX ``Pow``: ``z = x ** y`` with numpy broadcasting; ``z`` has the dtype of ``x``.

    float32 ``x`` and ``y`` run in float32 (``y = 2`` as ``x * x``, which is
    the correctly rounded power); any other float base is computed in
    float64 and rounded to its dtype.  An integer base with an integer
    exponent is exact (wrapping on overflow, a negative exponent truncating
    to 0 unless ``x = ±1``); with a float exponent the float64 power is
    truncated toward zero, as onnxruntime's cast does.

    Parameters
    ----------
    x : numpy.ndarray
        Base, any numeric dtype.
    y : numpy.ndarray
        Exponent, any numeric dtype.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape and ``x``'s dtype.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    shape = broadcast_shape("Pow", x, y)
    for name, a in (("base", x), ("exponent", y)):
        if a.dtype.kind not in "iuf" and not is_float_dtype(a.dtype):
            raise ValueError(f"Pow: {name} has dtype {a.dtype}; expected a numeric tensor")
    with np.errstate(all="ignore"):
        if x.dtype == np.float32 and y.dtype == np.float32:
            if y.size == 1 and shape == x.shape and y.reshape(-1)[0] == 2:
                return np.multiply(x, x)
            return np.power(x, y)
        if is_float_dtype(x.dtype) or is_float_dtype(y.dtype):
            return np.asarray(np.power(x.astype(np.float64), y.astype(np.float64))).astype(x.dtype)
        return _integer_pow(x, y)


# --- Erf --------------------------------------------------------------------------------------
# erf x = x g(x^2) with g(s) = erf(sqrt s) / sqrt s, smooth and even; g is interpolated on s in [0, 36]
# (|x| <= 6; 1 - erf 6 = 2e-17, so |x| is clamped there) at Chebyshev nodes: 40 nodes give a relative
# error below 3e-14 (float64 inputs), 26 nodes below 1.2e-9, far under float32's rounding (checked in
# tests/test_kernels_math.py against math.erf).

_ERF_CLAMP = 6.0


def _erf_chebyshev_coefficients(nodes=40):
    hi = _ERF_CLAMP * _ERF_CLAMP
    theta = np.pi * (np.arange(nodes) + 0.5) / nodes
    values = []
    for t in np.cos(theta):
        x = math.sqrt(hi / 2 * (1.0 + t))
        values.append(math.erf(x) / x)
    values = np.array(values)
    c = np.array([2.0 / nodes * np.sum(values * np.cos(k * theta)) for k in range(nodes)])
    c[0] /= 2
    return c


_ERF_CHEBYSHEV = _erf_chebyshev_coefficients(40)
_ERF_CHEBYSHEV_F32 = _erf_chebyshev_coefficients(26)
_ERF_BLOCK = 1024


@jit(multithread=True)
def _erf_kernel(x, out, cheb, block):
    n = x.size
    m = cheb.size
    clamp = 6.0
    scale = 2.0 / (clamp * clamp)
    for b in prange((n + block - 1) // block):
        start = b * block
        width = min(block, n - start)
        a = np.empty(width)
        t = np.empty(width)
        b1 = np.zeros(width)
        b2 = np.zeros(width)
        for j in range(width):
            v = abs(np.float64(x[start + j]))
            if v > clamp:      # inf too; NaN stays NaN
                v = clamp
            a[j] = v
            t[j] = scale * v * v - 1.0
        # Clenshaw's recurrence, one coefficient at a time over the whole block (independent lanes).
        for k in range(m - 1, 0, -1):
            ck = cheb[k]
            for j in range(width):
                b0 = ck + 2.0 * t[j] * b1[j] - b2[j]
                b2[j] = b1[j]
                b1[j] = b0
        c0 = cheb[0]
        for j in range(width):
            r = a[j] * (c0 + t[j] * b1[j] - b2[j])
            if a[j] == clamp:
                r = 1.0    # the series gives 1 - 1e-16 there; erf is 1 in float64 from 5.93 on
            out[start + j] = r if x[start + j] >= 0 else -r


def erf(x):
    """ONNX ``Erf``: ``y = 2/sqrt(pi) * integral_0^x exp(-t^2) dt``.

    Evaluated in float64 as ``x * g(x^2)``, ``g`` a Chebyshev series on
    ``|x| <= 6`` (``|x|`` clamped there; relative error below 1.2e-9 with the
    26 terms used for float32, 3e-14 with the 40 used otherwise), then
    rounded to the input dtype.  Integer tensors (allowed by the spec) get
    the float64 value truncated toward zero.

    Parameters
    ----------
    x : numpy.ndarray
        Numeric tensor.

    Returns
    -------
    numpy.ndarray
        New array, same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf" and not is_float_dtype(x.dtype):
        raise ValueError(f"Erf: input has dtype {x.dtype}; expected a numeric tensor")
    work = np.float32 if x.dtype == np.float32 else np.float64
    flat = np.ascontiguousarray(x, dtype=work).reshape(-1)
    out = np.empty_like(flat)
    _erf_kernel(flat, out, _ERF_CHEBYSHEV_F32 if work == np.float32 else _ERF_CHEBYSHEV, _ERF_BLOCK)
    return out.reshape(x.shape).astype(x.dtype, copy=False)
