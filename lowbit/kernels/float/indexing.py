"""Index-driven data movement: GatherElements, GatherND, ScatterElements,
ScatterND, OneHot, NonZero.

GatherElements and ScatterElements run a Numba loop over a 3-D
``(outer, axis, inner)`` view (numpy's fancy indexing with one index array
per axis, and ``ufunc.at``, measured 4-5x slower on a 1x64x160x160 tensor);
the others, indices smaller than data off the axis, and dtypes
the loop is not compiled for, use numpy fancy indexing and unbuffered
``ufunc.at``.  Duplicate indices reduce in index order, deterministically.
Every index is validated against its axis before use (negative indices count
from the end), so no kernel reads or writes outside its buffers; any dtype
(float, int64, bool) passes through unchanged.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from lowbit.config import jit

from .tiling import check_output_size, normalize_axis, scalar

_REDUCTIONS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
_REDUCTION_CODES = {"none": 0, "add": 1, "mul": 2, "max": 3, "min": 4}
#: dtypes the Numba element loops are compiled for; others (float16, bfloat16, ...) take numpy's path.
_LOOP_DTYPES = frozenset(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))


@jit(multithread=True)
def _gather_elements_kernel(data, idx, out):
    # data (outer, n, inner), idx and out (outer, m, inner); every idx already in [-n, n).
    outer, m, inner = idx.shape
    n = data.shape[1]
    for o in prange(outer):
        for j in range(m):
            for i in range(inner):
                k = idx[o, j, i]
                if k < 0:
                    k += n
                out[o, j, i] = data[o, k, i]


@jit(multithread=True)
def _scatter_elements_kernel(out, idx, updates, code):
    # out (outer, n, inner), idx and updates (outer, m, inner).  Two updates can only meet at
    # the same (o, i), so each thread owns whole rows o and applies their updates in j order.
    outer, m, inner = idx.shape
    n = out.shape[1]
    for o in prange(outer):
        for j in range(m):
            for i in range(inner):
                k = idx[o, j, i]
                if k < 0:
                    k += n
                u = updates[o, j, i]
                if code == 0:
                    out[o, k, i] = u
                elif code == 1:
                    out[o, k, i] += u
                elif code == 2:
                    out[o, k, i] *= u
                elif code == 3:
                    if u > out[o, k, i] or u != u:   # NaN propagates, as in np.maximum
                        out[o, k, i] = u
                else:
                    if u < out[o, k, i] or u != u:
                        out[o, k, i] = u


def _normalized(op: str, indices, size, what: str, wrap: bool = True):
    """Integer ``indices`` as int64, negatives wrapped when ``wrap``; ValueError if any is outside ``[-size, size)``.

    ``size`` is a scalar or broadcasts against ``indices`` (one size per index column).
    """
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"{op}: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64, copy=False)
    size = np.asarray(size, dtype=np.int64)
    if idx.size == 0:
        return idx
    if size.ndim == 0 and -size <= idx.min() and idx.max() < size:
        pass    # the common case, checked with two reductions
    else:
        bad = (idx < -size) | (idx >= size)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            limit = int(np.broadcast_to(size, idx.shape)[first])
            raise ValueError(f"{op}: index {int(idx[first])} at position {first} is out of range for {what} "
                             f"of size {limit}; expected -{limit} to {limit - 1}")
    return np.where(idx < 0, idx + size, idx) if wrap else idx


def _reduction(op: str, reduction) -> str:
    reduction = reduction.decode() if isinstance(reduction, bytes) else str(reduction)
    if reduction != "none" and reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction {reduction!r} is not supported; expected none, add, mul, max or min")
    return reduction


def _element_index(op: str, data, indices, axis):
    """Validated ``(axis, int64 indices)`` of GatherElements/ScatterElements; negatives not yet wrapped."""
    data = np.asarray(data)
    indices = np.asarray(indices)
    if data.ndim == 0 or indices.ndim != data.ndim:
        raise ValueError(f"{op}: data {data.shape} and indices {indices.shape} must have the same rank >= 1")
    axis = normalize_axis(op, axis, data.ndim)
    if any(i > d for a, (i, d) in enumerate(zip(indices.shape, data.shape)) if a != axis):
        raise ValueError(f"{op}: indices shape {indices.shape} exceeds data shape {data.shape} "
                         f"outside axis {axis}")
    return axis, _normalized(op, indices, data.shape[axis], f"axis {axis}", wrap=False)


def _fancy_index(axis, idx):
    """The numpy index tuple addressing ``data`` at ``idx`` along ``axis`` (negatives allowed)."""
    index = [np.arange(n).reshape([-1 if a == d else 1 for a in range(idx.ndim)]) for d, n in enumerate(idx.shape)]
    index[axis] = idx
    return tuple(index)


def _as_3d(shape, axis):
    """``(outer, shape[axis], inner)``: the axis in the middle of a row-major 3-D view."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _loop_path(data, idx, axis) -> bool:
    """The Numba loop applies: a compiled dtype and indices spanning data's other dims."""
    return (data.dtype in _LOOP_DTYPES and idx.size > 0
            and all(i == d for a, (i, d) in enumerate(zip(idx.shape, data.shape)) if a != axis))


