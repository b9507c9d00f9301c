"""Naive ConvTranspose oracle, written from the ONNX spec, independently of ``lowbit``.

Every input pixel times the kernel is added into a float64 buffer holding
the full (uncropped) result, ``s*(in-1) + output_padding + (k-1)*d + 1``
positions per axis; the output is then the window of that buffer starting
at the begin pad (zeros past the buffer's end, where ``output_shape`` asks
for more), plus the bias.  Plain loops; use small inputs.
"""
from __future__ import annotations

import numpy as np


def _pads_from_output_shape(full, out, auto_pad):
    """Begin pad on one axis when the output size is given (or implied by SAME_*)."""
    total = full - out
    if total <= 0:
        return 0      # asked for more than the full result: nothing cropped, zeros appended
    if auto_pad == "SAME_UPPER":
        return total // 2
    return total - total // 2


def conv_transpose(x, w, b=None, auto_pad="NOTSET", dilations=None, group=1, output_padding=None,
                   output_shape=None, pads=None, strides=None):
    """ONNX ConvTranspose for 1-D or 2-D inputs (float64)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rank = x.ndim - 2
    strides = list(strides or [1] * rank)
    dilations = list(dilations or [1] * rank)
    output_padding = list(output_padding or [0] * rank)
    if rank == 1:
        y = conv_transpose(x[:, :, None, :], w[:, :, None, :], b, auto_pad, [1] + dilations, group,
                           [0] + output_padding, None if output_shape is None else [1] + list(output_shape),
                           None if pads is None else [0, pads[0], 0, pads[1]], [1] + strides)
        return y[:, :, 0, :]
    n, c, h, wid = x.shape
    _, mg, kh, kw = w.shape
    m = mg * group
    cg = c // group
    full_h = strides[0] * (h - 1) + output_padding[0] + (kh - 1) * dilations[0] + 1
    full_w = strides[1] * (wid - 1) + output_padding[1] + (kw - 1) * dilations[1] + 1
    full = np.zeros((n, m, full_h, full_w))
    for ci in range(c):
        g = ci // cg
        for ih in range(h):
            for iw in range(wid):
                for mo in range(mg):
                    for i in range(kh):
                        for j in range(kw):
                            oh = ih * strides[0] + i * dilations[0]
                            ow = iw * strides[1] + j * dilations[1]
                            full[:, g * mg + mo, oh, ow] += x[:, ci, ih, iw] * w[ci, mo, i, j]
    if output_shape is None and auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        output_shape = [h * strides[0], wid * strides[1]]
    if output_shape is not None:
        out_h, out_w = output_shape
        top = _pads_from_output_shape(full_h, out_h, auto_pad)
        left = _pads_from_output_shape(full_w, out_w, auto_pad)
    elif auto_pad == "VALID" or pads is None:
        top = left = 0
        out_h, out_w = full_h, full_w
    else:
        top, left, bottom, right = pads
        out_h, out_w = full_h - top - bottom, full_w - left - right
    y = np.zeros((n, m, out_h, out_w))
    for oh in range(out_h):
        for ow in range(out_w):
            if top + oh < full_h and left + ow < full_w:
                y[:, :, oh, ow] = full[:, :, top + oh, left + ow]
    if b is not None:
        y += np.asarray(b, dtype=np.float64)[None, :, None, None]
    return y
