"""A Conv or Affine layer trained with fake-quantized weights and inputs (STE)."""
from __future__ import annotations

import numpy as np

from lowbit.train import ste
from lowbit.train.layers.base import Layer


class Quantized(Layer):
    """Wrap a :class:`~lowbit.train.layers.Conv` or :class:`~lowbit.train.layers.Affine`
    so that its forward pass uses quantized weights and, optionally, quantized inputs.

    .. math:: y = f(a(x);\\ q(W), b)

    where ``f`` is the wrapped layer, ``q`` the weight quantizer
    (:class:`lowbit.train.ste.WeightQuantizer`) and ``a`` the input quantizer:

    * ``inputs="sign"``: :math:`a(x) = \\mathrm{sign}(x)` (``sign(0) = +1``), backward
      :math:`dx = da \\cdot [|x| \\le 1]` (``sign_backward="hardtanh"``) or
      :math:`dx = da \\cdot \\max(0, 2 - 2|x|)` (``"approx"``, :func:`lowbit.train.ste.approx_sign_grad`);
      padding of a Conv is applied to ``a(x)``, so a padded tap contributes 0, as in lowbit's binary kernels;
    * ``inputs=k`` (int): k-bit per-tensor fake quantization on a running
      ``[lo, hi]`` (exponential moving average of the batch min/max, momentum 0.9),
      backward :math:`dx = da \\cdot [lo \\le x \\le hi]`;
    * ``inputs=None``: :math:`a(x) = x`.

    The latent float weights are this layer's ``params`` (shared with the wrapped
    layer's ``params`` at construction); their gradient is the gradient w.r.t.
    :math:`q(W)` (straight through). The ONNX form is the wrapped layer's, with the
    latent float weights: quantizing the exported model with the same precision
    reproduces this forward pass.

    Setting :attr:`weights_quantized` to False uses the latent weights as they are,
    :math:`y = f(a(x);\\ W, b)`: the first step of two-step training (binary
    activations on float weights first, then binary weights too).

    Parameters
    ----------
    layer : Conv or Affine
    weights : str or lowbit.train.ste.WeightQuantizer
        ``"binary"``, ``"ternary"``, ``"int2"`` .. ``"int8"``.
    inputs : {"sign"} or int or None
    sign_backward : {"hardtanh", "approx"}
        The surrogate gradient of ``inputs="sign"`` (:data:`lowbit.train.ste.SIGN_GRADIENTS`).
    """

    def __init__(self, layer, weights, inputs=None, sign_backward="hardtanh"):
        super().__init__()
        if inputs not in (None, "sign") and not (isinstance(inputs, int) and 2 <= inputs <= 8):
            raise ValueError(f"inputs must be None, 'sign' or a bit count 2..8; got {inputs!r}")
        if sign_backward not in ste.SIGN_GRADIENTS:
            raise ValueError(f"sign_backward must be one of {', '.join(ste.SIGN_GRADIENTS)}; got {sign_backward!r}")
        self.layer, self.quant, self.inputs = layer, ste.get(weights), inputs
        self.sign_backward = sign_backward
        self.params = layer.params
        self.weights_quantized = True
        if isinstance(inputs, int):
            self.buffers["in_lo"] = np.zeros(1, np.float32)
            self.buffers["in_hi"] = np.zeros(1, np.float32)
            self.seen = False

    def _quantize_input(self, x, train):
        if self.inputs is None:
            return x, None
        if self.inputs == "sign":
            # the backward factor: the surrogate's gradient at x for a unit upstream gradient (a broadcast scalar)
            return ste.sign(x), (ste.SIGN_GRADIENTS[self.sign_backward](x, np.ones((), x.dtype)) if train else None)
        lo, hi = self.buffers["in_lo"], self.buffers["in_hi"]
        if train:
            blo, bhi = float(x.min()), float(x.max())
            if not self.seen and lo[0] == 0 and hi[0] == 0:
                lo[0], hi[0] = blo, bhi
            else:
                lo[0], hi[0] = 0.9 * lo[0] + 0.1 * blo, 0.9 * hi[0] + 0.1 * bhi
            self.seen = True
        xq, mask = ste.fake_quant_activation(x, lo[0], hi[0], self.inputs)
        return xq, (mask if train else None)

    def forward(self, x, train=False):
        xa, self.mask = self._quantize_input(x, train)
        inner = self.layer
        w = self.params["W"]
        inner.params = {**self.params, "W": self.quant(w) if self.weights_quantized else w}
        inner.need_dx = self.need_dx
        return inner.forward(xa, train=train)

    def backward(self, dy):
        (dx,) = self.layer.backward(dy)
        self.grads = dict(self.layer.grads)  # dL/dW_latent = dL/dq(W): straight through
        if dx is not None and self.mask is not None:
            dx = dx * self.mask
        self.mask = None
        return (dx,)

    def onnx(self, inputs, output, name):
        self.layer.params = self.params  # export the latent float weights
        return self.layer.onnx(inputs, output, name)

    def astype(self, dtype):
        super().astype(dtype)
        self.layer.params = self.params
        return self
