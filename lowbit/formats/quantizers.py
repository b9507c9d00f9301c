"""Weight quantizers: pure functions from float weights to integers and scales.

All work per output channel (axis 0) and return ``(q, scale)`` with
``W ≈ scale[m] · q[m]``:

* :func:`symmetric` — k-bit, ``s = max|W_m| / (2^(k-1) - 1)``,
  ``q = clamp(round_half_even(W / s), -(2^(k-1) - 1), 2^(k-1) - 1)``;
* :func:`ternary` — ``q ∈ {-1, 0, +1}``: ``q = sign(W)·[|W| > Δ_m]`` with
  ``Δ_m = 0.7 · mean|W_m|`` and ``α_m = mean(|W| : |W| > Δ_m)`` (ternary weight
  networks' rule);
* :func:`binary` — ``q = sign(W)`` with ``sign(0) = +1`` and
  ``α_m = mean|W_m|`` (XNOR-Net's scale).
"""
from __future__ import annotations

import numpy as np


def _rows(w) -> np.ndarray:
    w = np.asarray(w, dtype=np.float64)
    return w.reshape(w.shape[0], -1)


def symmetric(w, bits: int = 8) -> tuple:
    """k-bit symmetric per-channel quantization; returns ``(q int8, scale float64)``."""
    qmax = (1 << (bits - 1)) - 1
    flat = _rows(w)
    amax = np.abs(flat).max(axis=1)
    scale = np.where(amax > 0, amax / qmax, 1.0)
    q = np.clip(np.rint(flat / scale[:, None]), -qmax, qmax).astype(np.int8)
    return q.reshape(np.shape(w)), scale


def ternary(w, threshold: float = 0.7) -> tuple:
    """Ternary per-channel quantization; returns ``(q ∈ {-1,0,1} int8, α float64)``."""
    flat = _rows(w)
    magnitude = np.abs(flat)
    delta = threshold * magnitude.mean(axis=1, keepdims=True)
    keep = magnitude > delta
    count = keep.sum(axis=1)
    alpha = np.where(count > 0, (magnitude * keep).sum(axis=1) / np.maximum(count, 1), 1.0)
    q = (np.where(flat < 0, -1, 1) * keep).astype(np.int8)
    return q.reshape(np.shape(w)), alpha


def binary(w) -> tuple:
    """Binary per-channel quantization; returns ``(q ∈ {-1,+1} int8, α float64)``."""
    flat = _rows(w)
    alpha = np.abs(flat).mean(axis=1)
    alpha = np.where(alpha > 0, alpha, 1.0)
    q = np.where(flat < 0, -1, 1).astype(np.int8)
    return q.reshape(np.shape(w)), alpha


def for_precision(precision):
    """The weight quantizer of an integer-kind precision: ``w -> (q, scale)``.

    Raises
    ------
    ValueError
        For a precision without an integer weight quantizer.
    """
    if precision.kind == "int":
        return lambda w: symmetric(w, precision.bits)
    if precision.kind == "ternary":
        return ternary
    if precision.kind == "binary":
        return binary
    raise ValueError(f"{precision.name} has no integer weight quantizer; expected int2..int8, ternary or binary")
