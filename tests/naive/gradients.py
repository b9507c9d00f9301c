"""Numerical gradients, the oracle for the trainer's backward passes."""
import numpy as np


def numgrad(f, x, eps=1e-6):
    """d f / d x by central differences; f returns a scalar, x is perturbed in place."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        fp = f()
        x[i] = old - eps
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g
