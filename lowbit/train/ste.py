"""Fake quantization with the straight-through estimator (STE).

Quantization-aware training keeps float ("latent") weights and, in the
forward pass, replaces them (and optionally the activations) by the values
the low-precision kernels will use.  Rounding has a zero gradient almost
everywhere, so the backward pass substitutes a surrogate:

* activations, :func:`sign` -- forward :math:`\\mathrm{sign}(x)` with
  :math:`\\mathrm{sign}(0) = +1`; backward the gradient of
  :math:`\\mathrm{hardtanh}(x) = \\mathrm{clip}(x, -1, 1)`:
  :math:`\\partial L / \\partial x = \\partial L / \\partial y \\cdot [|x| \\le 1]`,
  or (:func:`approx_sign_grad`) the gradient of a piecewise quadratic that is
  closer to sign near 0;
* activations, :func:`fake_quant_activation` -- k-bit per-tensor affine grid on
  ``[lo, hi]``; backward passes the gradient inside the range and 0 outside;
* weights, :class:`WeightQuantizer` -- forward the dequantized values of
  :mod:`lowbit.formats.quantizers` (the functions inference uses, so training
  sees exactly the weights that are stored); backward the identity
  :math:`\\partial L / \\partial W = \\partial L / \\partial \\hat W`.
"""
from __future__ import annotations

import numpy as np

from lowbit.formats import quantizers


def sign(x):
    """Binarize: :math:`\\mathrm{sign}(x) \\in \\{-1, +1\\}` with :math:`\\mathrm{sign}(0) = +1`."""
    return np.where(x < 0, -1.0, 1.0).astype(x.dtype)


def sign_grad(x, dy):
    """STE gradient of :func:`sign`, the gradient of hardtanh.

    .. math:: \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\,[|x| \\le 1]
    """
    return dy * (np.abs(x) <= 1).astype(dy.dtype)


def approx_sign_grad(x, dy):
    """ApproxSign STE gradient of :func:`sign`: the derivative of the piecewise quadratic

    .. math:: F(x) = \\begin{cases} -1 & x < -1 \\\\ 2x + x^2 & -1 \\le x < 0 \\\\
              2x - x^2 & 0 \\le x < 1 \\\\ 1 & x \\ge 1 \\end{cases}, \\qquad
              \\frac{\\partial L}{\\partial x} = \\frac{\\partial L}{\\partial y}\\,\\max(0,\\ 2 - 2|x|)

    (Liu et al., Bi-Real Net, 2018).  Like hardtanh it passes nothing for
    :math:`|x| > 1`, but it weights inputs near the sign's jump more.
    """
    return dy * np.maximum(0.0, 2.0 - 2.0 * np.abs(x)).astype(dy.dtype)


#: Surrogate gradients of :func:`sign` by name (``Quantized(..., sign_backward=NAME)``).
SIGN_GRADIENTS = {"hardtanh": sign_grad, "approx": approx_sign_grad}


def fake_quant_activation(x, lo, hi, bits):
    """Round ``x`` to the k-bit grid on ``[lo, hi]`` (``lo`` widened to include 0).

    .. math:: s = \\frac{hi - lo}{2^k - 1}, \\quad z = \\mathrm{round}(-lo / s), \\quad
              \\hat x = s\\,(\\mathrm{clip}(\\mathrm{round}(x / s) + z, 0, 2^k - 1) - z)

    Returns
    -------
    xq : numpy.ndarray
        The fake-quantized values, same dtype as ``x``.
    mask : numpy.ndarray of bool
        ``lo <= x <= hi``: where the STE passes the gradient.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    levels = (1 << bits) - 1
    s = (hi - lo) / levels if hi > lo else 1.0
    z = np.rint(-lo / s)
    xq = (np.clip(np.rint(x / s) + z, 0, levels) - z) * s
    return xq.astype(x.dtype), (x >= lo) & (x <= hi)


class WeightQuantizer:
    """Per-output-channel weight fake quantization for one precision.

    ``__call__`` returns :math:`\\hat W = s_m\\, q_m`, where ``(q, s)`` come from
    :mod:`lowbit.formats.quantizers`:

    * ``"binary"``: :math:`\\hat W_m = \\alpha_m \\mathrm{sign}(W_m)`,
      :math:`\\alpha_m = \\mathrm{mean}|W_m|`;
    * ``"ternary"``: :math:`\\hat W_m = \\alpha_m \\mathrm{sign}(W_m) [|W_m| > \\Delta_m]`,
      :math:`\\Delta_m = 0.7\\,\\mathrm{mean}|W_m|`;
    * ``"intK"``: :math:`\\hat W_m = s_m\\,\\mathrm{clip}(\\mathrm{round}(W_m / s_m), -Q, Q)`,
      :math:`s_m = \\max|W_m| / Q`, :math:`Q = 2^{K-1} - 1`.

    The backward pass is the identity (STE) on the latent weights.

    Parameters
    ----------
    kind : {"binary", "ternary", "int"}
    bits : int
        Weight bits (1 for binary, 2 for ternary).
    """

    def __init__(self, kind, bits):
        self.kind, self.bits = kind, bits

    @property
    def name(self):
        return f"int{self.bits}" if self.kind == "int" else self.kind

    def __call__(self, w):
        if self.kind == "binary":
            q, s = quantizers.binary(w)
        elif self.kind == "ternary":
            q, s = quantizers.ternary(w)
        else:
            q, s = quantizers.symmetric(w, self.bits)
        shape = (-1,) + (1,) * (w.ndim - 1)
        return (q * s.reshape(shape)).astype(w.dtype)

    def __repr__(self):
        return f"WeightQuantizer({self.name!r})"


#: Names accepted by :func:`get`: (kind, weight bits).
PRECISIONS = {"binary": ("binary", 1), "ternary": ("ternary", 2),
              **{f"int{k}": ("int", k) for k in range(2, 9)}}


def get(identifier):
    """A :class:`WeightQuantizer` from a precision name or an existing quantizer.

    Raises
    ------
    ValueError
        Naming the identifier and the accepted names.
    """
    if isinstance(identifier, WeightQuantizer):
        return identifier
    if isinstance(identifier, str) and identifier in PRECISIONS:
        return WeightQuantizer(*PRECISIONS[identifier])
    raise ValueError(f"cannot interpret {identifier!r} as a weight quantizer; "
                     f"expected one of {', '.join(PRECISIONS)}")
