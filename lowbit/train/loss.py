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
    logp = _log_softmax(logits)
    loss = float(-logp[np.arange(n), labels].mean())
    d = np.exp(logp)
    d[np.arange(n), labels] -= 1
    return loss, (d / n).astype(logits.dtype)


def distillation(logits, teacher_logits, temperature=1.0):
    """Knowledge-distillation loss: the teacher's softened distribution as the target.

    With :math:`p = \\mathrm{softmax}(z / T)` for the student and :math:`q = \\mathrm{softmax}(t / T)`
    for the teacher,

    .. math:: L = \\frac{T^2}{N} \\sum_n \\mathrm{KL}(q_n \\,\\|\\, p_n)
                = \\frac{T^2}{N} \\sum_{n,i} q_{n,i} (\\log q_{n,i} - \\log p_{n,i}), \\qquad
              \\frac{\\partial L}{\\partial z_{n,i}} = \\frac{T\\,(p_{n,i} - q_{n,i})}{N}

    (the :math:`T^2` factor keeps the gradient's scale independent of :math:`T`).

    Parameters
    ----------
    logits, teacher_logits : numpy.ndarray
        ``(N, K)``.
    temperature : float
        :math:`T > 0`.

    Returns
    -------
    loss : float
    dlogits : numpy.ndarray
        ``(N, K)``, same dtype as ``logits``.
    """
    t = float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be positive; got {temperature!r}")
    n = logits.shape[0]
    logp = _log_softmax(logits.astype(np.float64) / t)
    logq = _log_softmax(np.asarray(teacher_logits, np.float64) / t)
    q = np.exp(logq)
    loss = float(t * t * (q * (logq - logp)).sum() / n)
    return loss, (t * (np.exp(logp) - q) / n).astype(logits.dtype)


def _log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
