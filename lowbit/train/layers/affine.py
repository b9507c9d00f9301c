"""Fully connected layer."""
from __future__ import annotations

import numpy as np

from lowbit.train.init import he_normal
from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node, tensor


class Affine(Layer):
    """Fully connected layer on (N, K) inputs, ONNX ``Gemm`` with ``transB=1``.

    .. math:: y = x W^T + b, \\quad W \\in \\mathbb{R}^{out \\times in}
    """

    def __init__(self, in_features, out_features, rng):
        super().__init__()
        self.params["W"] = he_normal(rng, (out_features, in_features), in_features)
        self.params["b"] = np.zeros(out_features, np.float32)

    def forward(self, x, train=False):
        if x.ndim != 2:
            raise ValueError(f"Affine takes (N, K) inputs; got {x.shape} (add a Flatten)")
        self.x = x if train else None
        return x @ self.params["W"].T + self.params["b"]

    def backward(self, dy):
        self.grads["W"] = dy.T @ self.x
        self.grads["b"] = dy.sum(axis=0)
        dx = dy @ self.params["W"] if self.need_dx else None
        self.x = None
        return (dx,)

    def onnx(self, inputs, output, name):
        inits = [tensor(self.params["W"], f"{name}.W"), tensor(self.params["b"], f"{name}.b")]
        return [node("Gemm", [inputs[0], f"{name}.W", f"{name}.b"], [output], name, transB=1)], inits