def gather_elements(data, indices, *, axis=0):
    """Gather one element per index along ``axis``; the output has the shape of ``indices``.

    For rank 3 and ``axis = 1``: ``y[i, j, k] = data[i, indices[i, j, k], k]``.
    """
    data = np.asarray(data)
    axis, idx = _element_index("GatherElements", data, indices, axis)
    if not _loop_path(data, idx, axis):
        return data[_fancy_index(axis, idx)]
    out = np.empty(idx.shape, dtype=data.dtype)
    _gather_elements_kernel(np.ascontiguousarray(data).reshape(_as_3d(data.shape, axis)),
                            np.ascontiguousarray(idx).reshape(_as_3d(idx.shape, axis)),
                            out.reshape(_as_3d(idx.shape, axis)))
    return out


def scatter_elements(data, indices, updates, *, axis=0, reduction="none"):
    """A copy of ``data`` with ``updates`` written at ``indices`` along ``axis``.

    For rank 2 and ``axis = 0``: ``y[indices[i, j], j] = updates[i, j]``
    (``reduction`` none), or ``y[...] = f(y[...], updates[i, j])`` for ``f`` in
    add, mul, max, min, applied in index order.  With reduction none and
    duplicate indices the last update wins.
    """
    reduction = _reduction("ScatterElements", reduction)
    updates = np.asarray(updates)
    if updates.shape != np.shape(indices):
        raise ValueError(f"ScatterElements: updates shape {updates.shape} must equal indices shape {np.shape(indices)}")
    axis, idx = _element_index("ScatterElements", data, indices, axis)
    out = np.array(data, copy=True, order="C")
    if _loop_path(out, idx, axis):
        _scatter_elements_kernel(out.reshape(_as_3d(out.shape, axis)),
                                 np.ascontiguousarray(idx).reshape(_as_3d(idx.shape, axis)),
                                 np.ascontiguousarray(updates, dtype=out.dtype).reshape(_as_3d(idx.shape, axis)),
                                 _REDUCTION_CODES[reduction])
    elif reduction == "none":
        out[_fancy_index(axis, idx)] = updates
    else:
        _REDUCTIONS[reduction].at(out, _fancy_index(axis, idx), updates.astype(out.dtype, copy=False))
    return out


def _nd_offsets(op: str, shape, indices):
    """Row-major offsets into the leading ``indices.shape[-1]`` dims of ``shape``; ``indices`` validated."""
    k = indices.shape[-1]
    dims = np.array(shape[:k], dtype=np.int64)
    idx = _normalized(op, indices, dims, f"the leading dims {tuple(shape[:k])} of data")
    strides = np.ones(k, dtype=np.int64)
    for j in range(k - 2, -1, -1):
        strides[j] = strides[j + 1] * dims[j + 1]
    return idx @ strides if k else np.zeros(indices.shape[:-1], dtype=np.int64)


def gather_nd(data, indices, *, batch_dims=0):
    """Gather slices of ``data`` addressed by the last axis of ``indices``.

    With ``b = batch_dims`` and ``k = indices.shape[-1]``:
    ``y[B, M] = data[B, indices[B, M, 0], ..., indices[B, M, k-1], :]``, where
    ``B`` runs over the first ``b`` dims (shared by data and indices); the
    output shape is ``indices.shape[:-1] + data.shape[b + k:]``.
    """
    data, indices = np.asarray(data), np.asarray(indices)
    b = int(batch_dims)
    if indices.ndim < 1 or not 0 <= b < min(data.ndim, indices.ndim):
        raise ValueError(f"GatherND: batch_dims {b} must be below the ranks of data {data.shape} "
                         f"and indices {indices.shape}")
    k = indices.shape[-1]
    if data.shape[:b] != indices.shape[:b] or b + k > data.ndim:
        raise ValueError(f"GatherND: data {data.shape} and indices {indices.shape} with batch_dims {b}: "
                         f"the batch dims must agree and indices.shape[-1] must be at most {data.ndim - b}")
    out_shape = check_output_size("GatherND", indices.shape[:-1] + data.shape[b + k:])
    if math.prod(out_shape) == 0:
        return np.empty(out_shape, dtype=data.dtype)
    batch = math.prod(data.shape[:b])
    rest = data.shape[b + k:]
    flat = data.reshape((batch, math.prod(data.shape[b:b + k])) + rest)
    offsets = _nd_offsets("GatherND", data.shape[b:], indices).reshape(batch, -1)
    return flat[np.arange(batch)[:, None], offsets].reshape(out_shape)


