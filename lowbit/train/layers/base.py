"""The interface every trainable layer follows."""
from __future__ import annotations

import numpy as np


class Layer:
    """A layer with a forward pass, a backward pass and its ONNX form.

    Attributes
    ----------
    params : dict of str to numpy.ndarray
        Trainable arrays, updated in place by the optimizer.
    grads : dict of str to numpy.ndarray
        Gradients of the loss w.r.t. ``params``, filled by :meth:`backward`.
    buffers : dict of str to numpy.ndarray
        Non-trainable state saved in checkpoints (BatchNorm running statistics).
    need_dx : bool
        When False, :meth:`backward` may skip the input gradient (first layer).
    """

    def __init__(self):
        self.params, self.grads, self.buffers = {}, {}, {}
        self.need_dx = True

    def forward(self, *xs, train=False):
        raise NotImplementedError

    def backward(self, dy):
        """Gradients w.r.t. each input, as a tuple (``None`` where skipped)."""
        raise NotImplementedError

    def onnx(self, inputs, output, name):
        """ONNX nodes and initializers computing this layer in inference mode.

        Returns
        -------
        nodes : list of onnx.NodeProto
        initializers : list of onnx.TensorProto
        """
        raise NotImplementedError

    def astype(self, dtype):
        """Cast params and buffers (float64 for gradient checks)."""
        for store in (self.params, self.buffers):
            for k, v in store.items():
                store[k] = v.astype(dtype)
        return self

    def zero_grads(self):
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
