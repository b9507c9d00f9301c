"""TopK: the k largest (or smallest) values along one axis, with their int64 indices."""
from __future__ import annotations

import numpy as np


def top_k(x, k=None, *, axis=-1, largest=1, sorted=1):  # noqa: A002 (ONNX attribute name)
    """ONNX ``TopK``: ``(values, indices)`` of the ``k`` extreme elements along ``axis``.

    Values are ordered best first (largest first, or smallest first when
    ``largest=0``); equal values keep ascending index order, as the spec
    requires.  A stable sort on a key that reverses the order for
    ``largest`` (``-x`` for floats, ``~x`` for integers, neither of which
    can overflow) gives exactly that.

    Parameters
    ----------
    x : numpy.ndarray
        Any numeric dtype, rank >= 1.
    k : int or numpy.ndarray
        The count: the attribute ``k`` (opset 1) or the 1-element int64
        input ``K`` (opset 10 on); ``0 <= k <= x.shape[axis]``.
    axis : int
        Axis searched (negative counts from the end).
    largest : int
        1: the largest values; 0: the smallest (opset 11).
    sorted : int
        Accepted either way: the output is always sorted (the spec leaves
        the order free when 0).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        Values (dtype of ``x``) and int64 indices, shape of ``x`` with
        ``shape[axis] = k``.  NaN sorts after every number.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise ValueError(f"TopK: unsupported input dtype {x.dtype}; expected a numeric tensor")
    if x.ndim == 0:
        raise ValueError("TopK: input must have at least one axis, got a scalar")
    axis = int(axis)
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"TopK: axis {axis} out of range for input of rank {x.ndim}; "
                         f"expected -{x.ndim} <= axis < {x.ndim}")
    axis %= x.ndim
    if k is None:
        raise ValueError("TopK: no k given; expected the attribute k (opset < 10) or the input K")
    count = np.asarray(k).reshape(-1)
    if count.size != 1 or count.dtype.kind not in "iu":
        raise ValueError(f"TopK: K must be one integer, got {count.dtype} of {count.size} elements")
    count = int(count[0])
    if not 0 <= count <= x.shape[axis]:
        raise ValueError(f"TopK: k={count} out of range for axis {axis} of length {x.shape[axis]}; "
                         f"expected 0 <= k <= {x.shape[axis]}")
    moved = np.moveaxis(x, axis, -1)
    if largest:
        key = -moved if x.dtype.kind == "f" else ~moved
    else:
        key = moved
    order = np.argsort(key, axis=-1, kind="stable")[..., :count]
    values = np.take_along_axis(moved, order, axis=-1)
    return (np.ascontiguousarray(np.moveaxis(values, -1, axis)),
            np.ascontiguousarray(np.moveaxis(order.astype(np.int64), -1, axis)))
