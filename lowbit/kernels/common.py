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


def pool_window(op: str, x, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode) -> tuple:
    """Validate a 1-D or 2-D pool's window and lift 1-D to 2-D (unit height).

    Returns ``(x4, kernel, stride, dilation, begin, end, out_spatial, out_shape)``:
    the 4-D input view, per-axis window attributes and output sizes of the
    2-D pool, and the output shape in the caller's rank.

    Raises
    ------
    ValueError
        Naming the op, the attribute and what it must be.
    """
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: supports 1-D (N, C, L) and 2-D (N, C, H, W) input, got shape {x.shape}")
    if kernel_shape is None:
        raise ValueError(f"{op}: attribute 'kernel_shape' is required")
    rank = x.ndim - 2
    for name, value in (("kernel_shape", kernel_shape), ("strides", strides), ("dilations", dilations)):
        if value is not None and (len(value) != rank or any(int(v) < 1 for v in value)):
            raise ValueError(f"{op}: '{name}' must be {rank} positive ints for input shape {x.shape},"
                             f" got {tuple(value)}")
    if pads is not None and (len(pads) != 2 * rank or any(int(p) < 0 for p in pads)):
        raise ValueError(f"{op}: 'pads' must be {2 * rank} non-negative ints, got {tuple(pads)}")
    kernel, stride, dilation, begin, end, out_spatial = window_attributes(
        x.shape, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    if any(b >= k or e >= k for b, e, k in zip(begin, end, kernel)):
        # As onnxruntime: a pad as wide as the window would make windows of padding only.
        raise ValueError(f"{op}: pads {begin}+{end} must be smaller than kernel_shape {kernel}")
    if any(o < 1 for o in out_spatial):
        raise ValueError(f"{op}: window {kernel} (dilations {dilation}, pads {begin}+{end}) "
                         f"does not fit input shape {x.shape}")
    out_shape = x.shape[:2] + tuple(out_spatial)
    if rank == 1:
        x = x.reshape(x.shape[0], x.shape[1], 1, x.shape[2])
        kernel, stride, dilation = (1,) + kernel, (1,) + stride, (1,) + dilation
        begin, end, out_spatial = (0,) + begin, (0,) + end, (1,) + out_spatial
    return x, kernel, stride, dilation, begin, end, out_spatial, out_shape
