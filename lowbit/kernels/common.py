"""Helpers shared by the windowed kernels (Conv and the pools)."""
from __future__ import annotations

import math


def resolve_pads(spatial_shape, kernel_shape, strides, dilations, pads, auto_pad):
    """Explicit begin/end pads for a windowed op, following the ONNX spec.

    Parameters
    ----------
    spatial_shape : sequence of int
        Input spatial dims ``(H, W)`` (or ``(L,)``, ``(D, H, W)``).
    kernel_shape, strides, dilations : sequence of int
        Per spatial axis.
    pads : sequence of int or None
        ONNX layout ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]``.
    auto_pad : str
        ``NOTSET`` (use ``pads``), ``VALID`` (no padding), ``SAME_UPPER`` or
        ``SAME_LOWER`` (output size ``ceil(in / stride)``; the odd pad goes at
        the end for UPPER, at the beginning for LOWER).

    Returns
    -------
    begin, end : tuple of int
        Pads per spatial axis.
    """
    rank = len(spatial_shape)
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad not in ("NOTSET", "", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise ValueError(f"unknown auto_pad {auto_pad!r}; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(spatial_shape, kernel_shape, strides, dilations):
            out = -(-size // s)
            total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
            small, big = total // 2, total - total // 2
            if auto_pad == "SAME_UPPER":
                begin.append(small), end.append(big)
            else:
                begin.append(big), end.append(small)
        return tuple(begin), tuple(end)
    if auto_pad == "VALID" or pads is None:
        return (0,) * rank, (0,) * rank
    return tuple(int(p) for p in pads[:rank]), tuple(int(p) for p in pads[rank:])


def output_size(size, kernel, stride, dilation, pad_begin, pad_end, ceil_mode=0):
    """Output length of one spatial axis of a windowed op.

    ``out = floor_or_ceil((size + pad_begin + pad_end - ((kernel-1)*dilation + 1)) / stride) + 1``;
    with ``ceil_mode`` the last window must still start inside the input or the
    begin padding (PyTorch and onnxruntime drop a window starting in the end pad).
    """
    span = (kernel - 1) * dilation + 1
    numerator = size + pad_begin + pad_end - span
    if ceil_mode:
        out = math.ceil(numerator / stride) + 1
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
    else:
        out = numerator // stride + 1
    return int(out)


def window_attributes(x_shape, kernel_shape, strides=None, dilations=None, pads=None,
                      auto_pad="NOTSET", ceil_mode=0):
    """Normalise the window attributes of Conv/MaxPool/AveragePool.

    Returns ``(kernel_shape, strides, dilations, pads_begin, pads_end, out_shape)``
    with every entry a tuple of ints over the spatial axes of ``x_shape``.
    """
    spatial = tuple(int(s) for s in x_shape[2:])
    rank = len(spatial)
    kernel_shape = tuple(int(k) for k in kernel_shape)
    strides = tuple(int(s) for s in strides) if strides is not None else (1,) * rank
    dilations = tuple(int(d) for d in dilations) if dilations is not None else (1,) * rank
    begin, end = resolve_pads(spatial, kernel_shape, strides, dilations, pads, auto_pad)
    out_shape = tuple(
        output_size(spatial[i], kernel_shape[i], strides[i], dilations[i], begin[i], end[i], ceil_mode)
        for i in range(rank)
    )
    return kernel_shape, strides, dilations, begin, end, out_shape


def conv_shapes(op: str, x_shape, w_shape, group, kernel_shape) -> tuple:
    """Validate a 2-D Conv's input/weight shapes; return ``(N, C, H, W, M, C/group, kH, kW, group)``.

    Raises
    ------
    ValueError
        Naming the op, the shapes given and what they must satisfy.
    """
    if len(x_shape) != 4 or len(w_shape) != 4:
        raise ValueError(f"{op}: supports 1-D and 2-D convolutions (input (N, C, H, W) with weights"
                         f" (M, C/group, kH, kW)); got input {tuple(x_shape)} and weights {tuple(w_shape)}")
    n_img, c_in, h, w_in = x_shape
    m_out, cg, kh, kw = w_shape
    group = int(group)
    if group < 1 or c_in != cg * group or m_out % group != 0:
        raise ValueError(f"{op}: group={group} does not fit input channels {c_in} and weights {tuple(w_shape)}:"
                         f" need C == C/group * group and M divisible by group")
    if kernel_shape is not None and tuple(int(k) for k in kernel_shape) != (kh, kw):
        raise ValueError(f"{op}: kernel_shape {tuple(kernel_shape)} disagrees with weights {tuple(w_shape)}")
    return n_img, c_in, h, w_in, m_out, cg, kh, kw, group
