"""Naive oracle for Resize (opset 19 form), written from the ONNX spec.

Plain Python loops and float64 arithmetic, independent of ``lowbit``: each
output element is the sum, over every combination of taps along the resized
axes, of the product of the per-axis weights times the input value (the
spec's N-linear / N-cubic "weighted average of a neighbourhood"), not a
separable pass per axis as the kernels do.  Slow on purpose; use small inputs.

Where the spec text leaves a point open, the oracle follows the expected data
of the ONNX backend cases: the resized length in ``align_corners``,
``pytorch_half_pixel`` and ``tf_crop_and_resize`` is the target length
``scale * length_original`` (fractional when it comes from a scale factor),
and taps outside the input take the edge value (unless ``exclude_outside``).
"""
from __future__ import annotations

import math

import numpy as np


def _cubic(t, a):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def _linear(t):
    return max(0.0, 1.0 - abs(t))


def _source(mode, y, scale, n_in, n_out, start, end):
    length = scale * n_in          # the target length (fractional for a fractional scale)
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / length)
        return offset + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if length > 1 else 0.0
    if mode == "align_corners":
        return 0.0 if length == 1 else y * (n_in - 1) / (length - 1)
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        if length == 1:
            return 0.5 * (start + end) * (n_in - 1)
        return start * (n_in - 1) + y * (end - start) * (n_in - 1) / (length - 1)
    raise ValueError(mode)


def _nearest(x, nearest_mode):
    fl = math.floor(x)
    frac = x - fl
    if nearest_mode == "floor":
        return fl
    if nearest_mode == "ceil":
        return math.ceil(x)
    if frac == 0.5:
        return fl if nearest_mode == "round_prefer_floor" else fl + 1
    return fl if frac < 0.5 else fl + 1


def _axis_taps(n_in, n_out, scale, start, end, mode, ctm, nearest_mode, a, exclude_outside, antialias):
    """Per output index: None (extrapolated) or a list of (input index, weight)."""
    taps = []
    for y in range(n_out):
        x = _source(ctm, float(y), scale, n_in, n_out, start, end)
        if ctm == "tf_crop_and_resize" and (x < 0 or x > n_in - 1):
            taps.append(None)
            continue
        if mode == "nearest":
            taps.append([(min(max(_nearest(x, nearest_mode), 0), n_in - 1), 1.0)])
            continue
        s = min(scale, 1.0) if antialias else 1.0     # antialias stretches the filter by 1/scale
        support = 1.0 if mode == "linear" else 2.0
        lo, hi = math.floor(x - support / s) - 1, math.ceil(x + support / s) + 1
        pairs = []
        for i in range(lo, hi + 1):
            t = (i - x) * s
            w = _linear(t) if mode == "linear" else _cubic(t, a)
            if w == 0.0:
                continue
            if exclude_outside and not 0 <= i < n_in:
                continue
            pairs.append((min(max(i, 0), n_in - 1), w))
        if antialias or exclude_outside:
            total = sum(w for _, w in pairs)
            pairs = [(i, w / total) for i, w in pairs]
        taps.append(pairs)
    return taps


def output_shape(shape, scales=None, sizes=None, axes=None, keep_aspect_ratio_policy="stretch"):
    """Output shape and per-axis scale, from the spec."""
    rank = len(shape)
    axes = list(range(rank)) if axes is None else [a % rank for a in axes]
    out, scale = list(shape), [1.0] * rank
    if sizes is not None:
        ratios = [sizes[i] / shape[d] for i, d in enumerate(axes)]
        if keep_aspect_ratio_policy == "stretch":
            for i, d in enumerate(axes):
                out[d], scale[d] = int(sizes[i]), ratios[i]
        else:
            s = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
            for d in axes:
                out[d], scale[d] = int(math.floor(s * shape[d] + 0.5)), s
    else:
        for i, d in enumerate(axes):
            scale[d] = float(scales[i])
            out[d] = int(math.floor(shape[d] * scale[d]))
    return out, scale, axes


def resize(x, roi=None, scales=None, sizes=None, *, mode="nearest", coordinate_transformation_mode="half_pixel",
           nearest_mode="round_prefer_floor", cubic_coeff_a=-0.75, exclude_outside=0, extrapolation_value=0.0,
           antialias=0, axes=None, keep_aspect_ratio_policy="stretch"):
    """Resize ``x`` (float64 result); ``roi``/``scales``/``sizes`` as in Resize-19 (None when absent)."""
    x = np.asarray(x, dtype=np.float64)
    rank = x.ndim
    out, scale, axes = output_shape(x.shape, scales, sizes, axes, keep_aspect_ratio_policy)
    starts, ends = [0.0] * rank, [1.0] * rank
    if roi is not None and len(roi):
        k = len(axes)
        for i, d in enumerate(axes):
            starts[d], ends[d] = float(roi[i]), float(roi[k + i])
    taps = [_axis_taps(x.shape[d], out[d], scale[d], starts[d], ends[d], mode, coordinate_transformation_mode,
                       nearest_mode, cubic_coeff_a, exclude_outside, antialias) for d in range(rank)]
    y = np.zeros(out)
    for index in np.ndindex(*out):
        per_axis = [taps[d][index[d]] for d in range(rank)]
        if any(t is None for t in per_axis):
            y[index] = extrapolation_value
            continue
        total = 0.0
        for combo in _product(per_axis):
            w = 1.0
            src = []
            for i, wi in combo:
                w *= wi
                src.append(i)
            total += w * x[tuple(src)]
        y[index] = total
    return y


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head,) + rest
