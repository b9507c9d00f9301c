"""Naive oracles for the reductions, arg-reductions, TopK and Hardmax.

Written from the ONNX spec with plain Python loops over output positions and
float64 (or Python int) arithmetic; imports nothing of lowbit.  Slow on
purpose: use small inputs.
"""
from __future__ import annotations

import math

import numpy as np


def _axes(x, axes, noop_with_empty_axes):
    """Reduced axes as a set of non-negative ints, or None for the no-op."""
    if axes is None or len(list(np.asarray(axes).reshape(-1))) == 0:
        return None if noop_with_empty_axes else set(range(x.ndim))
    return {int(a) % x.ndim for a in np.asarray(axes).reshape(-1)}


def _values_of(x, axes, out_index):
    """The elements of ``x`` that reduce into the output position ``out_index`` (a keepdims index)."""
    ranges = [range(x.shape[a]) if a in axes else [out_index[a]] for a in range(x.ndim)]
    values = []

    def walk(axis, index):
        if axis == x.ndim:
            values.append(x[tuple(index)].item())
            return
        for i in ranges[axis]:
            walk(axis + 1, index + [i])

    walk(0, [])
    return values


def _sum(values):
    total = 0
    for v in values:
        total += v
    return total


def _logsumexp(values):
    if not values:
        return -math.inf
    peak = max(values)
    if math.isinf(peak):
        peak = 0.0
    return peak + math.log(_sum([math.exp(v - peak) for v in values]))


def _extreme(values, pick, empty):
    """max/min of ``values`` with NaN propagating (as numpy and onnxruntime do); ``empty`` over no values."""
    if not values:
        return empty
    if any(v != v for v in values):
        return math.nan
    return pick(values)


def _log(v):
    return -math.inf if v == 0 else (math.log(v) if v > 0 else math.nan)


# ONNX name -> (float value of a list of numbers)
COMBINE = {
    "ReduceSum": _sum,
    "ReduceMean": lambda vs: _sum(vs) / len(vs) if vs else math.nan,
    "ReduceMax": lambda vs: _extreme(vs, max, -math.inf),
    "ReduceMin": lambda vs: _extreme(vs, min, math.inf),
    "ReduceProd": lambda vs: math.prod(vs),
    "ReduceL1": lambda vs: _sum([abs(v) for v in vs]),
    "ReduceL2": lambda vs: math.sqrt(_sum([v * v for v in vs])),
    "ReduceSumSquare": lambda vs: _sum([v * v for v in vs]),
    "ReduceLogSum": lambda vs: _log(_sum(vs)),
    "ReduceLogSumExp": _logsumexp,
}


def reduce(op, data, axes=None, keepdims=1, noop_with_empty_axes=0):
    """ONNX ``Reduce*`` (``op`` its name): float64 result for float input, Python ints kept for integers."""
    x = np.asarray(data)
    reduced = _axes(x, axes, noop_with_empty_axes)
    if reduced is None:
        return x.copy()
    kept_shape = [1 if a in reduced else d for a, d in enumerate(x.shape)]
    integer = x.dtype.kind in "iu"
    out = np.zeros(kept_shape, dtype=x.dtype if integer else np.float64)
    for index in np.ndindex(*kept_shape):
        values = _values_of(x, reduced, index)
        if not integer:
            values = [float(v) for v in values]
        out[index] = COMBINE[op](values)
    if not keepdims:
        out = out.reshape([d for a, d in enumerate(x.shape) if a not in reduced])
    return out


def arg_reduce(data, axis=0, keepdims=1, select_last_index=0, largest=True):
    """ONNX ``ArgMax`` (``largest``) / ``ArgMin``: the index of the first (or last) extreme value."""
    x = np.asarray(data)
    axis %= x.ndim
    shape = list(x.shape)
    shape[axis] = 1
    out = np.zeros(shape, dtype=np.int64)
    for index in np.ndindex(*shape):
        best, where = None, 0
        for i in range(x.shape[axis]):
            position = list(index)
            position[axis] = i
            v = x[tuple(position)].item()
            better = best is None or (v > best if largest else v < best) or (select_last_index and v == best)
            if better:
                best, where = v, i
        out[index] = where
    if not keepdims:
        out = out.reshape([d for a, d in enumerate(shape) if a != axis])
    return out


def top_k(x, k, axis=-1, largest=1):
    """ONNX ``TopK`` (sorted): the ``k`` best by repeated selection, lower index first on ties."""
    x = np.asarray(x)
    axis %= x.ndim
    shape = list(x.shape)
    shape[axis] = k
    values = np.zeros(shape, dtype=x.dtype)
    indices = np.zeros(shape, dtype=np.int64)
    line_shape = list(x.shape)
    line_shape[axis] = 1
    for index in np.ndindex(*line_shape):
        line = []
        for i in range(x.shape[axis]):
            position = list(index)
            position[axis] = i
            line.append((x[tuple(position)].item(), i))
        taken = []
        for _ in range(k):
            best = None
            for v, i in line:
                if i in taken:
                    continue
                if best is None or (v > best[0] if largest else v < best[0]):
                    best = (v, i)
            taken.append(best[1])
            position = list(index)
            position[axis] = len(taken) - 1
            values[tuple(position)] = best[0]
            indices[tuple(position)] = best[1]
    return values, indices


def hardmax(x, axis=-1, legacy_flatten=0):
    """ONNX ``Hardmax``: one-hot of the first maximum along ``axis`` (or of each row of the 2-D view)."""
    x = np.asarray(x)
    axis %= x.ndim
    if legacy_flatten:
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
        out = np.zeros(rows.shape)
        for r in range(rows.shape[0]):
            out[r, arg_reduce(rows[r], axis=0, keepdims=0)] = 1.0
        return out.reshape(x.shape)
    where = arg_reduce(x, axis=axis, keepdims=1)
    out = np.zeros(x.shape)
    for index in np.ndindex(*x.shape):
        position = list(index)
        i = position[axis]
        position[axis] = 0
        out[index] = 1.0 if where[tuple(position)] == i else 0.0
    return out
