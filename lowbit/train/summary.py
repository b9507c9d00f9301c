"""Per-layer shapes, parameter counts and multiply-accumulates of a net."""
from __future__ import annotations

import numpy as np

from lowbit.train.layers import Affine, Conv


def summary(net):
    """One row per node: name, layer type, output shape, params, MACs (for one image).

    MACs count multiplies of Conv and Affine:

    .. math:: \\text{MACs}_{conv} = C_{out} H_{out} W_{out} \\cdot \\frac{C_{in}}{g} k^2, \\qquad
              \\text{MACs}_{affine} = K_{in} K_{out}

    Returns
    -------
    list of dict
    """
    values = {net.INPUT: np.zeros((1, *net.input_shape), np.float32)}
    rows = []
    for name, layer, inputs in net.nodes:
        y = layer.forward(*(values[i] for i in inputs))
        values[name] = y
        params = int(sum(v.size for v in layer.params.values()))
        macs = 0
        if isinstance(layer, Conv):
            macs = int(y.size * layer.params["W"][0].size)
        elif isinstance(layer, Affine):
            macs = int(layer.params["W"].size)
        rows.append(dict(name=name, type=type(layer).__name__, shape=tuple(y.shape[1:]), params=params, macs=macs))
    return rows
