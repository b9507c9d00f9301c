"""ReduceMean (the form exporters write for global average pooling)."""
from __future__ import annotations

import numba
import numpy as np

from lowbit.config import jit


@jit(multithread=True)
def _row_mean(x2d, out):
    rows, length = x2d.shape
    for r in numba.prange(rows):
        acc = 0.0  # float64 accumulator: the mean does not depend on the summation order
        for j in range(length):
            acc += x2d[r, j]
        out[r] = acc / length


def reduce_mean(data, axes=None, *, keepdims=1, noop_with_empty_axes=0):
    """``y = mean(data, axes)`` (ONNX ReduceMean; ``axes`` as attribute before opset 18, input after).

    Sums in float64, rounds the mean to float32 once.  With no axes every axis
    is reduced, unless ``noop_with_empty_axes`` is set.
    """
    x = np.asarray(data)
    if axes is None or np.asarray(axes).size == 0:
        if noop_with_empty_axes:
            return x
        axes = tuple(range(x.ndim))
    axes = tuple(sorted({int(a) % x.ndim for a in np.asarray(axes).reshape(-1)}))
    kept = [a for a in range(x.ndim) if a not in axes]
    moved = np.ascontiguousarray(np.transpose(x, kept + list(axes)), dtype=np.float32)
    rows = int(np.prod([x.shape[a] for a in kept], dtype=np.int64))
    length = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    out = np.empty(rows, dtype=np.float32)
    if length == 0:
        out[:] = np.nan
    else:
        _row_mean(moved.reshape(rows, length), out)
    shape = [1 if a in axes else x.shape[a] for a in range(x.ndim)] if keepdims else [x.shape[a] for a in kept]
    return out.reshape(shape).astype(x.dtype if x.dtype.kind == "f" else np.float32)
