"""fp32 Gelu (ONNX opset 20), exact (erf) or with the tanh approximation."""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit

_SQRT_HALF = 1.0 / math.sqrt(2.0)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@jit(multithread=True)
def _gelu_erf_kernel(x, out):
    for i in prange(x.size):
        v = np.float64(x[i])
        out[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))


@jit(multithread=True)
def _gelu_tanh_kernel(x, out):
    for i in prange(x.size):
        v = np.float64(x[i])
        out[i] = 0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)))


def gelu(x, *, approximate="none"):
    """ONNX ``Gelu``.

    ``approximate="none"``: ``y = 0.5 * x * (1 + erf(x / sqrt(2)))``;
    ``approximate="tanh"``: ``y = 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))``.
    Evaluated in float64, rounded once to float32 (float64 input stays float64).

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
