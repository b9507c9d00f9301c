"""Binary (XNOR / popcount) Conv on packed signs, and the fused BatchNorm + sign variant.

For +-1 vectors stored as sign bits, ``a . w = K - 2 * popcount(a XOR w)``.  A
binary conv has no zero to pad with; lowbit counts only the taps inside the
input (what a net trained with zero padding on binarized activations
computes), so for output position ``p``::

    dot[n, m, p] = T(p) * C - 2 * sum_{in-bounds taps (i, j)} sum_words popcount(x_word ^ w_word)

where ``T(p)`` is the number of in-bounds taps.

How it is computed.  The wrapper copies the packed input into a zero-padded
(+1) buffer laid out ``(N, Hp, words, sW, U)``: padded column ``w = u * sW + r``
goes to ``[..., r, u]``, so for any tap ``(i, j)`` and word ``k`` consecutive
output positions of a row read consecutive uint64s (stride and dilation only
change the start).  The register tile of :mod:`lowbit.kernels.binary.tile`
(LANES = 8 positions x TMC = 4 output channels, the reduction over taps x
words inside) then runs unchanged on every window, border included.  A padded tap adds
``popcount(0 ^ w) = popcount(w[m, tap])`` to the count; which taps are padded
depends only on the row's and the column's class (the set of in-bounds kernel
rows / columns), so the wrapper tabulates ``base[row class, m, ow] = T * C +
2 * (popcount added by the padded taps)`` and the tile returns
``dot = base - 2 * count``: no position branches.  Parallel tasks are
contiguous chunks of (image, output row) pairs; inside a row, blocks of TMC
output channels, then runs of LANES positions.
"""
from __future__ import annotations

import functools

import numba
import numpy as np

from lowbit.config import jit
from lowbit.kernels.binary.common import check_packed, n_words, window, word_masks
from lowbit.kernels.binary.tile import LANES, TMC, conv_kernel, conv_sign_kernel

assert 64 % TMC == 0  # a channel block never straddles two output words

#: Parallel chunks per thread (several, so a slow thread does not hold up the rest).
_CHUNKS_PER_THREAD = 16


@jit
def _layout_kernel(x, masks, pad_top, pad_left, stride_w, out):
    """``out[n, pad_top + h, k, (pad_left + w) % sW, (pad_left + w) // sW] = x[n, h, w, k] & masks[k]``.

    Serial on purpose: one pass over the packed input, small next to the conv's
    ``kH * kW * M / TMC`` passes, and too short to pay for waking the thread pool.
    """
    n_img, height, width, words = x.shape
    for n in range(n_img):
        for h in range(height):
            for k in range(words):
                r = pad_left % stride_w
                u = pad_left // stride_w
                for w in range(width):
                    out[n, pad_top + h, k, r, u] = x[n, h, w, k] & masks[k]
                    r += 1
                    if r == stride_w:
                        r = 0
                        u += 1


def _classes(size, out, kernel, stride, dilation, pad_begin):
    """Per output index, the class of its window (the tuple of in-bounds kernel offsets)."""
    patterns, index = {}, np.empty(out, dtype=np.int64)
    for o in range(out):
        key = tuple(0 <= o * stride - pad_begin + i * dilation < size for i in range(kernel))
        index[o] = patterns.setdefault(key, len(patterns))
    return index, np.array(list(patterns), dtype=bool).reshape(len(patterns), kernel)


