"""Packing signs into uint64 words, channels last, and back.

Layout: a sign tensor ``(N, C, H, W)`` is stored as uint64 ``(N, H, W, ceil(C/64))``;
channel ``c`` is bit ``c % 64`` of word ``c // 64`` (least significant bit =
lowest channel).  Bit 1 means -1, bit 0 means +1, and the unused high bits of
the last word are 0.  ``sign(x) = -1 if x < 0 else +1``, so 0, -0.0 and NaN
read as +1.
"""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.binary.common import check_packed, n_words


#: Positions per packing task: the run over which the inner loop vectorises.
_PACK_BLOCK = 512


@jit(multithread=True)
def _pack_kernel(x, out):
    """``out[n, i, k] = OR_c (x[n, c, i] < 0) << (c - 64k)`` over the 64 channels of word k.

    ``x`` is (N, C, H*W), ``out`` (N, H*W, words).  One task per (image, word, block
    of positions); each channel's contiguous run of positions is compared, shifted
    and ORed into a local block of words in one vectorised pass.
    """
    n_img, channels, positions = x.shape
    words = out.shape[2]
    blocks = (positions + _PACK_BLOCK - 1) // _PACK_BLOCK
    for task in prange(n_img * words * blocks):
        n = task // (words * blocks)
        k = (task // blocks) % words
        i0 = (task % blocks) * _PACK_BLOCK
        length = min(_PACK_BLOCK, positions - i0)
        acc = np.zeros(length, dtype=np.uint64)
        for c in range(64 * k, min(64 * k + 64, channels)):
            bit = np.uint64(c - 64 * k)
            xs = x[n, c, i0:i0 + length]  # a slice, so the index below is known non-negative
            for i in range(length):
                acc[i] |= np.uint64(xs[i] < 0) << bit
        for i in range(length):
            out[n, i0 + i, k] = acc[i]


@jit(multithread=True)
def _unpack_kernel(packed, out):
    n_img, channels, height, width = out.shape
    for row in prange(n_img * height):
        n = row // height
        h = row - n * height
        for c in range(channels):
            k = c >> 6
            bit = np.uint64(c & 63)
            for w in range(width):
                neg = (packed[n, h, w, k] >> bit) & np.uint64(1)
                out[n, c, h, w] = np.float32(1.0) - np.float32(2.0) * np.float32(neg)


def _real_array(name, x, ndim):
    x = np.asarray(x)
    if x.ndim not in ndim or x.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a real (float or integer) array of rank "
                         f"{' or '.join(map(str, ndim))}; got {x.dtype} with shape {x.shape}")
    if x.dtype not in (np.float32, np.float64) and x.dtype.kind == "f":
        # float16 / long double: not Numba types; their signs, exactly, as int8.
        x = np.where(x < 0, -1, 1).astype(np.int8)
    return np.ascontiguousarray(x)


def _pack4(x):
    n_img, channels, height, width = x.shape
    out = np.empty((n_img, height, width, n_words(channels)), dtype=np.uint64)
    if out.size:
        _pack_kernel(x.reshape(n_img, channels, height * width), out.reshape(n_img, height * width, -1))
    return out


def pack_signs(x):
    """Pack the signs of an NCHW tensor into uint64 words, channels last.

    ``bit(n, h, w, c // 64) >> (c % 64) & 1 = 1  iff  x[n, c, h, w] < 0``,
    i.e. ``sign(x) = -1`` (bit 1) for negative values and ``+1`` (bit 0) for
    everything else, including 0, -0.0 and NaN.  Unused high bits are 0.

    Parameters
    ----------
    x : ndarray
        Real (float or integer) array (N, C, H, W); not modified.

    Returns
    -------
    ndarray
        uint64 (N, H, W, ceil(C / 64)), C-contiguous.
    """
    return _pack4(_real_array("x", x, (4,)))


def pack_signs_2d(x):
    """Pack the signs of a (N, K) matrix, row by row, into uint64 words.

    Bit ``k % 64`` of word ``k // 64`` of row ``n`` is 1 iff ``x[n, k] < 0``
    (``sign(0) = +1``, as in :func:`pack_signs`); unused high bits are 0.

    Parameters
    ----------
    x : ndarray
        Real array (N, K); not modified.

    Returns
    -------
    ndarray
        uint64 (N, ceil(K / 64)).
    """
    x = _real_array("x", x, (2,))
    return _pack4(x[:, :, None, None])[:, 0, 0, :]


def pack_weights(w):
    """Pack the signs of binary-layer weights (the per-channel scale is the caller's).

    ``bit(m, i, j, c // 64) >> (c % 64) & 1 = 1  iff  w[m, c, i, j] < 0``
    (``sign(0) = +1``, as in :func:`pack_signs`); unused high bits are 0.

    Parameters
    ----------
    w : ndarray
        Real array: Conv weights (M, C, kH, kW) or Gemm weights (M, K); not modified.

    Returns
    -------
    ndarray
        uint64 (M, kH, kW, ceil(C / 64)) or (M, ceil(K / 64)).
    """
    w = _real_array("w", w, (2, 4))
    if w.ndim == 2:
        return pack_signs_2d(w)
    return _pack4(w)


def unpack_signs(packed, channels):
    """Expand packed signs back to float32 +-1 (for tests and debugging).

    Parameters
    ----------
    packed : ndarray
        uint64 (N, H, W, ceil(C / 64)) or (N, ceil(K / 64)).
    channels : int
        C (or K), the number of meaningful bits per position.

    Returns
    -------
    ndarray
        float32 (N, C, H, W) (or (N, K)) with ``1 - 2 * bit``.
    """
    packed = np.asarray(packed)
    if packed.ndim == 2:
        return unpack_signs(packed[:, None, None, :], channels)[:, :, 0, 0]
    packed = check_packed("packed", packed, 4)
    channels = int(channels)
    if channels < 0 or packed.shape[3] != n_words(channels):
        raise ValueError(f"{channels} channels need {n_words(channels)} words per position; "
                         f"packed has {packed.shape[3]}")
    n_img, height, width, _ = packed.shape
    out = np.empty((n_img, channels, height, width), dtype=np.float32)
    if out.size:
        _unpack_kernel(packed, out)
    return out
