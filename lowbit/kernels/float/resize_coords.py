"""Resize geometry: the output shape, and per resized axis the source taps and their weights.

Everything here is per axis and small (one entry per output index), so it is
plain numpy in float64; :mod:`lowbit.kernels.float.resize` applies the taps.
The formulas are those of ONNX Resize-19 (opset 10/11/13/18 are special
cases of it).  Two points the spec text leaves open follow the ONNX backend
cases' expected data, which onnxruntime matches except where noted:

* ``length_resized`` in ``align_corners``, ``pytorch_half_pixel`` and
  ``tf_crop_and_resize`` is the target length ``scale * length_original``,
  fractional when it comes from a non-integral scale (onnxruntime uses the
  integer output length there, so the two differ for such scales);
* taps outside the input read the edge value (``exclude_outside=1`` drops
  them and renormalises instead).
"""
from __future__ import annotations

import math

import numpy as np

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_crop_and_resize", "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _vector(value, dtype):
    """``value`` as a 1-D array, or None for an omitted or empty input."""
    if value is None:
        return None
    value = np.asarray(value, dtype=dtype).reshape(-1)
    return value if value.size else None


def output_geometry(op, shape, roi, scales, sizes, axes, keep_aspect_ratio_policy):
    """Output shape, per-axis scale and per-axis roi ``(start, end)`` of a Resize.

    ``output = floor(input * scale)`` when scales are given; with sizes,
    ``scale = size / input`` (``keep_aspect_ratio_policy`` ``not_larger`` /
    ``not_smaller``: one scale, the min / max of those, and
    ``output = floor(scale * input + 0.5)`` on every axis in ``axes``).
    The roi of an axis outside ``axes`` is ``(0, 1)``.

    Raises
    ------
    ValueError
        Naming the input that is missing, misshaped or out of range.
    """
    rank = len(shape)
    if axes is None:
        axes = list(range(rank))
    else:
        axes = [int(a) for a in axes]
        if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
            raise ValueError(f"{op}: axes {tuple(axes)} must be distinct axes of a rank-{rank} input")
        axes = [a % rank for a in axes]
    scales, sizes = _vector(scales, np.float64), _vector(sizes, np.int64)
    if (scales is None) == (sizes is None):
        raise ValueError(f"{op}: exactly one of 'scales' and 'sizes' must be given (non-empty); got "
                         f"{'both' if scales is not None else 'neither'}")
    given = scales if scales is not None else sizes
    if len(given) != len(axes):
        raise ValueError(f"{op}: '{'scales' if scales is not None else 'sizes'}' has {len(given)} entries;"
                         f" expected {len(axes)} (one per resized axis of input shape {tuple(shape)})")
    out, scale = list(shape), [1.0] * rank
    if scales is not None:
        if not np.all(scales > 0) or not np.all(np.isfinite(scales)):
            raise ValueError(f"{op}: scales must be finite and > 0, got {tuple(scales.tolist())}")
        for s, d in zip(scales, axes):
            scale[d] = float(s)
            out[d] = int(math.floor(shape[d] * float(s)))
    else:
        if np.any(sizes < 0) or any(shape[d] == 0 and n != 0 for n, d in zip(sizes, axes)):
            raise ValueError(f"{op}: sizes {tuple(sizes.tolist())} must be >= 0 (and 0 where the input"
                             f" shape {tuple(shape)} has 0)")
        ratios = [int(n) / shape[d] if shape[d] else 1.0 for n, d in zip(sizes, axes)]
        if keep_aspect_ratio_policy == "stretch":
            for n, r, d in zip(sizes, ratios, axes):
                out[d], scale[d] = int(n), r
        elif keep_aspect_ratio_policy in ("not_larger", "not_smaller"):
            s = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
            for d in axes:
                out[d], scale[d] = int(math.floor(s * shape[d] + 0.5)), s
        else:
            raise ValueError(f"{op}: keep_aspect_ratio_policy {keep_aspect_ratio_policy!r}; expected one of"
                             f" {', '.join(ASPECT_POLICIES)}")
    starts, ends = [0.0] * rank, [1.0] * rank
    roi = _vector(roi, np.float64)
    if roi is not None:
        if len(roi) != 2 * len(axes):
            raise ValueError(f"{op}: roi has {len(roi)} entries; expected {2 * len(axes)} (starts then ends"
                             f" of the resized axes)")
        for i, d in enumerate(axes):
            starts[d], ends[d] = float(roi[i]), float(roi[len(axes) + i])
    return tuple(out), scale, starts, ends


