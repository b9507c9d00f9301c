"""Integer Add, Concat and Relu on quantized tensors."""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.int8.common import activation, as_bytes, output_dtype, output_range, zero_point_of
from lowbit.formats.fixed_point import quantize_multiplier

#: Inputs of Add are scaled by 2^ADD_LEFT_SHIFT before their rescaling, so
#: the two rounding steps of the integer formula cost ~2^-20 LSB of precision.
ADD_LEFT_SHIFT = 20

_BOUNDS = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}


@jit
def _rshift(v, m0, n):
    """``(v * M0 + 2^(n-1)) >> n`` in int64."""
    return (v * m0 + (np.int64(1) << (n - 1))) >> n


@jit(multithread=True)
def _add_kernel(a, b, y, zp_a, m_a, n_a, zp_b, m_b, n_b, m_y, n_y, zp_y, qmin, qmax, left):
    for i in prange(y.size):
        ra = _rshift((np.int64(a[i]) - zp_a) << left, m_a, n_a)
        rb = _rshift((np.int64(b[i]) - zp_b) << left, m_b, n_b)
        v = _rshift(ra + rb, m_y, n_y) + zp_y
        y[i] = min(max(v, qmin), qmax) & 0xFF


def _positive(op, name, value):
    v = float(np.asarray(value).reshape(-1)[0])
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{op}: {name} must be positive and finite, got {value!r}")
    return v


def add_int8(a_q, b_q, *, a_scale, a_zero_point, b_scale, b_zero_point, y_scale, y_zero_point, qmin, qmax,
             y_signed=0):
    """Quantized Add in integer arithmetic (numpy broadcasting).

    With ``L = 20``, ``T = 2 max(s_a, s_b)`` and ``(M0_v, n_v)`` the
    fixed-point form (:func:`lowbit.formats.fixed_point.quantize_multiplier`)
    of ``s_a / T``, ``s_b / T`` and ``T / (2^L s_y)``, in int64:

    * ``r_a = rshift((a - zp_a) * 2^L, M0_a, n_a)``, likewise ``r_b``;
    * ``y = clamp(zp_y + rshift(r_a + r_b, M0_y, n_y), qmin, qmax)``;

    where ``rshift(v, M0, n) = (v * M0 + 2^(n-1)) >> n`` (arithmetic shift).
    The result is within 1 LSB of the float formula
    ``round((s_a (a - zp_a) + s_b (b - zp_b)) / s_y) + zp_y``.

    Parameters
    ----------
    a_q, b_q : ndarray
        uint8 or int8 inputs (each its own dtype), broadcastable shapes.
    a_scale, a_zero_point, b_scale, b_zero_point : float, int
        Input quantization.
    y_scale, y_zero_point : float, int
        Output quantization.
    qmin, qmax : int
        Output clamp (a fused ReLU raises ``qmin`` to ``y_zero_point``).
    y_signed : int
        0: uint8 output; 1: int8 output.

    Returns
    -------
    ndarray
        uint8 or int8 of the broadcast shape.
    """
    op = "add_int8"
    a = activation(op, "a_q", a_q)
    b = activation(op, "b_q", b_q)
    zp_a = zero_point_of(op, "a_zero_point", a_zero_point, a.dtype)
    zp_b = zero_point_of(op, "b_zero_point", b_zero_point, b.dtype)
    dtype = output_dtype(y_signed)
    zp_y = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    qmin, qmax = output_range(op, qmin, qmax, dtype)
    s_a, s_b, s_y = (_positive(op, n, v) for n, v in (("a_scale", a_scale), ("b_scale", b_scale),
                                                       ("y_scale", y_scale)))
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(f"{op}: input shapes {a.shape} and {b.shape} do not broadcast") from None
    a = np.ascontiguousarray(np.broadcast_to(a, shape))
    b = np.ascontiguousarray(np.broadcast_to(b, shape))
    twice = 2.0 * max(s_a, s_b)
    (m_a,), (n_a,) = quantize_multiplier(s_a / twice)
    (m_b,), (n_b,) = quantize_multiplier(s_b / twice)
    (m_y,), (n_y,) = quantize_multiplier(twice / (2.0 ** ADD_LEFT_SHIFT * s_y))
    y = np.empty(shape, dtype=dtype)
    if y.size:
        _add_kernel(a.reshape(-1), b.reshape(-1), as_bytes(y), zp_a, m_a, n_a, zp_b, m_b, n_b, m_y, n_y,
                    zp_y, qmin, qmax, ADD_LEFT_SHIFT)
    return y


