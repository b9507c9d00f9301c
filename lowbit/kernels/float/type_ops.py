"""Type plumbing: CastLike and Size (the helpers ONNX function bodies use, e.g. LayerNorm's and Gelu's).

No arithmetic: plain numpy.  CastLike converts exactly as Cast does
(:func:`lowbit.kernels.float.shape_ops.cast`), to the element type of its
second input.
"""
from __future__ import annotations

import numpy as np
from onnx import helper

from .shape_ops import cast


def cast_like(input, target_type, *, saturate=1):  # noqa: A002 (ONNX input name)
    """ONNX ``CastLike`` (opsets 15, 19, 21): ``y = Cast(input, to=elem_type(target_type))``.

    Parameters
    ----------
    input : ndarray
        Tensor to convert.
    target_type : ndarray
        Only its element type is read.
    saturate : int
        For float8 targets: 1 clamps out-of-range values to ``±max_finite``,
        0 lets them become NaN/inf as the format defines (opset 19).

    Returns
    -------
    ndarray
        ``input`` converted to ``target_type.dtype``.
    """
    dtype = np.asarray(target_type).dtype
    try:
        to = helper.np_dtype_to_tensor_dtype(dtype)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"CastLike: target_type has dtype {dtype}, which has no ONNX element type") from None
    return cast(input, to=to, saturate=saturate)


def size(data):
    """ONNX ``Size``: the number of elements of ``data``, as an int64 scalar.

    Returns
    -------
    ndarray
        0-d int64, ``prod(data.shape)``.
    """
    return np.array(np.asarray(data).size, dtype=np.int64)
