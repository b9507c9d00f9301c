"""fp32 resampling: Resize (opsets 10-19, in its opset-19 form) and Upsample (opsets 7 and 9).

The importer rewrites Resize-10 ``(X, scales)`` into ``(X, roi="", scales)``
with ``coordinate_transformation_mode="asymmetric"``; Upsample is Resize with
that transform and ``nearest_mode="floor"``.  The geometry (output shape,
per-axis coordinates, taps and weights) comes from
:mod:`lowbit.kernels.float.resize_coords`; this module applies it:

* nearest: a gather per axis; when only the last two axes change, one Numba
  pass over the (N*C) planes that gathers each output row once and copies
  it where the next output row reads the same source row;
* linear without antialias on the last two axes (bilinear NCHW): one Numba
  pass per plane, each output row blended from two horizontally
  interpolated source rows that are kept while consecutive output rows share
  them;
* everything else (cubic, antialias, other axes): one separable Numba pass
  per resized axis, the axis that shrinks most first.

Work is split over planes (rows), each written by one thread from its own
inputs in a fixed order, so results do not depend on the number of threads.
Float32 and float64 compute in their own precision, float16 in float32;
integer inputs interpolate in float64 and round half to even, saturating.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.float import resize_coords as geo


@jit(multithread=True)
def _nearest_planes(x, out, iy, ix):
    # x: (planes, H, W), out: (planes, OH, OW); out[p, o, q] = x[p, iy[o], ix[q]]; an output
    # row whose source row repeats the previous one's is copied.  (Filling integer factors
    # without index loads measured no faster than this gather, 1x64x160x160 at 2x.)
    out_h, out_w = out.shape[1], out.shape[2]
    for p in prange(x.shape[0]):
        for o in range(out_h):
            dst = out[p, o]
            if o > 0 and iy[o] == iy[o - 1]:
                dst[:] = out[p, o - 1]
                continue
            src = x[p, iy[o]]
            for q in range(out_w):
                dst[q] = src[ix[q]]


@jit
def _blend_row(src, dst, ix0, ix1, wx0, wx1):
    for q in range(dst.shape[0]):
        dst[q] = wx0[q] * src[ix0[q]] + wx1[q] * src[ix1[q]]


@jit(multithread=True)
def _bilinear_planes(x, out, iy0, iy1, wy0, wy1, ix0, ix1, wx0, wx1):
    # out[p, o, q] = wy0[o] * h(iy0[o])[q] + wy1[o] * h(iy1[o])[q], with
    # h(r)[q] = wx0[q] * x[p, r, ix0[q]] + wx1[q] * x[p, r, ix1[q]].  The two
    # h rows are cached by source row: consecutive output rows mostly share them.
    out_h, out_w = out.shape[1], out.shape[2]
    for p in prange(x.shape[0]):
        rows = np.empty((2, out_w), dtype=out.dtype)
        have0, have1 = -1, -1
        for o in range(out_h):
            r0, r1 = iy0[o], iy1[o]
            if r0 != have0 and r0 == have1:     # slide: the lower row becomes the upper one
                rows[0, :] = rows[1, :]
                have0 = r0
            if r0 != have0:
                _blend_row(x[p, r0], rows[0], ix0, ix1, wx0, wx1)
                have0 = r0
            if r1 != have1:
                if r1 == r0:
                    rows[1, :] = rows[0, :]
                else:
                    _blend_row(x[p, r1], rows[1], ix0, ix1, wx0, wx1)
                have1 = r1
            dst = out[p, o]
            a, b = wy0[o], wy1[o]
            for q in range(out_w):
                dst[q] = a * rows[0, q] + b * rows[1, q]


@jit(multithread=True)
def _resample_last(x, out, index, weight):
    # x: (rows, n_in), out: (rows, n_out); out[r, o] = sum_t weight[o, t] * x[r, index[o, t]].
    taps = index.shape[1]
    for r in prange(x.shape[0]):
        src, dst = x[r], out[r]
        for o in range(out.shape[1]):
            acc = weight[o, 0] * src[index[o, 0]]
            for t in range(1, taps):
                acc += weight[o, t] * src[index[o, t]]
            dst[o] = acc


@jit(multithread=True)
def _resample_middle(x, out, index, weight):
    # x: (outer, n_in, inner), out: (outer, n_out, inner): one output row
    # out[q, o, :] = sum_t weight[o, t] * x[q, index[o, t], :] per work item.
    n_out, taps = out.shape[1], index.shape[1]
    for item in prange(out.shape[0] * n_out):
        q, o = item // n_out, item % n_out
        dst = out[q, o]
        src = x[q, index[o, 0]]
        w = weight[o, 0]
        for k in range(dst.shape[0]):
            dst[k] = w * src[k]
        for t in range(1, taps):
            src = x[q, index[o, t]]
            w = weight[o, t]
            for k in range(dst.shape[0]):
                dst[k] += w * src[k]


def _as_bits(x):
    """``x`` reinterpreted as unsigned integers of its item size (nearest only moves values)."""
    return x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.itemsize in (1, 2, 4, 8) else x


def _nearest(x, out_shape, picks):
    """Gather ``x`` at ``picks`` ({axis: int64 indices})."""
    rank = x.ndim
    if rank >= 2 and set(picks) <= {rank - 2, rank - 1} and x.dtype.itemsize in (1, 2, 4, 8):
        height, width = x.shape[-2:]
        iy = picks.get(rank - 2, np.arange(height, dtype=np.int64))
        ix = picks.get(rank - 1, np.arange(width, dtype=np.int64))
        src = _as_bits(np.ascontiguousarray(x)).reshape(-1, height, width)
        out = np.empty((src.shape[0],) + tuple(out_shape[-2:]), dtype=src.dtype)
        _nearest_planes(src, out, iy, ix)
        return out.view(x.dtype).reshape(out_shape)
    for axis, index in picks.items():
        x = np.take(x, index, axis=axis)
    return np.ascontiguousarray(x)


def _two_taps(index, weight, dtype):
    return (np.ascontiguousarray(index[:, 0]), np.ascontiguousarray(index[:, 1]),
            np.ascontiguousarray(weight[:, 0], dtype=dtype), np.ascontiguousarray(weight[:, 1], dtype=dtype))


def _interpolate(x, out_shape, filters):
    """Apply ``filters`` ({axis: (index, weight)}) to float ``x``."""
    rank = x.ndim
    if (rank >= 2 and set(filters) == {rank - 2, rank - 1}
            and all(index.shape[1] == 2 for index, _ in filters.values())):
        height, width = x.shape[-2:]
        src = np.ascontiguousarray(x).reshape(-1, height, width)
        out = np.empty((src.shape[0],) + tuple(out_shape[-2:]), dtype=x.dtype)
        _bilinear_planes(src, out, *_two_taps(*filters[rank - 2], x.dtype), *_two_taps(*filters[rank - 1], x.dtype))
        return out.reshape(out_shape)
    # Separable passes, the axis that shrinks the tensor most first (less work for the others).
    for axis in sorted(filters, key=lambda a: (out_shape[a] / x.shape[a], a)):
        index, weight = filters[axis]
        weight = np.ascontiguousarray(weight, dtype=x.dtype)
        shape = x.shape
        outer, inner = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis + 1:], dtype=np.int64))
        src = np.ascontiguousarray(x)
        out = np.empty(shape[:axis] + (out_shape[axis],) + shape[axis + 1:], dtype=x.dtype)
        if inner == 1:
            _resample_last(src.reshape(outer, shape[axis]), out.reshape(outer, out_shape[axis]), index, weight)
        else:
            _resample_middle(src.reshape(outer, shape[axis], inner), out.reshape(outer, out_shape[axis], inner),
                             index, weight)
        x = out
    return x


def _resize(op, x, roi, scales, sizes, *, antialias, axes, coordinate_transformation_mode, cubic_coeff_a,
            exclude_outside, extrapolation_value, keep_aspect_ratio_policy, mode, nearest_mode):
    x = np.asarray(x)
    for name, value, allowed in (("mode", mode, geo.MODES),
                                 ("coordinate_transformation_mode", coordinate_transformation_mode,
                                  geo.COORDINATE_MODES),
                                 ("nearest_mode", nearest_mode, geo.NEAREST_MODES)):
        if value not in allowed:
            raise ValueError(f"{op}: {name} {value!r}; expected one of {', '.join(allowed)}")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have at least one axis, got a scalar")
    if mode != "nearest" and x.dtype.kind not in "fiu":
        raise ValueError(f"{op}: mode {mode!r} interpolates numeric tensors, got dtype {x.dtype}")
    out_shape, scale, starts, ends = geo.output_geometry(op, x.shape, roi, scales, sizes, axes,
                                                         keep_aspect_ratio_policy)
    if 0 in out_shape or x.size == 0:
        return np.empty(out_shape, dtype=x.dtype)
    coords, masks = {}, {}
    for axis in range(x.ndim):
        n_in, n_out = x.shape[axis], out_shape[axis]
        coord = geo.source_coordinates(coordinate_transformation_mode, n_in, n_out, scale[axis],
                                       starts[axis], ends[axis])
        mask = geo.outside(coordinate_transformation_mode, coord, n_in)
        if mask is not None:
            masks[axis] = mask
        if n_out != n_in or mask is not None or not np.array_equal(coord, np.arange(n_in)):
            coords[axis] = coord
    if mode == "nearest":
        picks = {axis: geo.nearest_indices(c, nearest_mode, x.shape[axis]) for axis, c in coords.items()}
        picks = {axis: p for axis, p in picks.items() if out_shape[axis] != x.shape[axis]
                 or not np.array_equal(p, np.arange(x.shape[axis]))}
        y = _nearest(x, out_shape, picks)
    else:
        work = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32 if x.dtype.kind == "f" else np.float64)
        filters = {axis: geo.filter_taps(c, x.shape[axis], scale[axis], mode, cubic_coeff_a, antialias,
                                         exclude_outside) for axis, c in coords.items()}
        y = _interpolate(work, out_shape, filters)
    if masks:
        y = np.array(y, copy=True) if y is x else y
        fill = extrapolation_value
        for axis, mask in masks.items():
            y[(slice(None),) * axis + (mask,)] = fill
    if y.dtype != x.dtype:
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            y = np.clip(np.rint(y), info.min, info.max)
        y = y.astype(x.dtype)
    return y if y is not x else x.copy()


def resize(x, roi=None, scales=None, sizes=None, *, antialias=0, axes=None,
           coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75, exclude_outside=0,
           extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode="nearest",
           nearest_mode="round_prefer_floor"):
    """ONNX Resize (opset 19 form; older forms are rewritten to it on import).

    Each output element is a weighted sum of input elements, separable over the
    resized axes.  Along an axis of input length ``n_in``, output index ``y``
    maps to the input coordinate ``x = T(y)`` of ``coordinate_transformation_mode``
    (e.g. ``half_pixel``: ``x = (y + 0.5) / scale - 0.5``; see
    :func:`~lowbit.kernels.float.resize_coords.source_coordinates`); then

    * ``nearest``: ``in[clamp(round(x))]``, ``round`` per ``nearest_mode``;
    * ``linear``: ``sum_i max(0, 1 - |i - x|) * in[clamp(i)]``;
    * ``cubic``: ``sum_i k_a(i - x) * in[clamp(i)]`` with the Keys kernel
      ``k_a(t) = (a+2)|t|^3 - (a+3)|t|^2 + 1`` for ``|t| <= 1``,
      ``a|t|^3 - 5a|t|^2 + 8a|t| - 4a`` for ``1 < |t| < 2``, 0 beyond.

    Parameters
    ----------
    x : ndarray
        Input of any rank.
    roi : ndarray, optional
        ``[start_1, ..., start_k, end_1, ..., end_k]`` over the resized axes,
        normalised; used by ``tf_crop_and_resize`` only.
    scales : ndarray, optional
        One factor > 0 per resized axis; ``out = floor(in * scale)``.
    sizes : ndarray, optional
        Output length per resized axis (``scale = size / in``).  Exactly one of
        ``scales`` and ``sizes`` is given; an empty tensor counts as omitted.
    antialias : int
        1: linear/cubic filters stretched by ``1 / scale`` when shrinking
        (``k((i - x) * scale)``, weights normalised to sum 1).
    axes : sequence of int, optional
        The axes ``roi``/``scales``/``sizes`` refer to (default: all).
    coordinate_transformation_mode : str
        ``half_pixel`` (default), ``half_pixel_symmetric``, ``pytorch_half_pixel``,
        ``align_corners``, ``asymmetric``, ``tf_crop_and_resize``, and opset 11's
        ``tf_half_pixel_for_nn``.
    cubic_coeff_a : float
        ``a`` of the cubic kernel (default -0.75).
    exclude_outside : int
        1: taps outside the input get weight 0 and the rest are renormalised
        (otherwise they read the edge value).
    extrapolation_value : float
        Output where ``tf_crop_and_resize`` maps outside ``[0, n_in - 1]``.
    keep_aspect_ratio_policy : str
        With ``sizes``: ``stretch`` (default), ``not_larger`` or ``not_smaller``
        (one scale for all resized axes, the min / max of ``size / in``;
        ``out = floor(scale * in + 0.5)``).
    mode : str
        ``nearest`` (default), ``linear`` or ``cubic``.
    nearest_mode : str
        ``round_prefer_floor`` (default), ``round_prefer_ceil``, ``floor``, ``ceil``.

    Returns
    -------
    ndarray
        Same dtype as ``x``.
    """
    return _resize("Resize", x, roi, scales, sizes, antialias=antialias, axes=axes,
                   coordinate_transformation_mode=coordinate_transformation_mode, cubic_coeff_a=cubic_coeff_a,
                   exclude_outside=exclude_outside, extrapolation_value=extrapolation_value,
                   keep_aspect_ratio_policy=keep_aspect_ratio_policy, mode=mode, nearest_mode=nearest_mode)


def upsample(x, scales=None, *, mode="nearest"):
    """ONNX Upsample: opset 7 (``scales`` attribute) and opset 9 (``scales`` input).

    Resize with ``coordinate_transformation_mode="asymmetric"``
    (``x = y / scale``) and, for ``nearest``, ``nearest_mode="floor"``:
    ``out[y] = in[floor(y / scale)]``; ``linear`` interpolates between
    ``floor(x)`` and ``floor(x) + 1`` (clamped).  ``out = floor(in * scale)``.

    Parameters
    ----------
    x : ndarray
        Input of any rank.
    scales : sequence of float or ndarray
        One factor >= 1 per axis of ``x``.
    mode : str
        ``nearest`` (default) or ``linear``.
    """
    if scales is None:
        raise ValueError("Upsample: 'scales' is required (an attribute in opset 7, an input in opset 9)")
    values = np.asarray(scales, dtype=np.float64).reshape(-1)
    x = np.asarray(x)
    if values.size != x.ndim or not np.all(values >= 1):
        raise ValueError(f"Upsample: scales {tuple(values.tolist())} must hold one factor >= 1 per axis of"
                         f" input shape {x.shape}")
    if mode not in ("nearest", "linear"):
        raise ValueError(f"Upsample: mode {mode!r}; expected nearest or linear")
    return _resize("Upsample", x, None, values, None, antialias=0, axes=None,
                   coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.75, exclude_outside=0,
                   extrapolation_value=0.0, keep_aspect_ratio_policy="stretch", mode=mode, nearest_mode="floor")
