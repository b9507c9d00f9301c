"""The ONNX Reduce* ops: Sum, Mean, Max, Min, Prod, L1, L2, SumSquare, LogSum, LogSumExp.

``axes`` became an input in opset 13 (ReduceSum) and 18 (the others); every
kernel takes both forms in its signature, the input positionally and the
older attribute as the keyword ``axes`` (the executor passes attributes as
keywords), so the importer keeps each node as written.

float32 sums, products and log-sum-exp run on Numba loops over an
``(outer, length, inner)`` view of the input: when the reduced axes are
adjacent (global pooling over H, W; the channel axis of NCHW) the view
needs no copy, otherwise the reduced axes are transposed last first.  Sums and products accumulate in float64
and are rounded to float32 once; each output is computed by one thread in
a fixed order, so results do not depend on the thread count.  Other dtypes
(int64 shape arithmetic, bool, float64) take numpy's reductions in their
own dtype, and so do Max and Min for every dtype (exact, SIMD, NaN
propagating).
"""
from __future__ import annotations

import numba
import numpy as np

from lowbit.config import jit

# What a line accumulates (the final sqrt/log/mean is applied to the float64 result).
_SUM, _SUM_SQUARE, _SUM_ABS, _PROD, _LOG_SUM_EXP = range(5)
# Max and Min take numpy's reductions for every dtype (exact, SIMD, NaN-propagating).
_MAX, _MIN = -1, -2

# Outputs along the innermost axis handled by one task of the strided kernel.
_CHUNK = 512


@jit
def _line(x, kind, shift):
    # One contiguous line reduced to a float64 (for _LOG_SUM_EXP: the sum of
    # exp(x - shift)).  Sums use four accumulators (fixed order, so
    # deterministic) to break the add latency chain.  The accumulators are
    # np.float64 so that without the JIT, too, numpy does not keep float32.
    n = x.shape[0]
    if kind == _PROD:
        acc = np.float64(1.0)
        for j in range(n):
            acc *= x[j]
        return acc
    a0 = a1 = a2 = a3 = np.float64(0.0)
    m = n - n % 4
    if kind == _SUM:
        for j in range(0, m, 4):
            a0 += x[j]
            a1 += x[j + 1]
            a2 += x[j + 2]
            a3 += x[j + 3]
        for j in range(m, n):
            a0 += x[j]
    elif kind == _SUM_SQUARE:
        for j in range(0, m, 4):
            a0 += np.float64(x[j]) * x[j]
            a1 += np.float64(x[j + 1]) * x[j + 1]
            a2 += np.float64(x[j + 2]) * x[j + 2]
            a3 += np.float64(x[j + 3]) * x[j + 3]
        for j in range(m, n):
            a0 += np.float64(x[j]) * x[j]
    elif kind == _SUM_ABS:
        for j in range(0, m, 4):
            a0 += abs(x[j])
            a1 += abs(x[j + 1])
            a2 += abs(x[j + 2])
            a3 += abs(x[j + 3])
        for j in range(m, n):
            a0 += abs(x[j])
    else:  # _LOG_SUM_EXP
        for j in range(n):
            a0 += np.exp(np.float64(x[j]) - shift)
        return a0
    return (a0 + a1) + (a2 + a3)


@jit
def _line_max(x):
    # A NaN is not kept here: it reaches the log-sum-exp through exp(NaN).
    peak = -np.inf
    for j in range(x.shape[0]):
        if x[j] > peak:
            peak = x[j]
    return np.float64(peak)


@jit(multithread=True)
def _reduce_rows(x, out, shift, kind):
    # x: (rows, length) contiguous; out, shift: (rows,) float64.  For
    # _LOG_SUM_EXP, shift is the line's max (0 when not finite).
    for r in numba.prange(x.shape[0]):
        if kind == _LOG_SUM_EXP:
            peak = _line_max(x[r])
            shift[r] = peak if np.isfinite(peak) else 0.0
        out[r] = _line(x[r], kind, shift[r])


@jit(multithread=True)
def _reduce_strided(x, out, shift, kind, chunk):
    # x: (outer, length, inner); out, shift: (outer, inner) float64.  One task
    # owns outputs [k0, k1) of one `o` and walks `length` in order, in a local
    # accumulator (which the compiler vectorises; `out` itself it does not).
    outer, length, inner = x.shape
    per = (inner + chunk - 1) // chunk
    for task in numba.prange(outer * per):
        o = task // per
        k0 = (task % per) * chunk
        n = min(inner, k0 + chunk) - k0
        acc = np.empty(n)
        peak = np.zeros(n)
        if kind == _PROD:
            acc[:] = 1.0
        else:
            acc[:] = 0.0
        if kind == _LOG_SUM_EXP:
            peak[:] = -np.inf
            for t in range(length):
                row = x[o, t, k0:k0 + n]
                for k in range(n):
                    if row[k] > peak[k]:
                        peak[k] = row[k]
            for k in range(n):
                if not np.isfinite(peak[k]):
                    peak[k] = 0.0
        for t in range(length):
            row = x[o, t, k0:k0 + n]
            if kind == _SUM:
                for k in range(n):
                    acc[k] += row[k]
            elif kind == _SUM_SQUARE:
                for k in range(n):
                    acc[k] += np.float64(row[k]) * row[k]
            elif kind == _SUM_ABS:
                for k in range(n):
                    acc[k] += abs(row[k])
            elif kind == _PROD:
                for k in range(n):
                    acc[k] *= row[k]
            else:
                for k in range(n):
                    acc[k] += np.exp(np.float64(row[k]) - peak[k])
        out[o, k0:k0 + n] = acc
        shift[o, k0:k0 + n] = peak


