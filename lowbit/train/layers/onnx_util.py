"""Small helpers the layers use to describe themselves as ONNX nodes."""
from __future__ import annotations

import numpy as np
from onnx import helper, numpy_helper


def node(op, inputs, outputs, name, **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name, **attrs)


def tensor(array, name):
    """A float32 initializer."""
    return numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), name)