def scatter_nd(data, indices, updates, *, reduction="none"):
    """A copy of ``data`` with slices replaced at the index tuples in the last axis of ``indices``.

    With ``k = indices.shape[-1]``:
    ``y[indices[M, 0], ..., indices[M, k-1], :] = updates[M, :]`` (or combined
    with add, mul, max, min, in index order); ``updates.shape`` must be
    ``indices.shape[:-1] + data.shape[k:]``.
    """
    reduction = _reduction("ScatterND", reduction)
    data, indices, updates = np.asarray(data), np.asarray(indices), np.asarray(updates)
    k = indices.shape[-1] if indices.ndim else -1
    if not 0 <= k <= data.ndim or updates.shape != indices.shape[:-1] + data.shape[k:]:
        raise ValueError(f"ScatterND: data {data.shape}, indices {indices.shape}, updates {updates.shape}: "
                         "need indices.shape[-1] <= rank(data) and updates.shape == "
                         "indices.shape[:-1] + data.shape[indices.shape[-1]:]")
    out = np.array(data, copy=True, order="C")
    rest = data.shape[k:]
    flat = out.reshape((math.prod(data.shape[:k]),) + rest)      # a view: writes land in ``out``
    offsets = _nd_offsets("ScatterND", data.shape, indices).reshape(-1)
    values = updates.reshape((-1,) + rest).astype(out.dtype, copy=False)
    if reduction == "none":
        flat[offsets] = values
    else:
        _REDUCTIONS[reduction].at(flat, offsets, values)
    return out


def one_hot(indices, depth, values, *, axis=-1):
    """One-hot encode ``indices`` along a new axis of size ``depth``.

    ``y[..., d, ...] = values[1] if indices[...] == d (mod depth) else values[0]``,
    the new axis at ``axis``; indices outside ``[-depth, depth)`` give an
    all-``values[0]`` row.  Non-integer indices and depth are truncated to
    int64 first (ONNX spec).
    """
    idx = np.asarray(indices)
    depth = scalar("OneHot", "depth", depth)
    if depth.dtype.kind == "f" and not np.isfinite(depth):
        raise ValueError(f"OneHot: depth must be finite, got {depth}")
    d = int(depth)
    values = np.asarray(values).reshape(-1)
    if values.size != 2:
        raise ValueError(f"OneHot: 'values' must hold [off_value, on_value], got {values.size} elements")
    rank = idx.ndim + 1
    if not -rank <= int(axis) < rank:
        raise ValueError(f"OneHot: axis {axis} is out of range for output rank {rank}")
    axis = int(axis) % rank
    out_shape = idx.shape[:axis] + (d,) + idx.shape[axis:]
    if d < 0:
        raise ValueError(f"OneHot: depth must be non-negative, got {d}")
    check_output_size("OneHot", out_shape)
    if idx.dtype.kind == "f":
        # NaN and inf are no class: map them outside [-depth, depth).
        idx = np.where(np.isfinite(idx), idx, -d - 1.0)
        idx = np.clip(idx, -d - 1, d).astype(np.int64)
    else:
        idx = idx.astype(np.int64)
    idx = np.where(idx < 0, idx + d, idx)   # still negative (or >= depth): no class
    classes = np.arange(d, dtype=np.int64).reshape((d,) + (1,) * (rank - 1 - axis))
    hot = np.expand_dims(idx, axis) == classes
    return np.where(hot, values[1], values[0])


def non_zero(x):
    """Indices of the non-zero elements, row-major: an int64 ``(rank, count)`` array.

    NaN counts as non-zero.  A scalar gives shape ``(0, count)`` (ONNX shape inference).
    """
    x = np.asarray(x)
    if x.ndim == 0:
        return np.zeros((0, int(x != 0)), dtype=np.int64)
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)
