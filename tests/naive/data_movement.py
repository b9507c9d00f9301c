"""Naive oracles for the data-movement kernels (Expand, Tile, Range, CumSum,
DepthToSpace, SpaceToDepth, Split, GatherElements, GatherND, ScatterElements,
ScatterND, OneHot, NonZero).

Written from the ONNX operator spec with plain Python loops over every output
(or input) position, independently of ``lowbit``; sums in float64 / Python
ints.  Slow on purpose: use small inputs.  Each function takes the op's inputs
as numpy arrays and its attributes as keyword arguments, and returns numpy
arrays (a tuple for Split).
"""
from __future__ import annotations

import math

import numpy as np


def _positions(shape):
    """Every index tuple of ``shape``, row-major."""
    return list(np.ndindex(*shape)) if len(shape) else [()]


def _wrap(i, n):
    return i + n if i < 0 else i


def expand(x, shape):
    shape = [int(s) for s in shape]
    rank = max(x.ndim, len(shape))
    xs = [1] * (rank - x.ndim) + list(x.shape)
    ts = [1] * (rank - len(shape)) + shape
    out_shape = []
    for a, b in zip(xs, ts):
        assert a == b or a == 1 or b == 1, (x.shape, shape)
        out_shape.append(b if a == 1 else a)
    xr = x.reshape(xs)
    out = np.empty(out_shape, dtype=x.dtype)
    for pos in _positions(out_shape):
        out[pos] = xr[tuple(0 if xs[d] == 1 else pos[d] for d in range(rank))]
    return out


def tile(x, repeats):
    out_shape = [n * int(r) for n, r in zip(x.shape, repeats)]
    out = np.empty(out_shape, dtype=x.dtype)
    for pos in _positions(out_shape):
        out[pos] = x[tuple(p % n for p, n in zip(pos, x.shape))]
    return out


