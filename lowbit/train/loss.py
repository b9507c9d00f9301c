"""Softmax cross-entropy loss."""
from __future__ import annotations

import numpy as np


def softmax(z):
    """Row-wise softmax, :math:`p_i = e^{z_i - \\max z} / \\sum_j e^{z_j - \\max z}`."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_cross_entropy(logits, labels):
    """Mean cross-entropy of softmax(logits) against integer labels, and its gradient.

    .. math:: L = -\\frac{1}{N} \\sum_n \\log p_{n, y_n}, \\qquad
              \\frac{\\partial L}{\\partial z_{n,i}} = \\frac{p_{n,i} - [i = y_n]}{N}

    Parameters
    ----------
    logits : numpy.ndarray
        ``(N, K)``.
    labels : numpy.ndarray
        int ``(N,)``.

    Returns
    -------
    loss : float
    dlogits : numpy.ndarray
        ``(N, K)``, same dtype as ``logits``.
    """
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    logsum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    logp = shifted - logsum
    loss = float(-logp[np.arange(n), labels].mean())
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1
    return loss, (d / n).astype(logits.dtype)
