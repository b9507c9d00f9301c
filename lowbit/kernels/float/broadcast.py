"""Shape and dtype checks shared by the elementwise math, comparison and logic kernels."""
from __future__ import annotations

import numpy as np


def broadcast_shape(op: str, *arrays) -> tuple:
    """The numpy (ONNX "multidirectional") broadcast shape of ``arrays``.

    Raises
    ------
    ValueError
        Naming the op and the shapes that do not broadcast.
    """
    shapes = [np.shape(a) for a in arrays]
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        listed = ", ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{op}: shapes {listed} do not broadcast "
                         "(numpy rule: trailing dims must be equal or 1)") from None


def is_float_dtype(dtype) -> bool:
    """True for numpy's float types and the ml_dtypes ones (bfloat16, float8 variants)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or (dtype.kind == "V" and dtype.name.startswith(("bfloat", "float")))


def require_float(op: str, x) -> None:
    """Raise ``ValueError`` unless ``x`` holds floats (the ops whose ONNX type list is float only)."""
    if not is_float_dtype(x.dtype):
        raise ValueError(f"{op}: input has dtype {x.dtype}; expected a float tensor (float16, bfloat16, float32, "
                         "float64)")


def require_same_dtype(op: str, arrays) -> np.dtype:
    """The common dtype of ``arrays``; ``ValueError`` if they differ (ONNX type constraint ``T``)."""
    dtypes = [a.dtype for a in arrays]
    if any(d != dtypes[0] for d in dtypes[1:]):
        raise ValueError(f"{op}: inputs have dtypes {[str(d) for d in dtypes]}; expected one dtype for all")
    return dtypes[0]