def source_coordinates(mode, n_in, n_out, scale, start=0.0, end=1.0):
    """Input coordinate ``x_original`` of every output index ``0..n_out-1`` along one axis (float64).

    ``half_pixel``: ``(y + 0.5) / scale - 0.5``; ``half_pixel_symmetric``: the
    same shifted by ``n_in / 2 * (1 - n_out / (scale * n_in))``;
    ``pytorch_half_pixel``: as ``half_pixel``, or 0 when the target length is
    1; ``align_corners``: ``y * (n_in - 1) / (length - 1)``; ``asymmetric``:
    ``y / scale``; ``tf_half_pixel_for_nn`` (opset 11): ``(y + 0.5) / scale``;
    ``tf_crop_and_resize``: ``start * (n_in - 1) + y * (end - start) * (n_in - 1) / (length - 1)``,
    with ``length = scale * n_in``.
    """
    y = np.arange(n_out, dtype=np.float64)
    length = scale * n_in
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        return n_in / 2 * (1 - n_out / length) + (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (y + 0.5) / scale - 0.5 if length > 1 else np.zeros(n_out)
    if mode == "align_corners":
        return np.zeros(n_out) if length == 1 else y * ((n_in - 1) / (length - 1))
    if mode == "asymmetric":
        return y / scale
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "tf_crop_and_resize":
        if length == 1:
            return np.full(n_out, 0.5 * (start + end) * (n_in - 1))
        return start * (n_in - 1) + y * ((end - start) * (n_in - 1) / (length - 1))
    raise ValueError(f"unknown coordinate_transformation_mode {mode!r}")


def nearest_indices(x, nearest_mode, n_in):
    """Input index picked by ``nearest_mode`` for each coordinate, clamped to ``[0, n_in)`` (int64)."""
    if nearest_mode == "round_prefer_floor":
        index = np.ceil(x - 0.5)
    elif nearest_mode == "round_prefer_ceil":
        index = np.floor(x + 0.5)
    elif nearest_mode == "floor":
        index = np.floor(x)
    else:
        index = np.ceil(x)
    return np.clip(index, 0, n_in - 1).astype(np.int64)


def _cubic_weights(t, a):
    t = np.abs(t)
    inner = ((a + 2) * t - (a + 3)) * t * t + 1
    outer = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, inner, np.where(t < 2, outer, 0.0))


def filter_taps(x, n_in, scale, mode, cubic_coeff_a=-0.75, antialias=0, exclude_outside=0):
    """Taps and weights of linear or cubic interpolation at coordinates ``x`` along one axis.

    Returns ``(index, weight)``, both ``(len(x), taps)``: ``out[o] = sum_t weight[o, t] * in[index[o, t]]``.
    The weight of input ``i`` is ``k((i - x) * s)`` with ``k`` the tent
    ``max(0, 1 - |t|)`` or the cubic kernel of coefficient ``a``, and
    ``s = min(scale, 1)`` with ``antialias`` (the filter stretched by
    ``1 / scale`` when shrinking), else 1.  Indices outside the input are
    clamped to the edge; ``exclude_outside`` gives them weight 0 instead.
    With ``antialias`` or ``exclude_outside`` the weights are divided by their sum.
    """
    support = 1.0 if mode == "linear" else 2.0
    stretch = 1.0 / min(scale, 1.0) if antialias else 1.0
    reach = support * stretch
    taps = max(1, int(math.ceil(2 * reach)))
    first = np.floor(x - reach) + 1           # the first input index strictly inside the filter's reach
    index = first[:, None].astype(np.int64) + np.arange(taps)
    t = (index - x[:, None]) / stretch
    weight = np.maximum(0.0, 1.0 - np.abs(t)) if mode == "linear" else _cubic_weights(t, cubic_coeff_a)
    if exclude_outside:
        weight = np.where((index < 0) | (index >= n_in), 0.0, weight)
    if antialias or exclude_outside:
        total = weight.sum(axis=1, keepdims=True)
        weight = weight / np.where(total == 0, 1.0, total)
    return np.clip(index, 0, n_in - 1), weight


def outside(mode, x, n_in):
    """Mask of the coordinates that ``tf_crop_and_resize`` extrapolates (outside ``[0, n_in - 1]``), or None."""
    if mode != "tf_crop_and_resize":
        return None
    mask = (x < 0) | (x > n_in - 1)
    return mask if mask.any() else None
