"""Rounding fp32 values to narrower float formats, and their storage encodings.

``round_to_format`` is the one rounding rule for fp16, bf16 and fp8: round to
nearest with ties to even on the format's grid, with subnormals.  For a
value ``x`` with ``2^e <= |x| < 2^(e+1)`` the grid step is
``q = 2^(max(e, e_min) - m)`` (``m`` mantissa bits), and
``y = rint(x / q) · q`` — exact in fp32 because ``q`` is a power of two.
A result above the largest finite value overflows: to ``±inf`` (fp16, bf16,
fp8-e5m2) or to ``±max_finite`` (fp8-e4m3, which has no inf).  NaN stays NaN.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..config import jit
from ..precision import Precision


@jit(parallel=True)
def _round_kernel(x, out, mantissa_bits, min_exp, max_finite, saturate, inv_scale, scale):
    flat_in = x.reshape(-1)
    flat_out = out.reshape(-1)
    overflow = 0
    for i in numba.prange(flat_in.size):
        v = np.float64(flat_in[i]) * inv_scale
        a = abs(v)
        if a == 0.0 or a != a or a == math.inf:
            flat_out[i] = flat_in[i]
            continue
        _, e2 = math.frexp(a)  # a = f * 2**e2 with f in [0.5, 1): exponent e = e2 - 1
        e = max(e2 - 1, min_exp)
        step = math.ldexp(1.0, e - mantissa_bits)
        r = np.rint(v / step) * step
        if abs(r) > max_finite:
            overflow += 1
            if saturate:
                r = max_finite if r > 0 else -max_finite
            else:
                r = math.inf if r > 0 else -math.inf
        flat_out[i] = np.float32(r * scale)
    return overflow


def round_to_format(x, precision: Precision, scale: float = 1.0):
    """Round ``x`` to the float format ``precision``; return ``(y, n_overflow)``.

    Parameters
    ----------
    x : ndarray of float32
    precision : Precision
        A float precision (fp32 returns ``x`` unchanged).
    scale : float
        Per-tensor scale ``s``: ``y = s · round(x / s)`` (fp8).

    Returns
    -------
    y : ndarray of float32
        Same shape; every value representable as ``s`` times a format value.
    n_overflow : int
        How many finite inputs rounded past the largest finite value.
    """
    if precision.name == "fp32":
        return x, 0
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    count = _round_kernel(x, out, precision.mantissa_bits, precision.min_normal_exponent,
                          precision.max_finite, precision.saturates, 1.0 / scale, float(scale))
    return out, int(count)


def _fp8_code(value: float, precision: Precision) -> int:
    """Bit pattern of one fp8 value already on the grid."""
    m, bias = precision.mantissa_bits, (1 << (precision.exponent_bits - 1)) - 1
    sign = 0x80 if math.copysign(1.0, value) < 0 else 0
    a = abs(value)
    if a != a:
        return 0x7F
    if a == math.inf:
        return sign | (((1 << precision.exponent_bits) - 1) << m)
    if a == 0:
        return sign
    _, e2 = math.frexp(a)
    e = e2 - 1
    if e < precision.min_normal_exponent:
        return sign | int(round(a / 2.0 ** (precision.min_normal_exponent - m)))
    return sign | ((e + bias) << m) | int(round((a / 2.0 ** e - 1.0) * (1 << m)))


def fp8_table(precision: Precision) -> np.ndarray:
    """The 256 fp32 values of an fp8 format, indexed by code."""
    m, e_bits = precision.mantissa_bits, precision.exponent_bits
    bias = (1 << (e_bits - 1)) - 1
    table = np.empty(256, dtype=np.float32)
    for code in range(256):
        sign = -1.0 if code & 0x80 else 1.0
        exp_field, mant = (code >> m) & ((1 << e_bits) - 1), code & ((1 << m) - 1)
        if precision.saturates and exp_field == (1 << e_bits) - 1 and mant == (1 << m) - 1:
            table[code] = np.nan  # E4M3FN: S.1111.111 is NaN, there is no inf
        elif not precision.saturates and exp_field == (1 << e_bits) - 1:
            table[code] = sign * np.inf if mant == 0 else np.nan
        elif exp_field == 0:
            table[code] = sign * mant * 2.0 ** (1 - bias - m)
        else:
            table[code] = sign * (1 + mant / (1 << m)) * 2.0 ** (exp_field - bias)
    return table


def encode(x, precision: Precision, scale: float = 1.0) -> np.ndarray:
    """Storage form of ``x`` in ``precision``: float16, bf16 bits (uint16) or fp8 codes (uint8)."""
    y, _ = round_to_format(x, precision, scale)
    if precision.name == "fp16":
        return y.astype(np.float16)
    if precision.name == "bf16":
        return (y.view(np.uint32) >> 16).astype(np.uint16)
    if precision.bits == 8:
        unscaled = (y.astype(np.float64) / scale).reshape(-1)
        table = fp8_table(precision)
        lookup = {float(v): c for c, v in enumerate(table) if np.isfinite(v)}
        codes = np.array([lookup[float(v)] if np.isfinite(v) and float(v) in lookup else _fp8_code(float(v), precision)
                          for v in unscaled], dtype=np.uint8)
        return codes.reshape(y.shape)
    raise ValueError(f"{precision.name} has no float storage encoding")


def decode(stored: np.ndarray, precision: Precision, scale: float = 1.0) -> np.ndarray:
    """fp32 values of a stored array (inverse of :func:`encode`)."""
    if precision.name == "fp16":
        return stored.astype(np.float32)
    if precision.name == "bf16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if precision.bits == 8:
        return (fp8_table(precision)[stored] * np.float32(scale)).astype(np.float32)
    raise ValueError(f"{precision.name} has no float storage encoding")
