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
from .precision import Precision


@jit(multithread=True)
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
        # the scale multiplies in fp32, exactly as decode() does
        flat_out[i] = np.float32(r) * np.float32(scale)
    return overflow


@jit(multithread=True)
def _round_bits_kernel(x, out, mantissa_bits, min_exp, max_finite, saturate):
    """Unscaled rounding on the fp32 bit pattern (same results as _round_kernel with s = 1).

    Branch-free so that it vectorises: both the normal-range result (nearest
    even on the kept mantissa bits; a carry may run into the exponent) and the
    subnormal-range result (``rint(x / q)·q``) are computed, then selected.
    """
    flat_in = x.reshape(-1)
    bits_in = flat_in.view(np.uint32)
    flat_out = out.reshape(-1)
    drop = np.uint32(23 - mantissa_bits)
    half = (np.uint32(1) << (drop - np.uint32(1))) - np.uint32(1)
    keep = ~((np.uint32(1) << drop) - np.uint32(1))
    # Below the format's smallest normal exponent the grid step is q = 2^(min_exp - m); when that
    # exponent is fp32's own (bf16) the bit rounding is already right for fp32 subnormals.
    sub_field = np.uint32(min_exp + 127) if min_exp > -126 else np.uint32(0)
    step = np.float32(math.ldexp(1.0, max(min_exp - mantissa_bits, -149)))
    inv_step = np.float32(1.0) / step
    top = np.float32(max_finite)
    over_value = top if saturate else np.float32(math.inf)
    overflow = 0
    for i in numba.prange(bits_in.size):
        b = bits_in[i]
        v = flat_in[i]
        field = (b >> np.uint32(23)) & np.uint32(0xFF)
        rounded = (b + half + ((b >> drop) & np.uint32(1))) & keep
        y = np.uint32(rounded).view(np.float32)
        y = np.rint(v * inv_step) * step if field < sub_field else y
        special = field == np.uint32(0xFF)
        over = (abs(y) > top) and not special
        overflow += 1 if over else 0
        y = math.copysign(over_value, y) if over else y
        flat_out[i] = v if special else y
    return overflow


def round_to_format(x, precision: Precision, scale: float = 1.0, *, unscaled: bool = False):
    """Round ``x`` to the float format ``precision``; return ``(y, n_overflow)``.

    Parameters
    ----------
    x : ndarray of float32
    precision : Precision
        A float precision (fp32 returns ``x`` unchanged).
    scale : float
        Per-tensor scale ``s`` (fp8): ``y = fp32(fmt(x / s)) · fp32(s)``, where
        ``x / s`` is computed in float64 and the product in float32.
    unscaled : bool
        Return ``fmt(x / s)`` itself (the format's values, before the scale).

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
    if scale == 1.0:
        count = _round_bits_kernel(x, out, precision.mantissa_bits, precision.min_normal_exponent,
                                   precision.max_finite, precision.saturates)
        return out, int(count)
    count = _round_kernel(x, out, precision.mantissa_bits, precision.min_normal_exponent,
                          precision.max_finite, precision.saturates, 1.0 / scale, 1.0 if unscaled else float(scale))
    return out, int(count)


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
    if precision.name == "fp16":
        return round_to_format(x, precision)[0].astype(np.float16)
    if precision.name == "bf16":
        return (round_to_format(x, precision)[0].view(np.uint32) >> 16).astype(np.uint16)
    if precision.bits != 8:
        raise ValueError(f"{precision.name} has no float storage encoding")
    values, _ = round_to_format(x, precision, scale, unscaled=True)
    flat = values.reshape(-1)
    table = fp8_table(precision)
    # Codes 0 .. n-1 are the non-negative finite values in increasing order; bit 7 is the sign.
    n_finite = int(np.searchsorted(table[:128], precision.max_finite, side="right"))
    positive = table[:n_finite]
    magnitude = np.abs(flat)
    codes = np.minimum(np.searchsorted(positive, magnitude), n_finite - 1).astype(np.uint8)
    codes |= np.signbit(flat).astype(np.uint8) << 7
    inf_code = ((1 << precision.exponent_bits) - 1) << precision.mantissa_bits
    codes[np.isinf(flat)] = (np.signbit(flat[np.isinf(flat)]).astype(np.uint8) << 7) | inf_code
    codes[np.isnan(flat)] = 0x7F
    return codes.reshape(values.shape)


def decode(stored: np.ndarray, precision: Precision, scale: float = 1.0) -> np.ndarray:
    """fp32 values of a stored array (inverse of :func:`encode`)."""
    if precision.name == "fp16":
        return stored.astype(np.float32)
    if precision.name == "bf16":
        return (stored.astype(np.uint32) << 16).view(np.float32)
    if precision.bits == 8:
        return (fp8_table(precision)[stored] * np.float32(scale)).astype(np.float32)
    raise ValueError(f"{precision.name} has no float storage encoding")
