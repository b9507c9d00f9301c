"""Batch normalisation over the channel axis."""
from __future__ import annotations

import numpy as np

from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node, tensor


class BatchNorm(Layer):
    """Batch normalisation for (N, C, H, W) or (N, C) inputs.

    Training uses the batch statistics and updates running ones:

    .. math:: \\hat x = \\frac{x - \\mu_B}{\\sqrt{\\sigma_B^2 + \\epsilon}}, \\quad
              y = \\gamma \\hat x + \\beta, \\quad
              \\mu_{run} \\leftarrow m \\mu_{run} + (1 - m) \\mu_B

    (the running variance uses the unbiased batch variance). Inference uses
    the running statistics; exported as ONNX ``BatchNormalization``.

    With :attr:`frozen` set, training also normalises with the running
    statistics and leaves them unchanged (only :math:`\\gamma, \\beta` learn), so
    the net trains on exactly the normalisation inference will use
    (quantization-aware training freezes them for its last epochs):
    :math:`\\partial L/\\partial x = \\gamma\\,\\partial L/\\partial y / \\sqrt{\\sigma^2_{run} + \\epsilon}`.

    Parameters
    ----------
    channels : int
    momentum : float
        ``m`` above (ONNX convention: weight of the old value).
    eps : float
    """

    def __init__(self, channels, momentum=0.9, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.frozen = False
        self.params["gamma"] = np.ones(channels, np.float32)
        self.params["beta"] = np.zeros(channels, np.float32)
        self.buffers["mean"] = np.zeros(channels, np.float32)
        self.buffers["var"] = np.ones(channels, np.float32)

    def _axes(self, x):
        return (0,) if x.ndim == 2 else (0, 2, 3)

    def _shape(self, x):
        return (1, -1) if x.ndim == 2 else (1, -1, 1, 1)

    def forward(self, x, train=False):
        axes, shp = self._axes(x), self._shape(x)
        if train and self.frozen:
            inv = (1.0 / np.sqrt(self.buffers["var"] + self.eps)).astype(x.dtype)
            xhat = (x - self.buffers["mean"].reshape(shp)) * inv.reshape(shp)
            self.cache = (xhat, inv, True)
        elif train:
            mu = x.mean(axis=axes)
            xc = x - mu.reshape(shp)
            var = (xc * xc).mean(axis=axes)
            m = x.size // x.shape[1]
            mom = self.momentum
            self.buffers["mean"] = (mom * self.buffers["mean"] + (1 - mom) * mu).astype(x.dtype)
            unbiased = var * (m / max(m - 1, 1))
            self.buffers["var"] = (mom * self.buffers["var"] + (1 - mom) * unbiased).astype(x.dtype)
            inv = 1.0 / np.sqrt(var + self.eps)
            xhat = xc * inv.reshape(shp)
            self.cache = (xhat, inv.astype(x.dtype), False)
        else:
            inv = 1.0 / np.sqrt(self.buffers["var"] + self.eps)
            xhat = (x - self.buffers["mean"].reshape(shp)) * inv.reshape(shp).astype(x.dtype)
        return (xhat * self.params["gamma"].reshape(shp) + self.params["beta"].reshape(shp)).astype(x.dtype)

    def backward(self, dy):
        xhat, inv, frozen = self.cache
        axes, shp = self._axes(dy), self._shape(dy)
        self.grads["gamma"] = (dy * xhat).sum(axis=axes)
        self.grads["beta"] = dy.sum(axis=axes)
        if frozen:
            self.cache = None
            return ((dy * (self.params["gamma"] * inv).reshape(shp)).astype(dy.dtype),)
        m = dy.size // dy.shape[1]
        # dx = gamma * inv / m * (m dy - sum(dy) - xhat * sum(dy * xhat))
        g = (self.params["gamma"] * inv).reshape(shp)
        dx = g * (dy - (self.grads["beta"] / m).reshape(shp) - xhat * (self.grads["gamma"] / m).reshape(shp))
        self.cache = None
        return (dx.astype(dy.dtype),)

    def onnx(self, inputs, output, name):
        names = [f"{name}.{k}" for k in ("gamma", "beta", "mean", "var")]
        arrays = [self.params["gamma"], self.params["beta"], self.buffers["mean"], self.buffers["var"]]
        inits = [tensor(a, n) for a, n in zip(arrays, names)]
        return [node("BatchNormalization", [inputs[0], *names], [output], name,
                     epsilon=self.eps, momentum=self.momentum)], inits
