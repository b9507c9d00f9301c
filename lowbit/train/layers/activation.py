"""Element-wise activations and shape-only layers."""
from __future__ import annotations

import numpy as np

from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node


class ReLU(Layer):
    """.. math:: y = \\max(x, 0), \\quad dx = dy \\cdot [x > 0]"""

    def forward(self, x, train=False):
        y = np.maximum(x, 0)
        self.mask = (x > 0) if train else None
        return y

    def backward(self, dy):
        dx = dy * self.mask
        self.mask = None
        return (dx,)

    def onnx(self, inputs, output, name):
        return [node("Relu", inputs, [output], name)], []


class Flatten(Layer):
    """(N, C, H, W) -> (N, C*H*W), ONNX ``Flatten`` with ``axis=1``."""

    def forward(self, x, train=False):
        self.x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return (dy.reshape(self.x_shape),)

    def onnx(self, inputs, output, name):
        return [node("Flatten", inputs, [output], name, axis=1)], []


class Dropout(Layer):
    """Inverted dropout: training scales kept units so inference is the identity.

    .. math:: y = x \\cdot m / (1 - r), \\quad m_i \\sim \\text{Bernoulli}(1 - r)

    Omitted from exported ONNX graphs (see :func:`lowbit.train.export.to_onnx`);
    :meth:`onnx` gives the equivalent ``Identity`` for standalone use.

    Parameters
    ----------
    rate : float
        Probability of dropping a unit.
    rng : numpy.random.Generator
        Draws the masks; seeded by the net for reproducibility.
    """

    def __init__(self, rate, rng):
        super().__init__()
        self.rate, self.rng = float(rate), rng

    def forward(self, x, train=False):
        if not train or self.rate == 0.0:
            self.mask = None
            return x
        keep = 1.0 - self.rate
        self.mask = (self.rng.random(x.shape, dtype=np.float32) < keep).astype(x.dtype) / np.asarray(keep, x.dtype)
        return x * self.mask

    def backward(self, dy):
        return (dy if self.mask is None else dy * self.mask,)

    def onnx(self, inputs, output, name):
        return [node("Identity", inputs, [output], name)], []
