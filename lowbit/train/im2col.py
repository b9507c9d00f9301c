"""im2col / col2im: turn a convolution into one matrix product per image.

Layout used throughout the trainer: ``cols[n, (c, i, j), (oh, ow)] =
xpad[n, c, oh*s + i, ow*s + j]`` -- the (C*KH*KW, OH*OW) matrix of image n.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def out_size(size, k, stride, pad):
    """Output length :math:`\\lfloor (L + 2p - k) / s \\rfloor + 1`."""
    return (size + 2 * pad - k) // stride + 1


def pad_input(x, pad, value=0.0):
    if pad == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), constant_values=value)


def im2col(x, kh, kw, stride, pad):
    """Columns of a (N, C, H, W) batch.

    Returns
    -------
    numpy.ndarray
        ``(N, C*KH*KW, OH*OW)``, C-contiguous.
    """
    n, c = x.shape[:2]
    xp = pad_input(x, pad)
    win = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = win.shape[2], win.shape[3]
    cols = np.ascontiguousarray(win.transpose(0, 1, 4, 5, 2, 3))
    return cols.reshape(n, c * kh * kw, oh * ow)


def col2im(cols, x_shape, kh, kw, stride, pad):
    """Adjoint of :func:`im2col`: scatter-add columns back into an image batch.

    .. math:: dx[n, c, oh s + i - p, ow s + j - p] \\mathrel{+}= cols[n, (c,i,j), (oh,ow)]
    """
    n, c, h, w = x_shape
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    cols = cols.reshape(n, c, kh, kw, oh, ow)
    dxp = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += cols[:, :, i, j]
    if pad:
        return dxp[:, :, pad:pad + h, pad:pad + w]
    return dxp
