"""Checks and the requantization step shared by the int8 kernels."""
from __future__ import annotations

import numpy as np

from lowbit.config import jit

_RANGES = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


@jit
def requantize(acc, multiplier, shift, zero_point, qmin, qmax):
    """``clamp(zero_point + ((acc * M0 + 2^(n-1)) >> n), qmin, qmax)`` in int64.

    The rule of :mod:`lowbit.formats.fixed_point`; ``>>`` is an arithmetic
    shift, so ties round toward +inf.
    """
    v = ((np.int64(acc) * multiplier + (np.int64(1) << (shift - 1))) >> shift) + zero_point
    if v < qmin:
        return qmin
    if v > qmax:
        return qmax
    return v


@jit
def requantize_rows(acc, width, bias, mult, shift, m_first, rows, zero_point, qmin, qmax, out):
    """:func:`requantize` over ``rows`` rows of ``width`` accumulators, row ``r`` belonging to
    output channel ``m_first + r``: ``out[r, c] = requantize(acc[r, c] + bias[m_first + r], ...) & 0xFF``
    (``out`` is a byte view, see :func:`as_bytes`)."""
    for r in range(rows):
        b = np.int64(bias[m_first + r])
        m0 = mult[m_first + r]
        n = shift[m_first + r]
        rnd = np.int64(1) << (n - 1)
        src = acc[r * width:(r + 1) * width]
        dst = out[r * width:(r + 1) * width]
        for c in range(width):
            v = (((src[c] + b) * m0 + rnd) >> n) + zero_point
            dst[c] = min(max(v, qmin), qmax) & 0xFF


@jit
def dequantize_rows(acc, width, bias, scale, m_first, rows, lo, hi, out):
    """Float output of ``rows`` rows of ``width`` accumulators, row ``r`` belonging to output
    channel ``m = m_first + r``: ``out[r, c] = min(max(float32(acc[r, c] + bias[m]) * scale[m], lo), hi)``
    in float32 (``scale``, ``lo`` and ``hi`` float32; the int sum is exact in int64, then rounded
    once to float32, then multiplied once)."""
    for r in range(rows):
        b = np.int64(bias[m_first + r])
        s = scale[m_first + r]
        src = acc[r * width:(r + 1) * width]
        dst = out[r * width:(r + 1) * width]
        for c in range(width):
            dst[c] = min(max(np.float32(np.int64(src[c]) + b) * s, lo), hi)


def float_output(op, y_scale, m, y_min, y_max):
    """Checked float32 ``(scale per output channel, lo, hi)`` of the float-output form."""
    scale = np.asarray(y_scale)
    if scale.ndim == 0:
        scale = np.full(m, scale, dtype=scale.dtype)
    scale = scale.reshape(-1)
    if scale.shape != (m,):
        raise ValueError(f"{op}: y_scale has {scale.size} entries; expected one per output channel ({m})")
    scale = np.ascontiguousarray(scale, dtype=np.float32)
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError(f"{op}: y_scale entries must be positive and finite, got min {scale.min()}")
    lo, hi = np.float32(y_min), np.float32(y_max)
    if np.isnan(lo) or np.isnan(hi) or lo > hi:
        raise ValueError(f"{op}: float clamp [y_min, y_max] = [{y_min}, {y_max}] must be a non-empty range")
    return scale, lo, hi


def as_bytes(y):
    """Flat uint8 view of an int8 or uint8 output array.

    The kernels clamp in the output's own (signed or unsigned) domain and
    store ``v & 0xFF`` through this view: the low byte, which is the
    two's-complement int8, so one compiled kernel serves both types.
    """
    return y.reshape(-1).view(np.uint8)


def activation(op, name, x):
    """``x`` as a C-contiguous uint8 or int8 array, or a ValueError naming what is accepted."""
    x = np.asarray(x)
    if x.dtype not in _RANGES:
        raise ValueError(f"{op}: input {name!r} must be uint8 or int8, got {x.dtype}")
    return np.ascontiguousarray(x)


def zero_point_of(op, name, zero_point, dtype):
    """The zero point as an int, checked against the range of ``dtype``."""
    lo, hi = _RANGES[np.dtype(dtype)]
    zp = np.asarray(zero_point)
    if zp.size != 1:
        raise ValueError(f"{op}: {name} must be a single value (per-tensor), got shape {zp.shape}")
    zp = zp.reshape(-1)[0]
    if not float(zp).is_integer() or not lo <= int(zp) <= hi:
        raise ValueError(f"{op}: {name}={zp!r} is not an integer in [{lo}, {hi}] ({np.dtype(dtype)})")
    return int(zp)


def output_dtype(y_signed):
    """int8 when ``y_signed`` is set, else uint8."""
    return np.dtype(np.int8) if int(y_signed) else np.dtype(np.uint8)


def output_range(op, qmin, qmax, dtype):
    """``(qmin, qmax)`` as ints, checked to be a non-empty sub-range of ``dtype``."""
    lo, hi = _RANGES[np.dtype(dtype)]
    qmin, qmax = int(qmin), int(qmax)
    if not lo <= qmin <= qmax <= hi:
        raise ValueError(f"{op}: clamp [qmin, qmax] = [{qmin}, {qmax}] must be a non-empty range"
                         f" inside [{lo}, {hi}] ({np.dtype(dtype)} output)")
    return qmin, qmax


def requant_output(op, y_zero_point, qmin, qmax, dtype):
    """Checked ``(y_zero_point, qmin, qmax)`` of the requantized (integer-output) form."""
    missing = [n for n, v in (("y_zero_point", y_zero_point), ("qmin", qmin), ("qmax", qmax)) if v is None]
    if missing:
        raise ValueError(f"{op}: {', '.join(missing)} needed for an integer output (or pass y_scale for float)")
    zp = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    return (zp,) + output_range(op, qmin, qmax, dtype)


def per_channel(op, name, values, m, dtype=np.int64):
    """A per-output-channel array of length ``m`` (a 0-d scalar is broadcast)."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(m, arr, dtype=arr.dtype)
    arr = arr.reshape(-1)
    if arr.shape != (m,):
        raise ValueError(f"{op}: {name} has {arr.size} entries; expected one per output channel ({m})")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{op}: {name} must be integer, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=dtype)


def requant_params(op, multiplier, shift, m):
    """Checked int64 ``(M0, n)`` per output channel."""
    if multiplier is None or shift is None:
        raise ValueError(f"{op}: multiplier and shift needed for an integer output (or pass y_scale for float)")
    m0 = per_channel(op, "multiplier", multiplier, m)
    n = per_channel(op, "shift", shift, m)
    if np.any(m0 < 0) or np.any(m0 >= 1 << 31):
        raise ValueError(f"{op}: multiplier entries must be in [0, 2^31), got min {m0.min()}, max {m0.max()}")
    if np.any(n < 1) or np.any(n > 62):
        raise ValueError(f"{op}: shift entries must be in [1, 62], got min {n.min()}, max {n.max()}")
    return m0, n


def bias_of(op, bias_q, m):
    """int32 bias per output channel (zeros when ``bias_q`` is None)."""
    if bias_q is None:
        return np.zeros(m, dtype=np.int32)
    b = np.asarray(bias_q)
    if b.dtype != np.int32:
        raise ValueError(f"{op}: bias must be int32, got {b.dtype}")
    return per_channel(op, "bias", b, m, dtype=np.int32)