@jit(multithread=True)
def _rescale_kernel(x, y, zp_x, m0, n, zp_y, lo, hi):
    for i in prange(x.size):
        v = _rshift(np.int64(x[i]) - zp_x, m0, n) + zp_y
        y[i] = min(max(v, lo), hi) & 0xFF


def concat_int8(*inputs, axis, in_scales, in_zero_points, y_scale, y_zero_point, y_signed=0):
    """Quantized Concat: each input rescaled to the output parameters, then joined along ``axis``.

    An input whose scale, zero point and dtype equal the output's is copied;
    any other becomes ``clamp(zp_y + ((q - zp_in) * M0 + 2^(n-1)) >> n)`` over
    the output type's full range, ``(M0, n)`` the fixed-point form of
    ``s_in / s_y``.

    Parameters
    ----------
    *inputs : ndarray
        uint8 or int8 arrays, equal shapes except along ``axis``.
    axis : int
        Concatenation axis (negative counts from the end).
    in_scales, in_zero_points : sequence
        Quantization of each input.
    y_scale, y_zero_point : float, int
        Output quantization.
    y_signed : int
        0: uint8 output; 1: int8 output.

    Returns
    -------
    ndarray
        uint8 or int8.
    """
    op = "concat_int8"
    if not inputs:
        raise ValueError(f"{op}: needs at least one input")
    if len(in_scales) != len(inputs) or len(in_zero_points) != len(inputs):
        raise ValueError(f"{op}: {len(inputs)} inputs but {len(in_scales)} scales and"
                         f" {len(in_zero_points)} zero points")
    dtype = output_dtype(y_signed)
    zp_y = zero_point_of(op, "y_zero_point", y_zero_point, dtype)
    s_y = _positive(op, "y_scale", y_scale)
    lo, hi = _BOUNDS[dtype]
    parts = []
    for i, (q, s, z) in enumerate(zip(inputs, in_scales, in_zero_points)):
        q = activation(op, f"input {i}", q)
        zp = zero_point_of(op, f"in_zero_points[{i}]", z, q.dtype)
        s = _positive(op, f"in_scales[{i}]", s)
        if s == s_y and zp == zp_y and q.dtype == dtype:
            parts.append(q)
            continue
        (m0,), (n,) = quantize_multiplier(s / s_y)
        out = np.empty(q.shape, dtype=dtype)
        if out.size:
            _rescale_kernel(q.reshape(-1), as_bytes(out), zp, m0, n, zp_y, lo, hi)
        parts.append(out)
    try:
        return np.concatenate(parts, axis=int(axis))
    except (ValueError, np.exceptions.AxisError) as err:
        raise ValueError(f"{op}: cannot join shapes {[p.shape for p in parts]} along axis {axis}: {err}") from None


def relu_int8(x_q, *, zero_point):
    """Quantized Relu: ``max(q, zero_point)`` (the real value 0 is ``zero_point``); same dtype.

    Parameters
    ----------
    x_q : ndarray
        uint8 or int8.
    zero_point : int
        Zero point of ``x_q`` (and of the output).

    Returns
    -------
    ndarray
        The dtype and shape of ``x_q``.
    """
    x = activation("relu_int8", "x_q", x_q)
    zp = zero_point_of("relu_int8", "zero_point", zero_point, x.dtype)
    return np.maximum(x, x.dtype.type(zp))
