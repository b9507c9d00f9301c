"""fp32 Softmax, LogSoftmax and Hardmax, over one axis or (legacy, opset < 13) a flattened tail."""
from __future__ import annotations

import math

import numpy as np

from lowbit.config import jit
from lowbit.kernels.float.argreduce import arg_lines
from lowbit.kernels.float.gemm import claim, run_threads


# Inputs with fewer elements than this run on the calling thread alone (other
# threads would cost more to wake than they save).
_PARALLEL_MIN = 1 << 20


@jit
def _softmax_rows(x, out, o0, o1, log):
    # x, out: (outer, length, inner); normalise along the middle axis.  Each
    # exp(x - max) is evaluated once in float64 and parked in `out` (float32)
    # until the float64 sum is known.
    outer, length, inner = x.shape
    peak = np.empty(inner)
    total = np.empty(inner)
    for o in range(o0, o1):
        peak[:] = -np.inf
        for t in range(length):
            for k in range(inner):
                peak[k] = max(peak[k], x[o, t, k])
        total[:] = 0.0
        for t in range(length):
            for k in range(inner):
                e = math.exp(x[o, t, k] - peak[k])
                total[k] += e
                if not log:
                    out[o, t, k] = e
        if log:
            for k in range(inner):
                total[k] = peak[k] + math.log(total[k])
            for t in range(length):
                for k in range(inner):
                    out[o, t, k] = x[o, t, k] - total[k]
        else:
            for k in range(inner):
                total[k] = 1.0 / total[k]
            for t in range(length):
                for k in range(inner):
                    out[o, t, k] = out[o, t, k] * total[k]


@jit
def _softmax_worker(x, out, log, chunk, counter):
    items = (x.shape[0] + chunk - 1) // chunk
    while True:
        item = claim(counter)
        if item >= items:
            break
        _softmax_rows(x, out, item * chunk, min(x.shape[0], (item + 1) * chunk), log)


def _view(op, x, axis, legacy_flatten):
    """Validate ``x`` and ``axis``; the ``(outer, length, inner)`` shape normalised along its middle axis."""
    if x.dtype != np.float32:
        raise ValueError(f"{op}: expected float32 input, got {x.dtype}")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least one axis, got a scalar")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} out of range for input of rank {x.ndim}")
    axis %= x.ndim
    shape = x.shape
    if legacy_flatten:
        return (int(np.prod(shape[:axis])), int(np.prod(shape[axis:])), 1)
    return (int(np.prod(shape[:axis])), shape[axis], int(np.prod(shape[axis + 1:])))


def _normalise(op, x, axis, legacy_flatten, log):
    x = np.asarray(x)
    view = _view(op, x, axis, legacy_flatten)
    shape = x.shape
    out = np.empty(view, dtype=np.float32)
    if out.size:
        xv = np.ascontiguousarray(x).reshape(view)
        args = (xv, out, log, max(1, view[0] // 64), np.zeros(1, dtype=np.int64))
        if out.size < _PARALLEL_MIN or view[0] == 1:
            _softmax_worker(*args)
        else:
            run_threads(_softmax_worker, args)
    return out.reshape(shape)


def softmax(x, *, axis=-1, legacy_flatten=0):
    """ONNX ``Softmax``: ``y = exp(x - max) / sum(exp(x - max))`` along ``axis``.

    Parameters
    ----------
    x : numpy.ndarray
        float32, any rank >= 1.
    axis : int
        Axis normalised over (negative counts from the end).
    legacy_flatten : int
        1 for opset < 13 semantics: ``x`` is viewed as 2-D
        ``(prod(shape[:axis]), prod(shape[axis:]))`` and each row normalised.
        The importer sets it, and must then pass the old default ``axis=1``
        when the node has no ``axis`` attribute.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``x``.
    """
    return _normalise("Softmax", x, axis, legacy_flatten, False)


def log_softmax(x, *, axis=-1, legacy_flatten=0):
    """ONNX ``LogSoftmax``: ``y = x - max - log(sum(exp(x - max)))`` along ``axis``.

    Parameters
    ----------
    x : numpy.ndarray
        float32, any rank >= 1.
    axis : int
        Axis normalised over (negative counts from the end).
    legacy_flatten : int
        1 for opset < 13 semantics (see :func:`softmax`).

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``x``.
    """
    return _normalise("LogSoftmax", x, axis, legacy_flatten, True)


def hardmax(x, *, axis=-1, legacy_flatten=0):
    """ONNX ``Hardmax``: ``y = 1`` at the first maximum along ``axis``, ``0`` elsewhere.

    Parameters
    ----------
    x : numpy.ndarray
        float32, any rank >= 1.
    axis : int
        Axis searched (negative counts from the end).
    legacy_flatten : int
        1 for opset < 13 semantics (see :func:`softmax`): one maximum per
        row of the 2-D view ``(prod(shape[:axis]), prod(shape[axis:]))``.

    Returns
    -------
    numpy.ndarray
        float32, same shape as ``x``; a NaN counts as the maximum.
    """
    x = np.asarray(x)
    view = _view("Hardmax", x, axis, legacy_flatten)
    out = np.zeros(view, dtype=np.float32)
    if out.size:
        where = np.empty((view[0], view[2]), dtype=np.int64)
        arg_lines(np.ascontiguousarray(x).reshape(view), where, True, False)
        np.put_along_axis(out, where[:, None, :], np.float32(1.0), axis=1)
    return out.reshape(x.shape)
