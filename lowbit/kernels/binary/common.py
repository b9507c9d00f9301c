"""Geometry and bit masks shared by the binary window kernels."""
from __future__ import annotations

import numpy as np

from lowbit.kernels.common import output_size

WORD_BITS = 64


def n_words(channels):
    """uint64 words holding ``channels`` sign bits: ``ceil(channels / 64)``."""
    return (int(channels) + WORD_BITS - 1) // WORD_BITS


def word_masks(channels):
    """Per-word masks of the bits that hold channels (the unused high bits are 0)."""
    words = n_words(channels)
    masks = np.full(words, np.iinfo(np.uint64).max, dtype=np.uint64)
    tail = int(channels) - (words - 1) * WORD_BITS
    if words and tail < WORD_BITS:
        masks[-1] = np.uint64((1 << tail) - 1)
    return masks


def check_packed(name, packed, ndim):
    """``packed`` as a C-contiguous uint64 array of rank ``ndim``, or a ValueError."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint64 or packed.ndim != ndim:
        raise ValueError(f"{name} must be a packed uint64 array of rank {ndim}; "
                         f"got {packed.dtype} with shape {packed.shape}")
    return np.ascontiguousarray(packed)


def window(in_hw, kernel_shape, pads, strides, dilations, ceil_mode=0):
    """Normalised 2-D window attributes and the output size.

    Returns ``(kh, kw, sh, sw, dh, dw, pad_top, pad_left, pad_bottom, pad_right, ho, wo)``; ``pads`` is
    ONNX ``[top, left, bottom, right]`` (None: no padding).
    """
    kernel_shape = tuple(int(k) for k in kernel_shape)
    strides = (1, 1) if strides is None else tuple(int(s) for s in strides)
    dilations = (1, 1) if dilations is None else tuple(int(d) for d in dilations)
    pads = (0, 0, 0, 0) if pads is None else tuple(int(p) for p in pads)
    if len(kernel_shape) != 2 or len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
        raise ValueError(f"binary kernels are 2-D: expected kernel_shape, strides, dilations of length 2 "
                         f"and pads of length 4; got {kernel_shape}, {strides}, {dilations}, {pads}")
    if min(kernel_shape) < 1 or min(strides) < 1 or min(dilations) < 1 or min(pads) < 0:
        raise ValueError(f"kernel_shape, strides and dilations must be >= 1 and pads >= 0; "
                         f"got {kernel_shape}, {strides}, {dilations}, {pads}")
    ho = output_size(in_hw[0], kernel_shape[0], strides[0], dilations[0], pads[0], pads[2], ceil_mode)
    wo = output_size(in_hw[1], kernel_shape[1], strides[1], dilations[1], pads[1], pads[3], ceil_mode)
    if ho < 1 or wo < 1:
        raise ValueError(f"window {kernel_shape} (dilations {dilations}, pads {pads}) does not fit "
                         f"the input {tuple(in_hw)}: output would be {ho}x{wo}")
    return (*kernel_shape, *strides, *dilations, *pads, ho, wo)
