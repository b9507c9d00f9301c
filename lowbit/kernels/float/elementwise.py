"""fp32 elementwise arithmetic: Add, Sub, Mul, Div, Sum.

Broadcasting is numpy's (ONNX "multidirectional") rule.  The shapes a CNN
actually produces get Numba loops that never materialise a broadcast copy:

* same shape (residual adds);
* one operand a single element (scalar constants);
* one operand varying over one contiguous run of axes of the output and
  constant elsewhere: per-channel ``(1, C, 1, 1)`` or ``(C, 1, 1)``, a bias
  ``(C,)`` on ``(N, C)``.  The output is then viewed as
  ``(outer, mid, inner)`` and the small operand as ``(mid,)``.

Anything else is broadcast to a contiguous copy and run through the
same-shape loop.  Inputs that are not both float32 (int64 shape arithmetic
from exporters, for instance) take a plain numpy path; integer ``Div``
truncates toward zero like C and onnxruntime.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit

ADD, SUB, MUL, DIV = 0, 1, 2, 3
_NAMES = {ADD: "Add", SUB: "Sub", MUL: "Mul", DIV: "Div"}


@jit
def _apply(op, x, y):
    # `op` is loop-invariant in every caller, so LLVM hoists this branch out of
    # the loops (measured: as fast as one loop per operator).
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    if op == MUL:
        return x * y
    # np.divide, not `/`: IEEE x/0 = ±inf and 0/0 = NaN instead of Python's
    # ZeroDivisionError, with no branch in the loop.
    return np.divide(x, y)


@jit(multithread=True)
def _same_shape_kernel(a, b, out, op):
    for i in prange(out.size):
        out[i] = _apply(op, a[i], b[i])


@jit(multithread=True)
def _scalar_kernel(a, s, out, op, scalar_first):
    if scalar_first:
        for i in prange(out.size):
            out[i] = _apply(op, s, a[i])
    else:
        for i in prange(out.size):
            out[i] = _apply(op, a[i], s)


@jit(multithread=True)
def _channel_kernel(big, small, out, op, small_first):
    # big, out: (outer * mid, inner); small: (mid,).  2-D indexing keeps the
    # inner loop free of index arithmetic, so it vectorises.
    rows, inner = big.shape
    mid = small.size
    for r in prange(rows):
        s = small[r % mid]
        if small_first:
            for k in range(inner):
                out[r, k] = _apply(op, s, big[r, k])
        else:
            for k in range(inner):
                out[r, k] = _apply(op, big[r, k], s)


def _broadcast_shape(a, b, op):
    try:
        return np.broadcast_shapes(a.shape, b.shape)
    except ValueError:
        raise ValueError(
            f"{_NAMES[op]}: shapes {a.shape} and {b.shape} do not broadcast "
            "(numpy rule: trailing dims must be equal or 1)"
        ) from None


def _channel_run(small_shape, out_shape):
    """``(outer, mid, inner)`` if ``small`` varies over one contiguous run of
    output axes and is 1 elsewhere, else None."""
    padded = (1,) * (len(out_shape) - len(small_shape)) + tuple(small_shape)
    varying = [k for k, d in enumerate(padded) if d != 1]
    if not varying:
        return None
    first, last = varying[0], varying[-1] + 1
    if any(padded[k] != out_shape[k] for k in range(first, last)):
        return None
    return (int(np.prod(out_shape[:first])), int(np.prod(out_shape[first:last])),
            int(np.prod(out_shape[last:])))


def _numpy_binary(op, a, b):
    if op == ADD:
        return np.add(a, b)
    if op == SUB:
        return np.subtract(a, b)
    if op == MUL:
        return np.multiply(a, b)
    if np.issubdtype(np.result_type(a, b), np.integer):
        # C semantics: truncate toward zero (numpy's // floors).
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.floor_divide(a, b)
            r = a - q * b
        return q + ((r != 0) & ((a < 0) != (b < 0))).astype(q.dtype)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.divide(a, b)


def _binary_op(op, a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    out_shape = _broadcast_shape(a, b, op)
    if a.dtype != np.float32 or b.dtype != np.float32:
        return np.array(_numpy_binary(op, a, b))
    out = np.empty(out_shape, dtype=np.float32)
    flat_out = out.reshape(-1)
    size = flat_out.size
    if size == 0:
        return out
    if a.size == b.size == size:   # both hold the whole output, in the same order
        _same_shape_kernel(_flat(a), _flat(b), flat_out, op)
        return out
    for big, small, small_first in ((a, b, False), (b, a, True)):
        if big.size != size:
            continue
        if small.size == 1:
            _scalar_kernel(_flat(big), small.reshape(-1)[0], flat_out, op, small_first)
            return out
        run = _channel_run(small.shape, out_shape)
        if run is not None:
            outer, mid, inner = run
            rows = (outer * mid, inner)
            _channel_kernel(_flat(big).reshape(rows), _flat(small), flat_out.reshape(rows), op, small_first)
            return out
    full_a = _flat(np.broadcast_to(a, out_shape))
    full_b = _flat(np.broadcast_to(b, out_shape))
    _same_shape_kernel(full_a, full_b, flat_out, op)
    return out


def _flat(x):
    return np.ascontiguousarray(x).reshape(-1)


def add(a, b):
    """ONNX ``Add``: ``C = A + B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Operands; float32 runs on Numba, other dtypes on numpy.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape.
    """
    return _binary_op(ADD, a, b)


def sub(a, b):
    """ONNX ``Sub``: ``C = A - B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Operands; float32 runs on Numba, other dtypes on numpy.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape.
    """
    return _binary_op(SUB, a, b)


def mul(a, b):
    """ONNX ``Mul``: ``C = A * B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Operands; float32 runs on Numba, other dtypes on numpy.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape.
    """
    return _binary_op(MUL, a, b)


def div(a, b):
    """ONNX ``Div``: ``C = A / B`` with numpy broadcasting.

    Float division is IEEE (``x/0`` is ±inf, ``0/0`` is NaN); integer
    division truncates toward zero (``-7 / 2 = -3``), as in C and
    onnxruntime.

    Parameters
    ----------
    a, b : numpy.ndarray
        Operands; float32 runs on Numba, other dtypes on numpy.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape.
    """
    return _binary_op(DIV, a, b)


def sum_(*inputs):
    """ONNX ``Sum``: ``Y = X_1 + X_2 + ... + X_n`` with numpy broadcasting.

    Added left to right, so the float32 result is that of a chain of ``Add``.

    Parameters
    ----------
    *inputs : numpy.ndarray
        One or more operands.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape of all inputs.
    """
    if not inputs:
        raise ValueError("Sum: needs at least one input, got none")
    result = np.array(inputs[0], copy=True)
    for x in inputs[1:]:
        result = _binary_op(ADD, result, x)
    return result
