"""Optimizers updating a net's parameters in place."""
from __future__ import annotations

import numpy as np


class SGD:
    """Stochastic gradient descent with momentum and L2 weight decay.

    .. math:: g \\leftarrow \\nabla + \\lambda w, \\quad v \\leftarrow \\mu v + g, \\quad w \\leftarrow w - \\eta v

    Parameters
    ----------
    momentum : float
        ``mu``.
    weight_decay : float
        ``lambda``; applied to every parameter.
    """

    name = "sgd"

    def __init__(self, momentum=0.9, weight_decay=0.0):
        self.momentum, self.weight_decay = momentum, weight_decay
        self.v, self.t = {}, 0

    def step(self, params, grads, lr):
        self.t += 1
        for k, w in params.items():
            g = grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * w
            if self.momentum:
                v = self.v.get(k)
                v = g.copy() if v is None else v * self.momentum + g
                self.v[k] = v
                g = v
            w -= (lr * g).astype(w.dtype)

    def state(self):
        return {f"v/{k}": v for k, v in self.v.items()}, {"t": self.t}

    def load_state(self, arrays, scalars):
        self.v = {k[2:]: np.array(v) for k, v in arrays.items() if k.startswith("v/")}
        self.t = int(scalars["t"])


class Adam:
    """Adam (Kingma & Ba) with bias correction and optional L2 weight decay.

    .. math:: m \\leftarrow \\beta_1 m + (1-\\beta_1) g, \\quad
              v \\leftarrow \\beta_2 v + (1-\\beta_2) g^2, \\quad
              w \\leftarrow w - \\eta \\frac{m / (1-\\beta_1^t)}{\\sqrt{v / (1-\\beta_2^t)} + \\epsilon}
    """

    name = "adam"

    def __init__(self, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.m, self.v, self.t = {}, {}, 0

    def step(self, params, grads, lr):
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        c1, c2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        for k, w in params.items():
            g = grads[k]
            if self.weight_decay:
                g = g + self.weight_decay * w
            if k not in self.m:
                self.m[k], self.v[k] = np.zeros_like(w), np.zeros_like(w)
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            w -= ((lr / c1) * m / (np.sqrt(v / c2) + self.eps)).astype(w.dtype)

    def state(self):
        arrays = {f"m/{k}": v for k, v in self.m.items()}
        arrays.update({f"v/{k}": v for k, v in self.v.items()})
        return arrays, {"t": self.t}

    def load_state(self, arrays, scalars):
        self.m = {k[2:]: np.array(v) for k, v in arrays.items() if k.startswith("m/")}
        self.v = {k[2:]: np.array(v) for k, v in arrays.items() if k.startswith("v/")}
        self.t = int(scalars["t"])


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get(name, **kwargs):
    """Build an optimizer by name (``"sgd"`` or ``"adam"``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](**kwargs)
