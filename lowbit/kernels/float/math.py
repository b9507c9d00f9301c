"""fp32 elementwise math: Pow, Sqrt, Exp, Log, Erf, Reciprocal, Neg, Abs, Floor, Ceil, Round, Sign.

numpy's float32 ufuncs are SIMD code (measured on 1x64x160x160: ``np.exp``
0.8 ms against 18 ms for a Numba loop calling libm), so every op numpy
has runs as a ufunc writing into a fresh array.  Erf, which numpy lacks,
is a Numba loop over a float64 polynomial (no libm call, so it vectorises).
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

def _erf_taylor_coefficients(terms=18):
    # erf x = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)); on |x| < 1 the 18th term is < 1e-17.
    return np.array([2.0 / math.sqrt(math.pi) * (-1) ** n / (math.factorial(n) * (2 * n + 1))
                     for n in range(terms)])


def _erf_chebyshev_coefficients(lo=1.0, hi=6.0, nodes=32):
    # Chebyshev interpolation of erf on [lo, hi] at the Chebyshev nodes (max error 1.2e-14 with 32
    # nodes, checked in tests/test_kernels_math.py against math.erf).
    theta = np.pi * (np.arange(nodes) + 0.5) / nodes
    values = np.array([math.erf((lo + hi) / 2 + (hi - lo) / 2 * t) for t in np.cos(theta)])
    c = np.array([2.0 / nodes * np.sum(values * np.cos(k * theta)) for k in range(nodes)])
    c[0] /= 2
    return c


_ERF_TAYLOR = _erf_taylor_coefficients()
_ERF_CHEBYSHEV = _erf_chebyshev_coefficients()


@jit(multithread=True)
def _erf_kernel(x, out, taylor, cheb):
    n_taylor = taylor.size
    n_cheb = cheb.size
    for i in prange(x.size):
        v = np.float64(x[i])
        a = abs(v)
        if a >= 6.0:
            r = 1.0  # 1 - erf 6 = 2e-17: 1 in float64
        elif a >= 1.0:
            # Clenshaw on t in [-1, 1] for a in [1, 6].
            t = (2.0 * a - 7.0) / 5.0
            b1 = 0.0
            b2 = 0.0
            for k in range(n_cheb - 1, 0, -1):
                b0 = cheb[k] + 2.0 * t * b1 - b2
                b2 = b1
                b1 = b0
            r = cheb[0] + t * b1 - b2
        else:
            # NaN lands here and propagates.
            s = a * a
            p = taylor[n_taylor - 1]
            for k in range(n_taylor - 2, -1, -1):
                p = p * s + taylor[k]
            r = a * p
        out[i] = r if v >= 0 else -r


def erf(x):
    """ONNX ``Erf``: ``y = 2/sqrt(pi) * integral_0^x exp(-t^2) dt``.

    Evaluated in float64: the Taylor series on ``|x| < 1``, a Chebyshev
    interpolant on ``1 <= |x| < 6`` and ``±1`` beyond (absolute error below
    1e-13 everywhere), then rounded to the input dtype.  Integer tensors
    (allowed by the spec) get the float64 value truncated toward zero.

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
    _erf_kernel(flat, out, _ERF_TAYLOR, _ERF_CHEBYSHEV)
    return out.reshape(x.shape).astype(x.dtype, copy=False)
