"""Ops that repeat, enumerate or rearrange elements: Expand, Tile, Range, CumSum,
DepthToSpace, SpaceToDepth.

All are numpy: ``broadcast_to``/``tile`` and reshape-transpose copies are the
fast path for these, and every dtype (int64 shape plumbing, bool) passes
through unchanged.  The importer also runs them at load time on constant
inputs, so every output size is checked against :data:`MAX_OUTPUT_ELEMENTS`
*before* anything is allocated.
"""
from __future__ import annotations

import math

import numpy as np

#: The largest output (in elements) these kernels will allocate.
MAX_OUTPUT_ELEMENTS = 2 ** 31


def check_output_size(op: str, shape) -> tuple:
    """``shape`` as a tuple of ints, refused when negative or over :data:`MAX_OUTPUT_ELEMENTS` elements."""
    shape = tuple(int(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"{op}: output shape {shape} has a negative dimension")
    count = math.prod(shape)
    if count > MAX_OUTPUT_ELEMENTS:
        raise ValueError(f"{op}: output shape {shape} has {count} elements, more than the "
                         f"{MAX_OUTPUT_ELEMENTS} lowbit allocates for one tensor")
    return shape


def int_list(op: str, name: str, value) -> list:
    """A 1-D integer tensor input (``shape``, ``repeats``) as a list of Python ints."""
    a = np.asarray(value)
    if a.ndim > 1 or a.dtype.kind not in "iu":
        raise ValueError(f"{op}: '{name}' must be a 1-D integer tensor, got dtype {a.dtype} shape {a.shape}")
    return [int(v) for v in a.reshape(-1)]


def scalar(op: str, name: str, value):
    """A scalar (or one-element) tensor input as a 0-d array."""
    a = np.asarray(value)
    if a.size != 1:
        raise ValueError(f"{op}: '{name}' must be a scalar, got shape {a.shape}")
    return a.reshape(())


def expand(input, shape):
    """Broadcast ``input`` to ``shape`` (numpy rules, in both directions).

    ``y = broadcast_to(input, broadcast_shapes(input.shape, shape))``: a 1 in
    ``shape`` keeps the input's dim, so the output may be larger than ``shape``.
    """
    target = int_list("Expand", "shape", shape)
    if any(s < 0 for s in target):
        raise ValueError(f"Expand: shape {tuple(target)} has a negative dimension")
    try:
        out_shape = np.broadcast_shapes(np.shape(input), tuple(target))
    except ValueError:
        raise ValueError(f"Expand: input shape {np.shape(input)} does not broadcast to shape {tuple(target)}"
                         " (each pair of dims, aligned from the right, must be equal or contain a 1)") from None
    out_shape = check_output_size("Expand", out_shape)
    if out_shape == np.shape(input):
        return input
    # A copy, never the read-only view broadcast_to returns (a reader may write into its input).
    return np.array(np.broadcast_to(input, out_shape), order="C")


def tile(input, repeats):
    """Repeat ``input`` ``repeats[d]`` times along each axis ``d``.

    ``y[i_0, ..., i_r] = input[i_0 mod n_0, ..., i_r mod n_r]`` with
    ``y.shape[d] = input.shape[d] * repeats[d]``.
    """
    x = np.asarray(input)
    reps = int_list("Tile", "repeats", repeats)
    if len(reps) != x.ndim:
        raise ValueError(f"Tile: 'repeats' has {len(reps)} entries for an input of rank {x.ndim} "
                         f"(shape {x.shape}); expected one per axis")
    if any(r < 0 for r in reps):
        raise ValueError(f"Tile: 'repeats' {tuple(reps)} must be non-negative")
    check_output_size("Tile", [n * r for n, r in zip(x.shape, reps)])
    return np.tile(x, reps) if x.ndim else x.copy()


def range_(start, limit, delta):
    """``y[i] = start + i * delta`` for ``i < max(ceil((limit - start) / delta), 0)``.

    Integer types are computed exactly; float types in float64, rounded once
    to the output type (the type of ``start``).
    """
    start, limit, delta = (scalar("Range", n, v) for n, v in (("start", start), ("limit", limit), ("delta", delta)))
    dtype = start.dtype
    if dtype.kind in "iu":
        s, l, d = int(start), int(limit), int(delta)
        if d == 0:
            raise ValueError("Range: 'delta' must not be 0")
        count = max(-((s - l) // d), 0)     # ceil((l - s) / d), exactly
        check_output_size("Range", (count,))
        return (s + np.arange(count, dtype=np.int64) * d).astype(dtype)
    s, l, d = float(start), float(limit), float(delta)
    if d == 0 or not all(map(math.isfinite, (s, l, d))):
        raise ValueError(f"Range: start {s}, limit {l} and delta {d} must be finite with delta != 0")
    count = max(math.ceil((l - s) / d), 0)
    check_output_size("Range", (count,))
    return (s + np.arange(count, dtype=np.float64) * d).astype(dtype)


def normalize_axis(op: str, axis, rank: int) -> int:
    """``axis`` in ``[0, rank)``; ValueError unless it is in ``[-rank, rank)``."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(f"{op}: axis {axis} is out of range for rank {rank}; expected -{rank} to {rank - 1}")
    return axis % rank


def cumsum(x, axis, *, exclusive=0, reverse=0):
    """Cumulative sum along ``axis`` (a scalar tensor input).

    ``y[..., j, ...] = sum_{k <= j} x[..., k, ...]``; ``exclusive`` makes it
    ``k < j``, ``reverse`` sums from the end (``k >= j`` / ``k > j``).  Floats
    accumulate in float64 (sequentially, so deterministic) and are rounded
    once; integers wrap in their own type.
    """
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("CumSum: input must have rank >= 1, got a scalar")
    axis = normalize_axis("CumSum", scalar("CumSum", "axis", axis), x.ndim)
    acc = np.float64 if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else x.dtype
    a = np.flip(x, axis) if reverse else x
    if exclusive:
        out = np.zeros(x.shape, dtype=acc)
        head = [slice(None)] * x.ndim
        head[axis] = slice(None, -1)
        tail = list(head)
        tail[axis] = slice(1, None)
        np.cumsum(a[tuple(head)], axis=axis, dtype=acc, out=out[tuple(tail)])
    else:
        out = np.cumsum(a, axis=axis, dtype=acc)
    if reverse:
        out = np.flip(out, axis)
    return np.ascontiguousarray(out, dtype=x.dtype)


def _mode(op: str, mode) -> str:
    mode = mode.decode() if isinstance(mode, bytes) else str(mode)
    if mode not in ("DCR", "CRD"):
        raise ValueError(f"{op}: mode {mode!r} is not supported; expected 'DCR' or 'CRD'")
    return mode


def _blocks(op: str, x, blocksize) -> int:
    if blocksize is None:
        raise ValueError(f"{op}: attribute 'blocksize' is required")
    b = int(blocksize)
    if x.ndim != 4 or b < 1:
        raise ValueError(f"{op}: needs a 4-D (N, C, H, W) input and blocksize >= 1, "
                         f"got shape {x.shape} and blocksize {b}")
    return b


def depth_to_space(input, *, blocksize=None, mode="DCR"):
    """Move ``blocksize x blocksize`` blocks of channels into space.

    With ``b = blocksize`` and ``C' = C / b^2``:
    DCR: ``y[n, c, h*b + i, w*b + j] = x[n, (i*b + j)*C' + c, h, w]``;
    CRD: ``y[n, c, h*b + i, w*b + j] = x[n, c*b^2 + i*b + j, h, w]``.
    """
    x = np.asarray(input)
    b = _blocks("DepthToSpace", x, blocksize)
    n, c, h, w = x.shape
    if c % (b * b):
        raise ValueError(f"DepthToSpace: channels {c} are not divisible by blocksize^2 = {b * b}")
    cb = c // (b * b)
    if _mode("DepthToSpace", mode) == "DCR":
        t = x.reshape(n, b, b, cb, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, cb, b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(t).reshape(n, cb, h * b, w * b)


def space_to_depth(input, *, blocksize=None, mode="DCR"):
    """Move ``blocksize x blocksize`` spatial blocks into channels (the inverse of DepthToSpace).

    With ``b = blocksize``: DCR (the only mode before opset 28):
    ``y[n, (i*b + j)*C + c, h, w] = x[n, c, h*b + i, w*b + j]``;
    CRD: ``y[n, c*b^2 + i*b + j, h, w] = x[n, c, h*b + i, w*b + j]``.
    """
    x = np.asarray(input)
    b = _blocks("SpaceToDepth", x, blocksize)
    n, c, h, w = x.shape
    if h % b or w % b:
        raise ValueError(f"SpaceToDepth: height {h} and width {w} must be divisible by blocksize {b}")
    t = x.reshape(n, c, h // b, b, w // b, b)
    if _mode("SpaceToDepth", mode) == "DCR":
        t = t.transpose(0, 3, 5, 1, 2, 4)
    else:
        t = t.transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(t).reshape(n, c * b * b, h // b, w // b)
