"""Max pooling of packed signs: the max of +-1 values is the AND of their sign bits."""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.kernels.binary.common import check_packed, n_words, window, word_masks


@jit(multithread=True)
def _max_pool_kernel(x, masks, kh, kw, sh, sw, dh, dw, pt, pl, out):
    n_img, height, width, words = x.shape
    ho, wo = out.shape[1], out.shape[2]
    for task in prange(n_img * ho):
        n = task // ho
        oh = task - n * ho
        for ow in range(wo):
            for k in range(words):
                out[n, oh, ow, k] = masks[k]
            for i in range(kh):
                ih = oh * sh - pt + i * dh
                if ih < 0 or ih >= height:
                    continue
                for j in range(kw):
                    iw = ow * sw - pl + j * dw
                    if iw < 0 or iw >= width:
                        continue
                    for k in range(words):
                        out[n, oh, ow, k] &= x[n, ih, iw, k]


def binary_max_pool(x_packed, *, channels=None, kernel_shape, pads=None, strides=None, dilations=None,
                    ceil_mode=0):
    """ONNX MaxPool on packed signs: output -1 only where every in-bounds tap is -1.

    ``Y[n, oh, ow, k] = AND_{(i, j) in bounds} X[n, oh*sH - pad_top + i*dH, ow*sW - pad_left + j*dW, k]``
    (bit 1 = -1, so the AND of sign bits is the max of the +-1 values).
    Padding never wins: out-of-bounds taps are skipped.  A window with no
    in-bounds tap (only possible with extreme pads or dilations) gives -1, the
    max of an empty set being -inf as in float MaxPool.

    Parameters
    ----------
    x_packed : ndarray
        uint64 (N, H, W, words).
    channels : int, optional
        C; when given, the bits above it are cleared in the output (they are
        0 already when the input follows the packed layout).
    kernel_shape : sequence of int
        (kH, kW).
    pads, strides, dilations, ceil_mode
        As in ONNX MaxPool; ``pads`` is ``[top, left, bottom, right]``.
        ``strides`` defaults to 1 (the ONNX default).

    Returns
    -------
    ndarray
        uint64 (N, oH, oW, words).
    """
    x = check_packed("x_packed", x_packed, 4)
    words = x.shape[3]
    if channels is None:
        masks = np.full(words, np.iinfo(np.uint64).max, dtype=np.uint64)
    else:
        if n_words(channels) != words or int(channels) < 1:
            raise ValueError(f"channels={channels} needs {n_words(channels)} words per position; "
                             f"x_packed has shape {x.shape}")
        masks = word_masks(channels)
    kh, kw, sh, sw, dh, dw, pt, pl, _, _, ho, wo = window(x.shape[1:3], kernel_shape, pads, strides,
                                                          dilations, ceil_mode)
    out = np.empty((x.shape[0], ho, wo, words), dtype=np.uint64)
    if out.size:
        _max_pool_kernel(x, masks, kh, kw, sh, sw, dh, dw, pt, pl, out)
    return out