def _reduced_axes(op, x, axes, noop_with_empty_axes):
    """Sorted tuple of reduced axes, or None for the no-op (empty axes and noop_with_empty_axes)."""
    if axes is None or np.asarray(axes).size == 0:
        return None if noop_with_empty_axes else tuple(range(x.ndim))
    values = np.asarray(axes).reshape(-1)
    if values.dtype.kind not in "iu":
        raise ValueError(f"{op}: axes must be integers, got {values.dtype}")
    for a in values:
        if not -x.ndim <= int(a) < x.ndim:
            raise ValueError(f"{op}: axis {int(a)} out of range for input of rank {x.ndim}; "
                             f"expected -{x.ndim} <= axis < {x.ndim}")
    return tuple(sorted({int(a) % x.ndim for a in values}))


def _out_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if a in axes else d for a, d in enumerate(shape))
    return tuple(d for a, d in enumerate(shape) if a not in axes)


def _float32_reduce(x, axes, kind):
    """float64 results of the line reduction ``kind`` over ``axes``, shape of the kept axes (in order)."""
    shape = x.shape
    kept = [a for a in range(x.ndim) if a not in axes]
    length = int(np.prod([shape[a] for a in axes], dtype=np.int64))
    if axes and axes[-1] - axes[0] + 1 == len(axes):   # adjacent: a free view
        outer = int(np.prod(shape[:axes[0]], dtype=np.int64))
        inner = int(np.prod(shape[axes[-1] + 1:], dtype=np.int64))
        view = np.ascontiguousarray(x).reshape(outer, length, inner)
    else:
        outer, inner = int(np.prod([shape[a] for a in kept], dtype=np.int64)), 1
        view = np.ascontiguousarray(np.transpose(x, kept + list(axes))).reshape(outer, length, 1)
    if inner == 1:
        out = np.empty(outer, dtype=np.float64)
        shift = np.zeros(outer, dtype=np.float64)
        if outer:
            _reduce_rows(view.reshape(outer, length), out, shift, kind)
    else:
        out = np.empty((outer, inner), dtype=np.float64)
        shift = np.empty((outer, inner), dtype=np.float64)
        if out.size:
            _reduce_strided(view, out, shift, kind, _CHUNK)
    if kind == _LOG_SUM_EXP:
        with np.errstate(divide="ignore"):
            out = shift + np.log(out)
    return out.reshape([shape[a] for a in kept])


def _reduce(op, data, axes, keepdims, noop_with_empty_axes, kind, finish=None, numpy_fn=None):
    x = np.asarray(data)
    reduced = _reduced_axes(op, x, axes, noop_with_empty_axes)
    if reduced is None:
        return x
    if x.dtype == np.float32 and kind >= 0:
        y = _float32_reduce(x, reduced, kind)
        if finish is not None:
            with np.errstate(divide="ignore", invalid="ignore"):
                y = finish(y, int(np.prod([x.shape[a] for a in reduced], dtype=np.int64)))
        return np.asarray(y, dtype=np.float32).reshape(_out_shape(x.shape, reduced, keepdims))
    if x.dtype.kind not in "iuf" and not (x.dtype.kind == "b" and kind in (_MAX, _MIN)):
        raise ValueError(f"{op}: unsupported input dtype {x.dtype}; expected a float or integer tensor"
                         + (" (or bool)" if kind in (_MAX, _MIN) else ""))
    with np.errstate(divide="ignore", invalid="ignore"):
        y = numpy_fn(x, reduced)
    return np.asarray(y).astype(x.dtype).reshape(_out_shape(x.shape, reduced, keepdims))


def _extreme_numpy(x, axes, largest):
    fn = np.max if largest else np.min
    if all(x.shape[a] for a in axes):
        return fn(x, axis=axes)
    # Empty set: -inf / +inf for floats, the dtype's lowest / highest value otherwise (False / True for bool).
    if x.dtype.kind == "f":
        fill = -np.inf if largest else np.inf
    elif x.dtype.kind == "b":
        fill = not largest
    else:
        info = np.iinfo(x.dtype)
        fill = info.min if largest else info.max
    kept = tuple(d for a, d in enumerate(x.shape) if a not in axes)
    return np.full(kept, fill, dtype=x.dtype)


