"""Naive numpy oracles for the fp32 non-GEMM kernels.

Written from the ONNX spec, independently of ``lowbit.kernels``: plain Python
loops, explicit padding, float64 arithmetic.  Slow on purpose; use small
inputs.  Each function takes the op's inputs and ONNX attributes and returns
a float64 (or integer) array; the tests compare it with the kernels under a
tolerance.
"""
from __future__ import annotations

import math

import numpy as np


# --- elementwise ----------------------------------------------------------------------------

def _broadcast_loop(fn, *arrays):
    """Apply ``fn`` to every output position, each input indexed numpy-style."""
    rank = max(a.ndim for a in arrays)
    padded = [a.reshape((1,) * (rank - a.ndim) + a.shape) for a in arrays]
    out_shape = []
    for axis in range(rank):
        dims = {p.shape[axis] for p in padded} - {1}
        assert len(dims) <= 1, f"shapes do not broadcast: {[a.shape for a in arrays]}"
        out_shape.append(dims.pop() if dims else 1)
    dtype = np.result_type(*arrays)
    dtype = np.float64 if np.issubdtype(dtype, np.floating) else dtype
    out = np.zeros(out_shape, dtype=dtype)
    for index in np.ndindex(*out_shape):
        values = []
        for p in padded:
            src = tuple(i if p.shape[axis] > 1 else 0 for axis, i in enumerate(index))
            v = p[src]
            values.append(float(v) if np.issubdtype(dtype, np.floating) else int(v))
        out[index] = fn(*values)
    return out


def _div_scalar(x, y):
    if isinstance(x, int):
        # C semantics: truncate toward zero.
        q = abs(x) // abs(y)
        return q if (x < 0) == (y < 0) else -q
    if y == 0:
        return math.nan if x == 0 or math.isnan(x) else math.copysign(math.inf, x) * math.copysign(1.0, y)
    return x / y


def add(a, b):
    return _broadcast_loop(lambda x, y: x + y, a, b)


def sub(a, b):
    return _broadcast_loop(lambda x, y: x - y, a, b)


def mul(a, b):
    return _broadcast_loop(lambda x, y: x * y, a, b)


def div(a, b):
    return _broadcast_loop(_div_scalar, a, b)


def sum_(*inputs):
    return _broadcast_loop(lambda *v: sum(v), *inputs)


# --- activations ----------------------------------------------------------------------------

def _map(fn, x):
    out = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        out[index] = fn(float(x[index]))
    return out


def relu(x):
    return _map(lambda v: v if v > 0 else 0.0, x)


def leaky_relu(x, alpha=0.01):
    return _map(lambda v: v if v >= 0 else alpha * v, x)


def clip(x, lo=None, hi=None):
    def one(v):
        if lo is not None and v < float(np.asarray(lo).reshape(-1)[0]):
            v = float(np.asarray(lo).reshape(-1)[0])
        if hi is not None and v > float(np.asarray(hi).reshape(-1)[0]):
            v = float(np.asarray(hi).reshape(-1)[0])
        return v
    return _map(one, x)


def sigmoid(x):
    return _map(lambda v: 1.0 / (1.0 + math.exp(-v)) if v > -700 else 0.0, x)


def tanh(x):
    return _map(math.tanh, x)


def hard_sigmoid(x, alpha=0.2, beta=0.5):
    return _map(lambda v: min(1.0, max(0.0, alpha * v + beta)), x)


def hard_swish(x):
    return _map(lambda v: v * min(1.0, max(0.0, v / 6.0 + 0.5)), x)


# --- pooling --------------------------------------------------------------------------------

