"""fp32 Gelu (ONNX opset 20), exact (erf) or with the tanh approximation."""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# erfc(a) = t * exp(P(s) - a^2) for a >= 0, with t = 1 / (1 + a/2) and s = (2t - 8/7) * 7/6 (s in [-1, 1]
# for a <= 12).  P (highest degree first, for Horner) was least-squares fitted for lowbit on Chebyshev
# polynomials to log(erfc(a) * exp(a^2) / t) over a in [0, 12] (600,001 points, libm erfc in float64):
# max error 3.5e-10, which is the relative error of erfc.  Beyond 12, exp(-a^2) < 1e-62 dominates.
_ERFC_POLY = (6.965497439965143e-06, -8.744505900812796e-06, -4.773926264988205e-05, 0.00010098804823284151,
              0.00016016708918301526, -0.0007048522796241311, -0.00020367720778926874, 0.004319955499409561,
              -0.0017650897004764915, -0.031907437725849246, 0.019323661158387743, 0.5856021053130227,
              -0.5748763018019982)


@jit(multithread=True)
def _gelu_erf_kernel(x, out):
    # gelu(v) = v * Phi(v), Phi(v) = 1 - erfc(a)/2 for v >= 0 and erfc(a)/2 below, a = |v| / sqrt(2):
    # erfc keeps Phi's relative accuracy far into the negative tail (1 + erf would cancel).
    for i in prange(x.size):
        v = np.float64(x[i])
        a = abs(v) * _SQRT_HALF
        t = 1.0 / (1.0 + 0.5 * a)
        s = (2.0 * t - 8.0 / 7.0) * (7.0 / 6.0)
        p = 0.0
        for c in _ERFC_POLY:
            p = p * s + c
        half_erfc = 0.5 * t * np.exp(p - a * a)
        out[i] = v * (1.0 - half_erfc if v >= 0 else half_erfc)


@jit(multithread=True)
def _gelu_tanh_kernel(x, out):
    # 0.5 * (1 + tanh(u)) = 1 / (1 + exp(-2u)).
    for i in prange(x.size):
        v = np.float64(x[i])
        u = _SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)
        out[i] = v / (1.0 + np.exp(-2.0 * u))


def gelu(x, *, approximate="none"):
    """ONNX ``Gelu``.

    ``approximate="none"``: ``y = 0.5 * x * (1 + erf(x / sqrt(2)))``;
    ``approximate="tanh"``: ``y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``.
    Evaluated in float64 (erf through a fitted erfc, relative error below 1e-9 of
    the result; tanh as ``1 / (1 + exp(-2u))``), rounded once to float32
    (float64 input stays float64).

    Parameters
    ----------
    x : ndarray
        Float tensor of any shape.
    approximate : str
        ``"none"`` or ``"tanh"``.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise ValueError(f"Gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise ValueError(f"Gelu: expected a float tensor, got dtype {x.dtype}")
    work = np.float64 if x.dtype == np.float64 else np.float32
    flat = np.ascontiguousarray(x, dtype=work).reshape(-1)
    out = np.empty(flat.size, dtype=work)
    (_gelu_tanh_kernel if approximate == "tanh" else _gelu_erf_kernel)(flat, out)
    return out.reshape(x.shape).astype(x.dtype, copy=False)
