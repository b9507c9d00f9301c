"""Data-movement ops: no arithmetic, so plain numpy (views where possible).

Signatures follow the ONNX spec at the newest opset: inputs positional,
attributes as keyword arguments with the ONNX names and defaults.  The
importer rewrites older opsets into these forms.
"""
from __future__ import annotations

import numpy as np
import onnx


def identity(x):
    """``y = x``."""
    return x


def dropout(data, ratio=None, training_mode=None, *, seed=0):
    """Inference-mode Dropout: ``(y, mask) = (x, all True)`` (training mode is rejected).

    The graph passes remove Dropout nodes whose mask nobody reads.
    """
    if training_mode is not None and bool(np.asarray(training_mode)):
        raise ValueError("Dropout in training mode is not supported; lowbit runs inference")
    return data, np.ones(data.shape, dtype=bool)


def flatten(x, *, axis=1):
    """Reshape to 2-D ``(prod(shape[:axis]), prod(shape[axis:]))``."""
    axis = axis + x.ndim if axis < 0 else axis
    rows = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(rows, -1) if x.size else x.reshape(rows, int(np.prod(x.shape[axis:], dtype=np.int64)))


def reshape_target(in_shape, shape, allowzero=0):
    """ONNX Reshape target shape: 0 copies the input dim (unless allowzero), -1 is inferred."""
    target = [int(s) for s in np.asarray(shape).reshape(-1)]
    if not allowzero:
        target = [in_shape[i] if s == 0 else s for i, s in enumerate(target)]
    return tuple(target)


def reshape(data, shape, *, allowzero=0):
    """``y = data`` viewed with the target ``shape`` (0 copies, -1 infers)."""
    return data.reshape(reshape_target(data.shape, shape, allowzero))


def transpose(data, *, perm=None):
    """Permute axes; default reverses them."""
    return np.ascontiguousarray(np.transpose(data, perm))


def concat(*inputs, axis):
    """Join along ``axis``."""
    return np.concatenate(inputs, axis=axis)


def split(input, split=None, *, axis=0, num_outputs=None):
    """Split along ``axis`` into the sizes in ``split``, or ``num_outputs`` near-equal parts.

    Every opset form arrives here: ``split`` is an attribute before opset 13
    (the importer makes it an input), an input from 13, and with neither the
    importer passes the node's number of outputs as ``num_outputs``.  Parts
    are ``ceil(L / num_outputs)`` long and the last one takes the remainder,
    which may be smaller (ONNX opset 18), e.g. ``L = 7, num_outputs = 3``
    gives ``3, 3, 1``.
    """
    rank = np.ndim(input)
    if not -rank <= int(axis) < rank:
        raise ValueError(f"Split: axis {axis} is out of range for input shape {np.shape(input)}")
    axis = int(axis) % rank
    length = input.shape[axis]
    given = split is not None and np.asarray(split).size > 0
    if given and num_outputs is not None and np.asarray(split).size != int(num_outputs):
        raise ValueError(f"Split: 'split' {np.asarray(split).tolist()} and num_outputs={num_outputs} disagree;"
                         " give one of them")
    if given:
        sizes = [int(s) for s in np.asarray(split).reshape(-1)]
    else:
        if num_outputs is None or int(num_outputs) < 1:
            raise ValueError(f"Split needs a 'split' input or num_outputs >= 1, got num_outputs={num_outputs}")
        n = int(num_outputs)
        chunk = -(-length // n)
        sizes = [chunk] * (n - 1) + [length - chunk * (n - 1)]
        if sizes[-1] < 0:
            raise ValueError(f"Split: axis length {length} cannot be cut into {n} parts of {chunk} "
                             f"with a smaller last part (it would be {sizes[-1]})")
    if any(s < 0 for s in sizes) or sum(sizes) != length:
        raise ValueError(f"Split sizes {sizes} must be non-negative and add up to the axis length {length}")
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(part) for part in np.split(input, bounds, axis=axis))


def squeeze(data, axes=None):
    """Remove the listed size-1 axes (all size-1 axes when omitted)."""
    if axes is None:
        return np.squeeze(data)
    return np.squeeze(data, axis=tuple(int(a) for a in np.asarray(axes).reshape(-1)))


