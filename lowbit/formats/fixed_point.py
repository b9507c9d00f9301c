"""Requantization by a fixed-point multiplier and a right shift.

A real multiplier ``M > 0`` (``M = s_x · s_w / s_y``) is written as
``M ≈ M0 · 2^-n`` with ``M0`` an integer in ``[2^30, 2^31)`` and
``1 <= n <= 62``.  An int32 accumulator ``acc`` is then requantized as

``y = zp_y + ((acc · M0 + 2^(n-1)) >> n)``

in int64 arithmetic (``>>`` is an arithmetic shift, so ties round toward
+inf), and clamped to ``[qmin, qmax]``.  ``|acc| < 2^31`` and ``M0 < 2^31``
keep the product below 2^62: no overflow.
"""
from __future__ import annotations

import math

import numpy as np

MAX_SHIFT = 62


def quantize_multiplier(real) -> tuple:
    """Fixed-point form ``(M0, n)`` of each positive real multiplier.

    Parameters
    ----------
    real : float or array of float
        ``M > 0``.

    Returns
    -------
    multiplier : ndarray of int64
        ``M0`` in ``[2^30, 2^31)`` (0 where ``M`` is 0).
    shift : ndarray of int64
        ``n`` such that ``M ≈ M0 · 2^-n``.
    """
    real = np.atleast_1d(np.asarray(real, dtype=np.float64))
    multiplier = np.zeros(real.shape, dtype=np.int64)
    shift = np.ones(real.shape, dtype=np.int64)
    for i, m in enumerate(real.reshape(-1)):
        if not m > 0:
            if m < 0 or not math.isfinite(m):
                raise ValueError(f"requantization multiplier must be positive and finite, got {m}")
            continue
        fraction, exponent = math.frexp(m)  # m = fraction * 2**exponent, fraction in [0.5, 1)
        m0 = int(round(fraction * (1 << 31)))
        n = 31 - exponent
        if m0 == 1 << 31:
            m0, n = 1 << 30, n - 1
        if n > MAX_SHIFT:
            m0, n = int(round(m0 / 2.0 ** (n - MAX_SHIFT))), MAX_SHIFT
        if n < 1:
            raise ValueError(f"requantization multiplier {m} is too large (≥ 2^30)")
        multiplier.reshape(-1)[i], shift.reshape(-1)[i] = m0, n
    return multiplier, shift


def requantize_reference(acc, multiplier, shift, zero_point, qmin, qmax):
    """Plain-numpy requantization, the rule every integer kernel follows."""
    acc = np.asarray(acc, dtype=np.int64)
    y = (acc * multiplier + (np.int64(1) << (shift - 1))) >> shift
    return np.clip(y + zero_point, qmin, qmax)
