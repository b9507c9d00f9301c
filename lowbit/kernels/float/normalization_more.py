"""fp32 InstanceNormalization and GroupNormalization, on the row kernel of :mod:`.layer_norm`."""
from __future__ import annotations

import math

import numpy as np

from .layer_norm import affine_param, float_input, normalize_rows


def _channels_first(op: str, x, min_rank=2):
    if np.ndim(x) < min_rank:
        raise ValueError(f"{op}: expected an (N, C, D1, ...) input, got shape {np.shape(x)}")
    dtype = np.asarray(x).dtype
    x = float_input(op, x)
    return x, dtype, x.shape[0], x.shape[1], math.prod(x.shape[2:])


def instance_normalization(x, scale, b, *, epsilon=1e-5):
    """ONNX ``InstanceNormalization``.

    Per image ``n`` and channel ``c``, over the spatial axes:
    ``y = scale[c] * (x - mean[n, c]) / sqrt(var[n, c] + epsilon) + b[c]``
    (biased variance, statistics in float64).

    Parameters
    ----------
    x : ndarray
        Float ``(N, C, D1, ..., Dk)``, k >= 1.
    scale, b : ndarray
        ``(C,)``.
    epsilon : float

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    # Rank >= 3 as in onnxruntime (a rank-2 input would have one value per instance).
    x, dtype, n, c, spatial = _channels_first("InstanceNormalization", x, min_rank=3)
    g = affine_param("InstanceNormalization", "scale", scale, (c,))
    h = affine_param("InstanceNormalization", "B", b, (c,))
    y, _, _ = normalize_rows(x.reshape(n * c, spatial), g, h, float(epsilon), c, 1, spatial)
    return y.reshape(x.shape).astype(dtype, copy=False)


def group_normalization(x, scale, bias, *, epsilon=1e-5, num_groups=None, stash_type=1, per_group=0):
    """ONNX ``GroupNormalization`` (opset 21 form; opset 18 through ``per_group``).

    The ``C`` channels are split into ``num_groups`` groups of ``C/G``
    consecutive channels; per image and group, over its channels and spatial
    axes: ``y = (x - mean) / sqrt(var + epsilon) * scale[c] + bias[c]``
    (biased variance, statistics in float64 whatever ``stash_type`` says).

    Parameters
    ----------
    x : ndarray
        Float ``(N, C, D1, ..., Dk)``.
    scale, bias : ndarray
        ``(C,)``; ``(num_groups,)`` when ``per_group`` is set.
    epsilon : float
    num_groups : int
        Required; must divide ``C``.
    stash_type : int
        Precision of the statistics in the ONNX spec (float64 is used).
    per_group : int
        lowbit attribute set by the importer for opset 18-20 models, whose
        scale and bias hold one value per group.

    Returns
    -------
    ndarray
        Same shape and dtype as ``x``.
    """
    x, dtype, n, c, spatial = _channels_first("GroupNormalization", x)
    if num_groups is None or int(num_groups) < 1 or c % int(num_groups):
        raise ValueError(f"GroupNormalization: num_groups must be a positive divisor of the {c} channels "
                         f"of input {x.shape}, got {num_groups!r}")
    groups = int(num_groups)
    size = groups if per_group else c
    what = "num_groups" if per_group else "C"
    if np.size(scale) != size or np.size(bias) != size:
        raise ValueError(f"GroupNormalization: scale and bias must have {size} values ({what}) for input "
                         f"{x.shape} and num_groups={groups}, got shapes {np.shape(scale)} and {np.shape(bias)}")
    g = affine_param("GroupNormalization", "scale", np.reshape(scale, -1), (size,))
    h = affine_param("GroupNormalization", "bias", np.reshape(bias, -1), (size,))
    length = (c // groups) * spatial
    if per_group:
        y, _, _ = normalize_rows(x.reshape(n * groups, length), g, h, float(epsilon), groups, 1, length)
    else:
        y, _, _ = normalize_rows(x.reshape(n * groups, length), g, h, float(epsilon), groups, c // groups, spatial)
    return y.reshape(x.shape).astype(dtype, copy=False)