@functools.lru_cache(maxsize=64)
def _geometry(height, width, words, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ho, wo):
    """Everything that depends on shapes only (read-only arrays, cached per layer shape).

    Returns ``(hp, u_len, row_len, wo_pad, offs, row_class, col_class, outside, taps)``:
    the padded input's layout (see the module docstring), ``offs[q]`` the offset of
    (tap, word) ``q = (i * kW + j) * words + k`` from a position's start, the row
    and column classes, per pair of classes the padded taps ``outside[rc, cc, i, j]``
    and the in-bounds tap count ``taps[rc, cc]``.
    """
    hp, wp = height + pt + pb, width + pl + pr
    wo_pad = -(-wo // LANES) * LANES
    # U leaves room for the last run of LANES positions to read past the row end
    # (into zeros; those results are not used).
    u_len = max(-(-wp // sw), wo_pad + (kw - 1) * dw // sw)
    row_len = words * sw * u_len
    i, j, k = np.meshgrid(np.arange(kh), np.arange(kw), np.arange(words), indexing="ij")
    offs = i * dh * row_len + k * sw * u_len + (j * dw) % sw * u_len + (j * dw) // sw
    offs = np.ascontiguousarray(offs.reshape(-1), dtype=np.int64)
    row_class, row_ok = _classes(height, ho, kh, sh, dh, pt)
    col_class, col_ok = _classes(width, wo, kw, sw, dw, pl)
    inside = row_ok[:, None, :, None] & col_ok[None, :, None, :]  # (rc, cc, kh, kw)
    outside = (~inside).astype(np.int64)
    taps = inside.sum(axis=(2, 3), dtype=np.int64)
    for a in (offs, row_class, col_class, outside, taps):
        a.flags.writeable = False
    return hp, u_len, row_len, wo_pad, offs, row_class, col_class, outside, taps


def _prepare(x_packed, w_packed, channels, kernel_shape, pads, strides, dilations):
    """Validate, lay out input and weights for the tile, tabulate the border.

    Returns the leading kernel arguments and ``(N, M, ho, wo)``.
    """
    x = check_packed("x_packed", x_packed, 4)
    w = check_packed("w_packed", w_packed, 4)
    channels = int(channels)
    words = n_words(channels)
    if channels < 1 or x.shape[3] != words:
        raise ValueError(f"channels={channels} needs {words} words per position; "
                         f"x_packed has shape {x.shape}")
    m_out, kh, kw, w_words = w.shape
    if tuple(int(k) for k in kernel_shape) != (kh, kw) or w_words != words:
        raise ValueError(f"w_packed of shape {w.shape} does not match kernel_shape {tuple(kernel_shape)} "
                         f"and {words} words per tap (channels={channels})")
    if kh * kw * channels >= 2 ** 31:
        raise ValueError(f"a {kh}x{kw} window over {channels} channels overflows the int32 dot products")
    n_img, height, width, _ = x.shape
    _, _, sh, sw, dh, dw, pt, pl, pb, pr, ho, wo = window((height, width), kernel_shape, pads, strides,
                                                          dilations)
    hp, u_len, row_len, wo_pad, offs, row_class, col_class, outside, taps = _geometry(
        height, width, words, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, ho, wo)
    masks = word_masks(channels)
    # Input: (N, Hp, words, sW, U), zero (+1) outside the image.
    xt = np.zeros((n_img, hp, words, sw, u_len), dtype=np.uint64)
    _layout_kernel(x, masks, pt, pl, sw, xt)
    # Weights: blocks of TMC channels, (M_pad / TMC, kH*kW*words, TMC), zero past M.
    m_pad = -(-m_out // TMC) * TMC
    wm = np.zeros((m_pad, kh, kw, words), dtype=np.uint64)
    wm[:m_out] = w & masks
    wt = np.ascontiguousarray(wm.reshape(m_pad // TMC, TMC, kh * kw * words).transpose(0, 2, 1)).reshape(-1)
    # Border table: base[rc, m, ow] = T * C + 2 * (popcount the padded taps added).
    pops = np.bitwise_count(wm).sum(axis=3, dtype=np.int64)  # (M_pad, kh, kw)
    per_class = taps[:, :, None] * channels + 2 * np.einsum("rcij,mij->rcm", outside, pops)
    base = np.zeros((taps.shape[0], m_pad, wo_pad), dtype=np.int64)
    base[:, :, :wo] = per_class[:, col_class, :].transpose(0, 2, 1)
    n_chunks = max(1, min(n_img * ho, _CHUNKS_PER_THREAD * numba.get_num_threads()))
    args = (xt.reshape(-1), offs, wt, base.reshape(-1), row_class, hp, row_len, sh, wo_pad, m_pad, n_chunks)
    return args, (n_img, m_out, ho, wo)


def binary_conv(x_packed, w_packed, *, channels, kernel_shape, pads=None, strides=None, dilations=None):
    """Binary 2-D convolution of packed signs; exact integer dot products.

    ``Y[n, m, oh, ow] = T * C - 2 * sum_{(i, j) in bounds} sum_k popcount(X[n, ih, iw, k] ^ W[m, i, j, k])``
    with ``ih = oh*sH - pad_top + i*dH``, ``iw = ow*sW - pad_left + j*dW`` and
    ``T`` the number of in-bounds taps: the +-1 dot product over the taps inside
    the input, padded taps contributing 0.  Multiply by the per-channel scale
    (alpha) outside.

    Parameters
    ----------
    x_packed : ndarray
        uint64 (N, H, W, ceil(C / 64)) from :func:`~lowbit.kernels.binary.pack_signs`.
    w_packed : ndarray
        uint64 (M, kH, kW, ceil(C / 64)) from :func:`~lowbit.kernels.binary.pack_weights`.
    channels : int
        C, input channels (bits per position).
    kernel_shape : sequence of int
        (kH, kW), as in ONNX.
    pads : sequence of int, optional
        ONNX ``[top, left, bottom, right]``; default no padding.
    strides, dilations : sequence of int, optional
        (sH, sW), (dH, dW); default 1.

    Returns
    -------
    ndarray
        int32 (N, M, oH, oW), C-contiguous.
    """
    args, shape = _prepare(x_packed, w_packed, channels, kernel_shape, pads, strides, dilations)
    out = np.empty(shape, dtype=np.int32)
    if out.size:
        conv_kernel(*args, out)
    return out


def binary_conv_sign(x_packed, w_packed, thresholds, flip, *, channels, kernel_shape, pads=None,
                     strides=None, dilations=None):
    """Binary conv fused with BatchNorm + sign: packed signs in, packed signs out.

    With ``dot`` as in :func:`binary_conv`, the output bit of channel ``m`` is::

        bit[n, oh, ow, m] = (dot[n, m, oh, ow] < thresholds[m]) XOR flip[m]

    and bit 1 means -1.  So with ``flip[m]`` false the output is -1 iff
    ``dot < thresholds[m]``; with ``flip[m]`` true it is -1 iff
    ``dot >= thresholds[m]``.  :func:`sign_thresholds` derives both arrays from
    an affine ``y = scale * dot + shift`` (BatchNorm folded with alpha).  The
    result is the next binary layer's packed input, no float in between.

    Parameters
    ----------
    x_packed, w_packed, channels, kernel_shape, pads, strides, dilations
        As in :func:`binary_conv`.
    thresholds : array_like of int
        (M,) integer thresholds (any values in int32 range).
    flip : array_like of bool
        (M,) per-channel inversion (bool or 0/1 integers).

    Returns
    -------
    ndarray
        uint64 (N, oH, oW, ceil(M / 64)), unused high bits 0.
    """
    args, (n_img, m_out, ho, wo) = _prepare(x_packed, w_packed, channels, kernel_shape, pads, strides,
                                            dilations)
    thr = np.asarray(thresholds)
    flp = np.asarray(flip)
    if thr.shape != (m_out,) or thr.dtype.kind not in "iu":
        raise ValueError(f"thresholds must be {m_out} integers (one per output channel); "
                         f"got {thr.dtype} with shape {thr.shape}")
    if flp.shape != (m_out,) or flp.dtype.kind not in "biu" or not np.isin(flp, (0, 1)).all():
        raise ValueError(f"flip must be {m_out} booleans (one per output channel); "
                         f"got {flp.dtype} with shape {flp.shape}")
    if thr.size and (thr.min() < np.iinfo(np.int32).min or thr.max() > np.iinfo(np.int32).max):
        raise ValueError("thresholds must fit in int32")
    # Channels past M (up to the tile's block) never set a bit: dot < int64 min is false.
    m_pad = args[-2]
    thr_pad = np.full(m_pad, np.iinfo(np.int64).min, dtype=np.int64)
    thr_pad[:m_out] = thr
    flip_pad = np.zeros(m_pad, dtype=np.int64)
    flip_pad[:m_out] = flp.astype(bool)
    out = np.empty((n_img, ho, wo, n_words(m_out)), dtype=np.uint64)
    if out.size:
        conv_sign_kernel(*args, thr_pad, flip_pad, out)
    return out


def sign_thresholds(scale, shift):
    """Integer thresholds and flips that reproduce ``sign(scale * dot + shift)`` on integer dots.

    For each channel, ``scale * dot + shift < 0`` (output -1, ``sign(0) = +1``)
    is rewritten as a comparison of the integer ``dot``:

    * ``scale > 0``: -1 iff ``dot < t`` with ``t`` the least integer where
      ``scale * t + shift >= 0``; ``flip = False``.
    * ``scale < 0``: -1 iff ``dot >= t`` with ``t`` the least integer where
      ``scale * t + shift < 0``; ``flip = True``.
    * ``scale == 0``: constant; ``t`` is the int32 max (always -1, when
      ``shift < 0``) or min (always +1), ``flip = False``.

    The affine is evaluated in float64; thresholds are clipped to int32 (beyond
    any reachable dot).  BatchNorm after a binary conv with per-channel alpha
    gives ``scale = alpha * gamma / sqrt(var + eps)``,
    ``shift = beta - mean * gamma / sqrt(var + eps)`` (plus
    ``gamma / sqrt(var + eps) * bias`` when the conv has a bias).

    Parameters
    ----------
    scale, shift : array_like of float
        (M,) finite per-channel coefficients of ``y = scale * dot + shift``.

    Returns
    -------
    thresholds : ndarray
        int32 (M,), for :func:`binary_conv_sign`.
    flip : ndarray
        bool (M,), true where ``scale < 0``.
    """
    scale = np.asarray(scale, dtype=np.float64).ravel()
    shift = np.asarray(shift, dtype=np.float64).ravel()
    if scale.shape != shift.shape or not (np.isfinite(scale).all() and np.isfinite(shift).all()):
        raise ValueError(f"scale and shift must be finite and of the same length; "
                         f"got shapes {scale.shape} and {shift.shape}")
    lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
    thresholds = np.empty(scale.shape, dtype=np.int32)
    flip = scale < 0
    for m, (a, b) in enumerate(zip(scale.tolist(), shift.tolist())):
        if a == 0.0:
            thresholds[m] = hi if b < 0 else lo
            continue
        # g(d): "dot d gives -1" for scale > 0, "dot d gives +1" for scale < 0; true for
        # small d, false for large d.  t is the least integer where g is false.
        g = (lambda d: a * d + b < 0) if a > 0 else (lambda d: not a * d + b < 0)
        t = float(np.clip(np.ceil(-b / a), lo, hi))
        while t > lo and not g(t - 1):
            t -= 1
        while t < hi and g(t):
            t += 1
        thresholds[m] = int(t)
    return thresholds, flip
