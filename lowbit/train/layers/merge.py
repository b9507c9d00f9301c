"""Layers joining several inputs: residual Add and channel Concat."""
from __future__ import annotations

import numpy as np

from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node


class Add(Layer):
    """Element-wise sum of equal-shaped inputs (residual join).

    .. math:: y = \\sum_k x_k, \\quad dx_k = dy
    """

    def forward(self, *xs, train=False):
        self.count = len(xs)
        y = xs[0] + xs[1]
        for x in xs[2:]:
            y = y + x
        return y

    def backward(self, dy):
        return (dy,) * self.count

    def onnx(self, inputs, output, name):
        if len(inputs) == 2:
            return [node("Add", inputs, [output], name)], []
        return [node("Sum", inputs, [output], name)], []


class Concat(Layer):
    """Concatenation along channels (axis 1), ONNX ``Concat``.

    The gradient of each input is its slice of ``dy``.
    """

    def __init__(self, axis=1):
        super().__init__()
        self.axis = axis

    def forward(self, *xs, train=False):
        self.sizes = [x.shape[self.axis] for x in xs]
        return np.concatenate(xs, axis=self.axis)

    def backward(self, dy):
        cuts = np.cumsum(self.sizes)[:-1]
        return tuple(np.ascontiguousarray(d) for d in np.split(dy, cuts, axis=self.axis))

    def onnx(self, inputs, output, name):
        return [node("Concat", inputs, [output], name, axis=self.axis)], []