def range_(start, limit, delta):
    start, limit, delta = start.item(), limit.item(), delta.item()
    values = []
    i = 0
    # number_of_elements = max(ceil((limit - start) / delta), 0); element i = start + i * delta
    if isinstance(start, int):
        count = max(-((start - limit) // delta), 0)
    else:
        count = max(math.ceil((limit - start) / delta), 0)
    while i < count:
        values.append(start + i * delta)
        i += 1
    return np.array(values, dtype=np.float64 if isinstance(start, float) else np.int64)


def cumsum(x, axis, exclusive=0, reverse=0):
    axis = int(axis) % x.ndim
    n = x.shape[axis]
    floating = x.dtype.kind == "f"
    out = np.zeros(x.shape, dtype=np.float64 if floating else np.int64)
    for pos in _positions(x.shape):
        j = pos[axis]
        if reverse:
            ks = range(j + 1 if exclusive else j, n)
        else:
            ks = range(0, j if exclusive else j + 1)
        total = 0.0 if floating else 0
        for k in ks:
            src = pos[:axis] + (k,) + pos[axis + 1:]
            total += float(x[src]) if floating else int(x[src])
        out[pos] = total
    return out


def depth_to_space(x, blocksize, mode="DCR"):
    b = blocksize
    n, c, h, w = x.shape
    cb = c // (b * b)
    out = np.empty((n, cb, h * b, w * b), dtype=x.dtype)
    for (ni, ci, yi, xi) in _positions(out.shape):
        hi, i = divmod(yi, b)
        wi, j = divmod(xi, b)
        src_c = (i * b + j) * cb + ci if mode == "DCR" else ci * b * b + i * b + j
        out[ni, ci, yi, xi] = x[ni, src_c, hi, wi]
    return out


def space_to_depth(x, blocksize, mode="DCR"):
    b = blocksize
    n, c, h, w = x.shape
    out = np.empty((n, c * b * b, h // b, w // b), dtype=x.dtype)
    for (ni, ci, yi, xi) in _positions(x.shape):
        hi, i = divmod(yi, b)
        wi, j = divmod(xi, b)
        dst_c = (i * b + j) * c + ci if mode == "DCR" else ci * b * b + i * b + j
        out[ni, dst_c, hi, wi] = x[ni, ci, yi, xi]
    return out


def split(x, split=None, axis=0, num_outputs=None):
    axis %= x.ndim
    length = x.shape[axis]
    if split is None:
        chunk = -(-length // num_outputs)
        split = []
        left = length
        for _ in range(num_outputs):
            split.append(min(chunk, left))
            left -= split[-1]
    parts = []
    offset = 0
    for size in split:
        shape = list(x.shape)
        shape[axis] = size
        part = np.empty(shape, dtype=x.dtype)
        for pos in _positions(shape):
            part[pos] = x[pos[:axis] + (pos[axis] + offset,) + pos[axis + 1:]]
        parts.append(part)
        offset += size
    return tuple(parts)


def gather_elements(data, indices, axis=0):
    axis %= data.ndim
    out = np.empty(indices.shape, dtype=data.dtype)
    for pos in _positions(indices.shape):
        k = _wrap(int(indices[pos]), data.shape[axis])
        out[pos] = data[pos[:axis] + (k,) + pos[axis + 1:]]
    return out


def scatter_elements(data, indices, updates, axis=0, reduction="none"):
    axis %= data.ndim
    out = data.copy()
    for pos in _positions(indices.shape):
        k = _wrap(int(indices[pos]), data.shape[axis])
        dst = pos[:axis] + (k,) + pos[axis + 1:]
        out[dst] = _combine(out[dst], updates[pos], reduction)
    return out


def _combine(old, new, reduction):
    if reduction == "none":
        return new
    if reduction == "add":
        return old + new
    if reduction == "mul":
        return old * new
    if reduction == "max":
        return max(old, new)
    if reduction == "min":
        return min(old, new)
    raise AssertionError(reduction)


def gather_nd(data, indices, batch_dims=0):
    b = batch_dims
    k = indices.shape[-1]
    out_shape = indices.shape[:-1] + data.shape[b + k:]
    out = np.empty(out_shape, dtype=data.dtype)
    lead = indices.ndim - 1
    for pos in _positions(out_shape):
        index_row = indices[pos[:lead]]
        src = pos[:b] + tuple(_wrap(int(index_row[j]), data.shape[b + j]) for j in range(k)) + pos[lead:]
        out[pos] = data[src]
    return out


def scatter_nd(data, indices, updates, reduction="none"):
    out = data.copy()
    k = indices.shape[-1]
    lead = indices.ndim - 1
    for pos in _positions(updates.shape):
        index_row = indices[pos[:lead]]
        dst = tuple(_wrap(int(index_row[j]), data.shape[j]) for j in range(k)) + pos[lead:]
        out[dst] = _combine(out[dst], updates[pos], reduction)
    return out


def one_hot(indices, depth, values, axis=-1):
    depth = int(np.asarray(depth).reshape(-1)[0])
    off, on = np.asarray(values).reshape(-1)
    rank = indices.ndim + 1
    axis %= rank
    out_shape = indices.shape[:axis] + (depth,) + indices.shape[axis:]
    out = np.empty(out_shape, dtype=np.asarray(values).dtype)
    for pos in _positions(out_shape):
        d = pos[axis]
        src = pos[:axis] + pos[axis + 1:]
        v = indices[src]
        k = int(v) if math.isfinite(float(v)) else depth * 10   # int64 cast truncates; NaN/inf: no class
        if -depth <= k < depth and _wrap(k, depth) == d:
            out[pos] = on
        else:
            out[pos] = off
    return out


def non_zero(x):
    rows = [[] for _ in range(x.ndim)]
    count = 0
    for pos in _positions(x.shape):
        if x[pos] != 0 or x[pos] != x[pos]:  # NaN is non-zero
            count += 1
            for d, p in enumerate(pos):
                rows[d].append(p)
    return np.array(rows, dtype=np.int64).reshape(x.ndim, count)
