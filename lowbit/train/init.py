"""Weight initialisation."""
from __future__ import annotations

import numpy as np


def he_normal(rng, shape, fan_in, dtype=np.float32):
    """He (Kaiming) normal init for ReLU nets.

    .. math:: W \\sim \\mathcal{N}(0, 2 / \\text{fan\\_in})

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    fan_in : int
        Inputs feeding one output (C_in/groups * KH * KW for a conv).
    """
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)