def pool_geometry(size, kernel, stride, dilation, pad_begin, pad_end, auto_pad, ceil_mode):
    """Output length and the (begin, end) pads of one spatial axis, from the spec."""
    span = (kernel - 1) * dilation + 1
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = -(-size // stride)
        total = max(0, (out - 1) * stride + span - size)
        if auto_pad == "SAME_UPPER":
            pad_begin, pad_end = total // 2, total - total // 2
        else:
            pad_begin, pad_end = total - total // 2, total // 2
        return out, pad_begin, pad_end
    if auto_pad == "VALID":
        pad_begin = pad_end = 0
    room = size + pad_begin + pad_end - span
    if ceil_mode:
        out = -(-room // stride) + 1
        # A last window that would start in the end padding is dropped (onnxruntime, PyTorch).
        if (out - 1) * stride >= size + pad_begin:
            out -= 1
    else:
        out = room // stride + 1
    return out, pad_begin, pad_end


def _pool2d(x, reduce, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode):
    """Pool by explicit padding: each input plane is copied into a grid whose
    cells are tagged real (1), padding (0) or overhang past the padding (-1)."""
    n, c, height, width = x.shape
    strides = strides or (1, 1)
    dilations = dilations or (1, 1)
    pads = pads or (0, 0, 0, 0)
    oh, top, bottom = pool_geometry(height, kernel_shape[0], strides[0], dilations[0], pads[0], pads[2],
                                    auto_pad, ceil_mode)
    ow, left, right = pool_geometry(width, kernel_shape[1], strides[1], dilations[1], pads[1], pads[3],
                                    auto_pad, ceil_mode)
    # Grid big enough for every window the output asks for.
    grid_h = max(top + height + bottom, (oh - 1) * strides[0] + (kernel_shape[0] - 1) * dilations[0] + 1)
    grid_w = max(left + width + right, (ow - 1) * strides[1] + (kernel_shape[1] - 1) * dilations[1] + 1)
    tag = -np.ones((grid_h, grid_w), dtype=np.int64)
    tag[:top + height + bottom, :left + width + right] = 0
    tag[top:top + height, left:left + width] = 1
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    for i in range(n):
        for j in range(c):
            grid = np.zeros((grid_h, grid_w), dtype=np.float64)
            grid[top:top + height, left:left + width] = x[i, j]
            for r in range(oh):
                for s in range(ow):
                    values, tags = [], []
                    for a in range(kernel_shape[0]):
                        for b in range(kernel_shape[1]):
                            gr = r * strides[0] + a * dilations[0]
                            gc = s * strides[1] + b * dilations[1]
                            values.append(grid[gr, gc])
                            tags.append(tag[gr, gc])
                    out[i, j, r, s] = reduce(values, tags)
    return out


def _as_2d(x, kernel_shape, strides, dilations, pads):
    """Lift a 1-D pool to a 2-D pool of height 1."""
    if x.ndim == 4:
        return x, kernel_shape, strides, dilations, pads
    x = x[:, :, None, :]
    strides = (1, strides[0]) if strides else None
    dilations = (1, dilations[0]) if dilations else None
    pads = (0, pads[0], 0, pads[1]) if pads else None
    return x, (1, kernel_shape[0]), strides, dilations, pads


def max_pool(x, kernel_shape, strides=None, dilations=None, pads=None, auto_pad="NOTSET", ceil_mode=0):
    one_d = x.ndim == 3
    x, kernel_shape, strides, dilations, pads = _as_2d(x, kernel_shape, strides, dilations, pads)

    def reduce(values, tags):
        real = [v for v, t in zip(values, tags) if t == 1]
        return max(real) if real else -math.inf

    out = _pool2d(x, reduce, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    return out[:, :, 0, :] if one_d else out


def average_pool(x, kernel_shape, strides=None, dilations=None, pads=None, auto_pad="NOTSET", ceil_mode=0,
                 count_include_pad=0):
    one_d = x.ndim == 3
    x, kernel_shape, strides, dilations, pads = _as_2d(x, kernel_shape, strides, dilations, pads)

    def reduce(values, tags):
        total = sum(v for v, t in zip(values, tags) if t == 1)
        counted = sum(1 for t in tags if t == 1 or (count_include_pad and t == 0))
        return total / counted

    out = _pool2d(x, reduce, kernel_shape, strides, dilations, pads, auto_pad, ceil_mode)
    return out[:, :, 0, :] if one_d else out


def global_average_pool(x):
    n, c = x.shape[:2]
    out = np.zeros((n, c) + (1,) * (x.ndim - 2))
    for i in range(n):
        for j in range(c):
            out[(i, j) + (0,) * (x.ndim - 2)] = sum(float(v) for v in x[i, j].ravel()) / x[i, j].size
    return out


def global_max_pool(x):
    n, c = x.shape[:2]
    out = np.zeros((n, c) + (1,) * (x.ndim - 2))
    for i in range(n):
        for j in range(c):
            out[(i, j) + (0,) * (x.ndim - 2)] = max(float(v) for v in x[i, j].ravel())
    return out


# --- normalization --------------------------------------------------------------------------

def batch_normalization(x, scale, b, mean, var, epsilon=1e-5):
    out = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        ch = index[1]
        out[index] = (float(scale[ch]) * (float(x[index]) - float(mean[ch]))
                      / math.sqrt(float(var[ch]) + epsilon) + float(b[ch]))
    return out


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    channels = x.shape[1]
    lo_off = math.floor((size - 1) / 2)
    hi_off = math.ceil((size - 1) / 2)
    out = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(*x.shape):
        ch = index[1]
        square_sum = 0.0
        for other in range(max(0, ch - lo_off), min(channels - 1, ch + hi_off) + 1):
            v = float(x[(index[0], other) + index[2:]])
            square_sum += v * v
        out[index] = float(x[index]) / (bias + alpha / size * square_sum) ** beta
    return out


# --- softmax --------------------------------------------------------------------------------

def _softmax_rows(rows, log):
    out = np.zeros(rows.shape, dtype=np.float64)
    for r in range(rows.shape[0]):
        row = [float(v) for v in rows[r]]
        peak = max(row)
        exps = [math.exp(v - peak) for v in row]
        total = sum(exps)
        for k, v in enumerate(row):
            out[r, k] = (v - peak - math.log(total)) if log else exps[k] / total
    return out


def softmax(x, axis=-1, legacy_flatten=0, log=False):
    """Softmax (or log-softmax) as rows: move/flatten the normalised axes last."""
    axis %= x.ndim
    if legacy_flatten:
        rows = x.reshape(int(np.prod(x.shape[:axis])), -1)
        return _softmax_rows(rows, log).reshape(x.shape)
    moved = np.moveaxis(x, axis, -1)
    rows = moved.reshape(-1, x.shape[axis])
    return np.moveaxis(_softmax_rows(rows, log).reshape(moved.shape), -1, axis)


def log_softmax(x, axis=-1, legacy_flatten=0):
    return softmax(x, axis, legacy_flatten, log=True)