def reduce_sum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceSum``: ``y = sum(data, axes)``.

    Parameters
    ----------
    data : numpy.ndarray
        float32 (float64 accumulation) or another numeric dtype (numpy, in that dtype).
    axes : sequence of int or numpy.ndarray, optional
        Reduced axes (negative count from the end); an input from opset 13,
        the attribute before.  Empty or omitted: every axis, unless
        ``noop_with_empty_axes`` is set, in which case ``data`` is returned.
    keepdims : int
        Keep reduced axes as length 1.
    noop_with_empty_axes : int
        See ``axes``.

    Returns
    -------
    numpy.ndarray
        Same dtype as ``data``; 0 over an empty set.
    """
    return _reduce("ReduceSum", data, axes, keepdims, noop_with_empty_axes, _SUM,
                   numpy_fn=lambda x, a: np.sum(x, axis=a, dtype=x.dtype))


def reduce_mean(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceMean``: ``y = sum(data, axes) / n`` with ``n`` the number of reduced elements.

    Parameters and axes rules as :func:`reduce_sum`.  NaN over an empty set.
    """
    return _reduce("ReduceMean", data, axes, keepdims, noop_with_empty_axes, _SUM,
                   finish=lambda s, n: s / n,  # 0 / 0: NaN over an empty set
                   numpy_fn=lambda x, a: np.mean(x, axis=a))


def reduce_max(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceMax``: ``y = max(data, axes)`` (NaN if any reduced element is NaN).

    Parameters and axes rules as :func:`reduce_sum`; also takes bool.  Over an
    empty set: -inf for floats, the dtype's lowest value for integers, False for bool.
    """
    return _reduce("ReduceMax", data, axes, keepdims, noop_with_empty_axes, _MAX,
                   numpy_fn=lambda x, a: _extreme_numpy(x, a, True))


def reduce_min(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceMin``: ``y = min(data, axes)`` (NaN if any reduced element is NaN).

    Parameters and axes rules as :func:`reduce_sum`; also takes bool.  Over an
    empty set: +inf for floats, the dtype's highest value for integers, True for bool.
    """
    return _reduce("ReduceMin", data, axes, keepdims, noop_with_empty_axes, _MIN,
                   numpy_fn=lambda x, a: _extreme_numpy(x, a, False))


def reduce_prod(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceProd``: ``y = prod(data, axes)`` (float64 product for float32; 1 over an empty set).

    Parameters and axes rules as :func:`reduce_sum`.
    """
    return _reduce("ReduceProd", data, axes, keepdims, noop_with_empty_axes, _PROD,
                   numpy_fn=lambda x, a: np.prod(x, axis=a, dtype=x.dtype))


def reduce_l1(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceL1``: ``y = sum(|data|, axes)``.

    Parameters and axes rules as :func:`reduce_sum`.
    """
    return _reduce("ReduceL1", data, axes, keepdims, noop_with_empty_axes, _SUM_ABS,
                   numpy_fn=lambda x, a: np.sum(np.abs(x), axis=a, dtype=x.dtype))


def reduce_l2(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceL2``: ``y = sqrt(sum(data ** 2, axes))``.

    Parameters and axes rules as :func:`reduce_sum` (integers: the square root truncated).
    """
    return _reduce("ReduceL2", data, axes, keepdims, noop_with_empty_axes, _SUM_SQUARE,
                   finish=lambda s, n: np.sqrt(s),
                   numpy_fn=lambda x, a: np.sqrt(np.sum(np.square(x, dtype=np.float64), axis=a)))


def reduce_sum_square(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceSumSquare``: ``y = sum(data ** 2, axes)``.

    Parameters and axes rules as :func:`reduce_sum`.
    """
    return _reduce("ReduceSumSquare", data, axes, keepdims, noop_with_empty_axes, _SUM_SQUARE,
                   numpy_fn=lambda x, a: np.sum(np.square(x), axis=a, dtype=x.dtype))


def reduce_log_sum(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceLogSum``: ``y = log(sum(data, axes))`` (-inf over an empty set).

    Parameters and axes rules as :func:`reduce_sum`.
    """
    return _reduce("ReduceLogSum", data, axes, keepdims, noop_with_empty_axes, _SUM,
                   finish=lambda s, n: np.log(s),
                   numpy_fn=lambda x, a: np.log(np.sum(x, axis=a, dtype=np.float64)))


def reduce_log_sum_exp(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``ReduceLogSumExp``: ``y = m + log(sum(exp(data - m), axes))``, ``m`` the max over the set.

    The shift by the maximum keeps large inputs finite; -inf over an empty set.
    Parameters and axes rules as :func:`reduce_sum`.
    """
    def numpy_lse(x, a):
        x = x.astype(np.float64)
        peak = np.max(x, axis=a, keepdims=True) if x.size else np.zeros([1] * x.ndim)
        peak = np.where(np.isfinite(peak), peak, 0.0)
        return np.squeeze(peak, axis=a) + np.log(np.sum(np.exp(x - peak), axis=a))

    return _reduce("ReduceLogSumExp", data, axes, keepdims, noop_with_empty_axes, _LOG_SUM_EXP,
                   numpy_fn=numpy_lse)
