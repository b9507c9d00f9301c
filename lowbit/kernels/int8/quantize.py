"""QuantizeLinear and DequantizeLinear (per tensor), bit-exact with onnxruntime."""
from __future__ import annotations

import numpy as np

from lowbit.kernels.int8.common import output_dtype, zero_point_of

_BOUNDS = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


def _scale_of(op, scale):
    s = np.asarray(scale)
    if s.size != 1:
        raise ValueError(f"{op}: scale must be a single value (per-tensor), got shape {s.shape}")
    s = np.float32(s.reshape(-1)[0])
    if not (np.isfinite(s) and s > 0):
        raise ValueError(f"{op}: scale must be positive and finite, got {s}")
    return s


def quantize_linear(x, *, scale, zero_point, signed=0, qmin=None, qmax=None):
    """ONNX QuantizeLinear, per tensor, to uint8 (``signed=0``) or int8.

    ``q = clamp(round_half_to_even(x / scale) + zero_point, lo, hi)`` with the
    division done in float32 (as onnxruntime does), ``[lo, hi]`` the full
    range of the output type (``[0, 255]`` or ``[-128, 127]``), narrowed to
    ``[qmin, qmax]`` when given (k-bit activations); +-inf saturate and NaN
    gives ``lo``, as in onnxruntime.

    Parameters
    ----------
    x : ndarray
        float32 input, any shape.
    scale : float
        Positive scale ``s`` (rounded to float32).
    zero_point : int
        Zero point, inside the output range.
    signed : int
        0: uint8 output; 1: int8 output.

    Returns
    -------
    ndarray
        uint8 or int8, the shape of ``x``.
    """
    op = "quantize_linear"
    x = np.asarray(x)
    if x.dtype != np.float32:
        raise ValueError(f"{op}: expected float32 input, got {x.dtype}")
    dtype = output_dtype(signed)
    lo, hi = _BOUNDS[dtype]
    lo = lo if qmin is None else max(lo, int(qmin))
    hi = hi if qmax is None else min(hi, int(qmax))
    s = _scale_of(op, scale)
    zp = zero_point_of(op, "zero_point", zero_point, dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        r = np.rint(x / s) + np.float32(zp)
    q = np.clip(r, lo, hi)
    q[np.isnan(q)] = lo
    return q.astype(dtype)


def dequantize_linear(q, *, scale, zero_point):
    """ONNX DequantizeLinear, per tensor: ``x = float32(q - zero_point) * float32(scale)``.

    Parameters
    ----------
    q : ndarray
        uint8, int8 or int32 input.
    scale : float
        Positive scale (rounded to float32).
    zero_point : int
        Zero point, inside the range of ``q``'s type.

    Returns
    -------
    ndarray
        float32, the shape of ``q``.
    """
    op = "dequantize_linear"
    q = np.asarray(q)
    if q.dtype not in (np.uint8, np.int8, np.int32):
        raise ValueError(f"{op}: input must be uint8, int8 or int32, got {q.dtype}")
    s = _scale_of(op, scale)
    if q.dtype == np.int32:
        zp = int(np.asarray(zero_point).reshape(-1)[0])
    else:
        zp = zero_point_of(op, "zero_point", zero_point, q.dtype)
    return (q.astype(np.int64) - zp).astype(np.float32) * s
