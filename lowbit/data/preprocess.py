"""Turn stored images into the float32 NCHW arrays a model takes."""
from __future__ import annotations

import numpy as np

from lowbit.errors import InputError


def preprocess(images, mean=None, std=None):
    """Convert images to float32, channel axis first, optionally normalised.

    uint8 images are scaled to [0, 1]; float images are taken as they are:

    .. math:: x = \\frac{u / 255 - \\mu}{\\sigma}

    Parameters
    ----------
    images : numpy.ndarray
        uint8 ``(N, H, W)`` or ``(N, H, W, C)``, or float ``(N, C, H, W)``
        (already channel-first; only cast and normalised).
    mean, std : float or sequence of float, optional
        Per-channel (or scalar) mean and standard deviation applied after
        scaling; ``None`` leaves the values as they are.

    Returns
    -------
    numpy.ndarray
        float32 ``(N, C, H, W)``, C-contiguous.
    """
    images = np.asarray(images)
    if images.dtype == np.uint8:
        if images.ndim == 3:
            x = images[:, None, :, :]
        elif images.ndim == 4:
            x = images.transpose(0, 3, 1, 2)
        else:
            raise InputError(f"uint8 images have shape {images.shape}; expected (N, H, W) or (N, H, W, C)")
        x = x.astype(np.float32) * np.float32(1.0 / 255.0)
    elif np.issubdtype(images.dtype, np.floating):
        if images.ndim != 4:
            raise InputError(f"float images have shape {images.shape}; expected (N, C, H, W)")
        x = images.astype(np.float32)
    else:
        raise InputError(f"images have dtype {images.dtype}; expected uint8 (N,H,W[,C]) or float (N,C,H,W)")
    channels = x.shape[1]
    if mean is not None:
        x = x - per_channel(mean, channels, "mean")
    if std is not None:
        s = per_channel(std, channels, "std")
        if np.any(s <= 0):
            raise InputError(f"std must be positive; got {std}")
        x = x / s
    return np.ascontiguousarray(x, dtype=np.float32)


def per_channel(value, channels, what):
    """``value`` (a scalar or one value per channel) as float32 ``(1, C or 1, 1, 1)``; InputError otherwise."""
    try:
        v = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{what} {value!r} is not a number or a list of numbers") from None
    if v.size not in (1, channels):
        raise InputError(f"{what} has {v.size} values; expected 1 or {channels} (one per channel)")
    return v.reshape(1, -1, 1, 1)


def labels(y, count=None):
    """Check and convert labels to int64 ``(N,)``.

    Parameters
    ----------
    y : array_like
        Integer class labels, shape ``(N,)``.
    count : int, optional
        Number of images they belong to; a mismatch raises InputError.

    Returns
    -------
    numpy.ndarray
        int64 ``(N,)``.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"labels have shape {y.shape} and dtype {y.dtype}; expected integer (N,)")
    if count is not None and y.shape[0] != count:
        raise InputError(f"{y.shape[0]} labels for {count} images; expected one label per image")
    if y.size and y.min() < 0:
        raise InputError(f"labels contain negative values (min {y.min()}); expected class indices >= 0")
    return y.astype(np.int64)