def unsqueeze(data, axes):
    """Insert size-1 axes at the listed output positions."""
    axes = [int(a) for a in np.asarray(axes).reshape(-1)]
    rank = data.ndim + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)
    out = data
    for a in axes:
        out = np.expand_dims(out, a)
    return out


def shape(data, *, start=0, end=None):
    """The shape as an int64 vector, sliced ``[start:end]`` (opset 15)."""
    return np.array(data.shape[start:end], dtype=np.int64)


def gather(data, indices, *, axis=0):
    """``y = take(data, indices, axis)``; negative indices count from the end."""
    indices = np.asarray(indices).astype(np.int64)
    indices = np.where(indices < 0, indices + data.shape[axis], indices)
    return np.take(data, indices, axis=axis)


def constant_of_shape(input, *, value=None):
    """A tensor of the given shape filled with ``value`` (default float32 0)."""
    fill = np.zeros(1, dtype=np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(tuple(int(s) for s in np.asarray(input).reshape(-1)), fill[0], dtype=fill.dtype)


_FLOAT8_MAX = {onnx.TensorProto.FLOAT8E4M3FN: 448.0, onnx.TensorProto.FLOAT8E4M3FNUZ: 240.0,
               onnx.TensorProto.FLOAT8E5M2: 57344.0, onnx.TensorProto.FLOAT8E5M2FNUZ: 57344.0}


def cast(input, *, to, saturate=1):
    """Convert to the ONNX element type ``to``.

    Casts to float8 with ``saturate=1`` (the default) clamp out-of-range values,
    infinities included, to ``±max_finite``; NaN stays NaN.
    """
    dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    x = np.asarray(input)
    if saturate and to in _FLOAT8_MAX and x.dtype.kind == "f":
        x = np.clip(x.astype(np.float32), -_FLOAT8_MAX[to], _FLOAT8_MAX[to])
    return x.astype(dtype)


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad(data, pads, constant_value=None, axes=None, *, mode="constant"):
    """Pad with ``pads = [x1_begin, x2_begin, ..., x1_end, x2_end, ...]``.

    Negative pads crop.  ``mode`` is constant, reflect, edge or wrap.
    """
    if mode not in _PAD_MODES:
        raise ValueError(f"Pad mode {mode!r} is not supported; expected constant, reflect, edge or wrap")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    rank = data.ndim
    if axes is None:
        axes = list(range(rank))
    else:
        axes = [int(a) + rank if int(a) < 0 else int(a) for a in np.asarray(axes).reshape(-1)]
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    crop = tuple(slice(max(0, -b), data.shape[a] - max(0, -e)) for a, (b, e) in enumerate(zip(begin, end)))
    data = data[crop]
    widths = [(max(0, b), max(0, e)) for b, e in zip(begin, end)]
    if mode == "constant":
        value = 0 if constant_value is None or np.asarray(constant_value).size == 0 else np.asarray(constant_value).reshape(-1)[0]
        return np.pad(data, widths, mode="constant", constant_values=value)
    return np.pad(data, widths, mode=_PAD_MODES[mode])


def slice_(data, starts, ends, axes=None, steps=None):
    """ONNX Slice: ``data[starts:ends:steps]`` on ``axes``, with ends clamped to the dims."""
    starts = np.asarray(starts).reshape(-1)
    ends = np.asarray(ends).reshape(-1)
    axes = range(len(starts)) if axes is None else np.asarray(axes).reshape(-1)
    steps = np.ones(len(starts), dtype=np.int64) if steps is None else np.asarray(steps).reshape(-1)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis = int(axis) + data.ndim if int(axis) < 0 else int(axis)
        size = data.shape[axis]
        # int64 extremes ("to the end") must not overflow Python's slice arithmetic.
        start, end = int(np.clip(start, -size - 1, size + 1)), int(np.clip(end, -size - 1, size + 1))
        if step < 0 and end < -size:
            end = None
        index[axis] = slice(start, end, int(step))
    return data[tuple(index)]
