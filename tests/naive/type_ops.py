"""Naive oracles for CastLike and Size.

Written from the ONNX spec with plain Python loops; imports nothing of lowbit.
CastLike converts each element to the element type of its second input: a
float to an integer type drops the fraction (toward zero), to bool tests
``!= 0``, an integer or bool to a float type takes its value (rounded to the
nearest representable float).
"""
from __future__ import annotations

import math

import numpy as np


def _convert(value, dtype: np.dtype):
    if dtype.kind == "b":
        return bool(value != 0)
    if dtype.kind in "iu":
        return int(math.trunc(float(value))) if isinstance(value, float) else int(value)
    return float(value)


def cast_like(x: np.ndarray, target: np.ndarray) -> np.ndarray:
    dtype = np.asarray(target).dtype
    x = np.asarray(x)
    out = np.empty(x.shape, dtype=dtype)
    for index in np.ndindex(x.shape):
        value = x[index].item()
        out[index] = _convert(value, dtype)
    return out


def size(x: np.ndarray) -> int:
    count = 1
    for dim in np.shape(x):
        count *= int(dim)
    return count
