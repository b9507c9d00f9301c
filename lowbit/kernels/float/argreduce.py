"""ArgMax and ArgMin: the int64 index of the extreme value along one axis."""
from __future__ import annotations

import numba
import numpy as np

from lowbit.config import jit

# Outputs along the innermost axis handled by one task.
_CHUNK = 512


@jit(multithread=True)
def arg_lines(x, out, largest, last):
    """``out[o, k] = argmax_t x[o, t, k]`` (argmin unless ``largest``; the last tie if ``last``).

    ``x``: contiguous ``(outer, length, inner)`` with ``length >= 1``;
    ``out``: ``(outer, inner)`` int64.  Like numpy, a NaN counts as the
    extreme value (the first NaN, or with ``last`` the last one, wins).
    Also used by Hardmax.
    """
    # One task owns outputs [k0, k0 + n) of one `o`.
    outer, length, inner = x.shape
    per = (inner + _CHUNK - 1) // _CHUNK
    for task in numba.prange(outer * per):
        o = task // per
        k0 = (task % per) * _CHUNK
        n = min(inner, k0 + _CHUNK) - k0
        best = np.empty(n, dtype=x.dtype)
        where = np.zeros(n, dtype=np.int64)
        best[:] = x[o, 0, k0:k0 + n]
        for t in range(1, length):
            row = x[o, t, k0:k0 + n]
            for k in range(n):
                v = row[k]
                b = best[k]
                if b != b and not (last and v != v):
                    continue
                if v != v or (v > b if largest else v < b) or (last and v == b):
                    best[k] = v
                    where[k] = t
        out[o, k0:k0 + n] = where


def _arg_reduce(op, data, axis, keepdims, select_last_index, largest):
    x = np.asarray(data)
    if x.dtype.kind not in "iufb":
        raise ValueError(f"{op}: unsupported input dtype {x.dtype}; expected a numeric tensor")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least one axis, got a scalar")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} out of range for input of rank {x.ndim}; "
                         f"expected -{x.ndim} <= axis < {x.ndim}")
    axis %= x.ndim
    shape = x.shape
    if shape[axis] == 0:
        raise ValueError(f"{op}: axis {axis} of input shape {shape} is empty; there is no index to return")
    outer, inner = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis + 1:], dtype=np.int64))
    view = np.ascontiguousarray(x.view(np.uint8) if x.dtype == np.bool_ else x).reshape(outer, shape[axis], inner)
    out = np.empty((outer, inner), dtype=np.int64)
    if out.size:
        arg_lines(view, out, bool(largest), bool(select_last_index))
    kept = shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1:]
    return out.reshape(kept)


def argmax(data, *, axis=0, keepdims=1, select_last_index=0):
    """ONNX ``ArgMax``: ``y = argmax(data, axis)`` as int64.

    Parameters
    ----------
    data : numpy.ndarray
        Any numeric (or bool) dtype, rank >= 1.
    axis : int
        Axis searched (negative counts from the end).
    keepdims : int
        Keep ``axis`` as length 1.
    select_last_index : int
        On ties, the last index instead of the first (opset 12).

    Returns
    -------
    numpy.ndarray
        int64 indices; a NaN counts as the maximum.
    """
    return _arg_reduce("ArgMax", data, axis, keepdims, select_last_index, True)


def argmin(data, *, axis=0, keepdims=1, select_last_index=0):
    """ONNX ``ArgMin``: ``y = argmin(data, axis)`` as int64.

    Parameters as :func:`argmax`; a NaN counts as the minimum.
    """
    return _arg_reduce("ArgMin", data, axis, keepdims, select_last_index, False)
