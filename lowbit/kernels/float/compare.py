"""fp32 Min, Max, Mean, Where, the comparisons and the boolean logic ops.

All broadcast with numpy's (ONNX "multidirectional") rule.  numpy's ufuncs
are the fast path here (SIMD, one pass, written into a fresh buffer with
``out=``), so the kernels only check shapes and dtypes around them.  The
exception is float32 ``Where`` on full-size or one-element operands: a
Numba select loop (``np.where`` branches per element: 6 ms on
1x64x160x160 with a random condition).
Comparisons return bool; ``Not``/``And``/``Or``/``Xor`` take bool only.
Min and Max propagate NaN, as numpy's ``minimum``/``maximum`` do.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit

from .broadcast import broadcast_shape, is_float_dtype, require_same_dtype


def _variadic(op, inputs):
    if not inputs or any(x is None for x in inputs):
        raise ValueError(f"{op}: needs one or more inputs, got {len(inputs)} (with omitted ones: "
                         f"{sum(x is None for x in inputs)})")
    arrays = [np.asarray(x) for x in inputs]
    dtype = require_same_dtype(op, arrays)
    return arrays, broadcast_shape(op, *arrays), dtype


def _fold(op, ufunc, inputs):
    arrays, shape, dtype = _variadic(op, inputs)
    if not (dtype.kind in "iuf" or is_float_dtype(dtype)):
        raise ValueError(f"{op}: inputs have dtype {dtype}; expected a numeric tensor")
    out = np.empty(shape, dtype=dtype)
    if len(arrays) == 1:
        out[...] = arrays[0]
        return out
    ufunc(arrays[0], arrays[1], out=out)
    for a in arrays[2:]:
        ufunc(out, a, out=out)
    return out


def min_(*inputs):
    """ONNX ``Min``: ``Y = min(X_1, ..., X_n)`` elementwise, with numpy broadcasting.

    Parameters
    ----------
    *inputs : numpy.ndarray
        One or more tensors of one numeric dtype.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape; NaN wherever any input is NaN.
    """
    return _fold("Min", np.minimum, inputs)


def max_(*inputs):
    """ONNX ``Max``: ``Y = max(X_1, ..., X_n)`` elementwise, with numpy broadcasting.

    Parameters
    ----------
    *inputs : numpy.ndarray
        One or more tensors of one numeric dtype.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape; NaN wherever any input is NaN.
    """
    return _fold("Max", np.maximum, inputs)


def mean(*inputs):
    """ONNX ``Mean``: ``Y = (X_1 + ... + X_n) / n`` elementwise, with numpy broadcasting.

    Summed in float64 and rounded once to the input dtype.

    Parameters
    ----------
    *inputs : numpy.ndarray
        One or more float tensors of one dtype.

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape and the inputs' dtype.
    """
    arrays, shape, dtype = _variadic("Mean", inputs)
    if not is_float_dtype(dtype):
        raise ValueError(f"Mean: inputs have dtype {dtype}; expected a float tensor")
    total = np.zeros(shape, dtype=np.float64)
    for a in arrays:
        np.add(total, a if a.dtype.kind == "f" else a.astype(np.float64), out=total)
    total /= len(arrays)
    return total.astype(dtype)


def where(condition, x, y):
    """ONNX ``Where``: ``out = x if condition else y`` elementwise, all three broadcast together.

    Parameters
    ----------
    condition : numpy.ndarray
        bool tensor.
    x, y : numpy.ndarray
        Tensors of one dtype (any, strings included).

    Returns
    -------
    numpy.ndarray
        New array of the broadcast shape of the three inputs and the dtype of ``x``.
    """
    condition, x, y = np.asarray(condition), np.asarray(x), np.asarray(y)
    if condition.dtype != np.bool_:
        raise ValueError(f"Where: condition has dtype {condition.dtype}; expected bool")
    dtype = require_same_dtype("Where", (x, y))
    shape = broadcast_shape("Where", condition, x, y)
    size = int(np.prod(shape))
    if dtype == np.float32 and size and all(a.size in (1, size) for a in (condition, x, y)):
        if condition.size == 1:
            return np.array(np.broadcast_to(x if condition.reshape(-1)[0] else y, shape))
        # a one-element x or y is filled out (one cheap pass) so the select loop stays vectorised
        x, y = (np.full(size, a.reshape(-1)[0]) if a.size == 1 else _flat(a) for a in (x, y))
        out = np.empty(shape, dtype=np.float32)
        _where_kernel(_flat(condition).view(np.uint8), x, y, out.reshape(-1))
        return out
    return np.asarray(np.where(condition, x, y), dtype=dtype)


def _flat(a):
    return np.ascontiguousarray(a).reshape(-1)


@jit(multithread=True)
def _where_kernel(condition, x, y, out):
    # condition: the bool mask viewed as uint8; all four arrays hold the whole output, in order
    for i in prange(out.size):
        out[i] = x[i] if condition[i] != 0 else y[i]


# --- comparisons ------------------------------------------------------------------------------

def _compare(op, ufunc, a, b):
    a, b = np.asarray(a), np.asarray(b)
    require_same_dtype(op, (a, b))
    broadcast_shape(op, a, b)
    return np.asarray(ufunc(a, b), dtype=np.bool_)


def equal(a, b):
    """ONNX ``Equal``: ``C = (A == B)`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Tensors of one dtype (numeric, bool or string).

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape (NaN equals nothing).
    """
    return _compare("Equal", np.equal, a, b)


def less(a, b):
    """ONNX ``Less``: ``C = (A < B)`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Numeric tensors of one dtype.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape (false where either is NaN).
    """
    return _compare("Less", np.less, a, b)


def greater(a, b):
    """ONNX ``Greater``: ``C = (A > B)`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Numeric tensors of one dtype.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape (false where either is NaN).
    """
    return _compare("Greater", np.greater, a, b)


def less_or_equal(a, b):
    """ONNX ``LessOrEqual``: ``C = (A <= B)`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Numeric tensors of one dtype.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape (false where either is NaN).
    """
    return _compare("LessOrEqual", np.less_equal, a, b)


def greater_or_equal(a, b):
    """ONNX ``GreaterOrEqual``: ``C = (A >= B)`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        Numeric tensors of one dtype.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape (false where either is NaN).
    """
    return _compare("GreaterOrEqual", np.greater_equal, a, b)


# --- logic ------------------------------------------------------------------------------------

def _require_bool(op, *arrays):
    for a in arrays:
        if a.dtype != np.bool_:
            raise ValueError(f"{op}: inputs have dtypes {[str(b.dtype) for b in arrays]}; expected bool")


def _logic(op, ufunc, a, b):
    a, b = np.asarray(a), np.asarray(b)
    _require_bool(op, a, b)
    shape = broadcast_shape(op, a, b)
    return ufunc(a, b, out=np.empty(shape, dtype=np.bool_))


def not_(x):
    """ONNX ``Not``: ``Y = not X``.

    Parameters
    ----------
    x : numpy.ndarray
        bool tensor.

    Returns
    -------
    numpy.ndarray
        New bool array of the same shape.
    """
    x = np.asarray(x)
    _require_bool("Not", x)
    return np.logical_not(x, out=np.empty(x.shape, dtype=np.bool_))


def and_(a, b):
    """ONNX ``And``: ``C = A and B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        bool tensors.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape.
    """
    return _logic("And", np.logical_and, a, b)


def or_(a, b):
    """ONNX ``Or``: ``C = A or B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        bool tensors.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape.
    """
    return _logic("Or", np.logical_or, a, b)


def xor(a, b):
    """ONNX ``Xor``: ``C = A xor B`` with numpy broadcasting.

    Parameters
    ----------
    a, b : numpy.ndarray
        bool tensors.

    Returns
    -------
    numpy.ndarray
        New bool array of the broadcast shape.
    """
    return _logic("Xor", np.logical_xor, a, b)
