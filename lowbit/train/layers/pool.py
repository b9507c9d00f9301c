"""Max and average pooling (square windows)."""
from __future__ import annotations

import numpy as np
from numba import prange

from lowbit.config import jit
from lowbit.train.im2col import col2im, im2col, out_size
from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node


@jit(multithread=True)
def _maxpool_fwd(x, k, s, p, y, arg):
    # x: (M, H, W) with M = N*C; arg holds the flat input index of each max (-1: window all padding)
    m, h, w = x.shape
    oh, ow = y.shape[1], y.shape[2]
    for q in prange(m):
        for a in range(oh):
            for b in range(ow):
                best = -np.inf
                bi = -1
                for i in range(k):
                    r = a * s + i - p
                    if r < 0 or r >= h:
                        continue
                    for j in range(k):
                        c = b * s + j - p
                        if c < 0 or c >= w:
                            continue
                        v = x[q, r, c]
                        if bi < 0 or v > best:
                            best = v
                            bi = r * w + c
                y[q, a, b] = best
                arg[q, a, b] = bi


@jit(multithread=True)
def _maxpool_bwd(dy, arg, dx):
    m, oh, ow = dy.shape
    w = dx.shape[2]
    for q in prange(m):
        for a in range(oh):
            for b in range(ow):
                i = arg[q, a, b]
                if i >= 0:
                    dx[q, i // w, i % w] += dy[q, a, b]


class _WindowPool(Layer):
    """A k x k window with stride (default k) and symmetric padding; subclasses name the ONNX op."""

    op = ""

    def __init__(self, kernel, stride=None, pad=0):
        super().__init__()
        self.k, self.stride, self.pad = kernel, stride or kernel, pad

    def _out_hw(self, h, w):
        return out_size(h, self.k, self.stride, self.pad), out_size(w, self.k, self.stride, self.pad)

    def onnx(self, inputs, output, name, **extra):
        p = self.pad
        return [node(self.op, inputs, [output], name, kernel_shape=[self.k] * 2,
                     strides=[self.stride] * 2, pads=[p] * 4, **extra)], []


class MaxPool(_WindowPool):
    """Max pooling, ONNX ``MaxPool`` (padding never wins the max).

    .. math:: y[n,c,h,w] = \\max_{0 \\le i,j < k} x[n, c, h s + i - p, w s + j - p]

    The gradient goes to the first maximum of each window.
    """

    op = "MaxPool"

    def forward(self, x, train=False):
        n, c, h, w = x.shape
        oh, ow = self._out_hw(h, w)
        xm = np.ascontiguousarray(x).reshape(n * c, h, w)
        y = np.empty((n * c, oh, ow), x.dtype)
        arg = np.empty((n * c, oh, ow), np.int32)
        _maxpool_fwd(xm, self.k, self.stride, self.pad, y, arg)
        self.arg, self.x_shape = (arg, x.shape) if train else (None, None)
        return y.reshape(n, c, oh, ow)

    def backward(self, dy):
        n, c, h, w = self.x_shape
        dx = np.zeros((n * c, h, w), dy.dtype)
        _maxpool_bwd(np.ascontiguousarray(dy).reshape(n * c, *dy.shape[2:]), self.arg, dx)
        self.arg = None
        return (dx.reshape(n, c, h, w),)


class AvgPool(_WindowPool):
    """Average pooling, ONNX ``AveragePool`` with ``count_include_pad=1``.

    .. math:: y[n,c,h,w] = \\frac{1}{k^2} \\sum_{0 \\le i,j < k} x_{pad}[n, c, h s + i, w s + j]
    """

    op = "AveragePool"

    def forward(self, x, train=False):
        n, c, h, w = x.shape
        oh, ow = self._out_hw(h, w)
        cols = im2col(x.reshape(n * c, 1, h, w), self.k, self.k, self.stride, self.pad)
        self.x_shape = x.shape
        return cols.mean(axis=1).reshape(n, c, oh, ow).astype(x.dtype)

    def backward(self, dy):
        n, c, h, w = self.x_shape
        kk = self.k * self.k
        d = dy.reshape(n * c, 1, -1) / np.asarray(kk, dy.dtype)
        dcols = np.broadcast_to(d, (n * c, kk, d.shape[2]))
        dx = col2im(dcols, (n * c, 1, h, w), self.k, self.k, self.stride, self.pad)
        return (dx.reshape(n, c, h, w),)

    def onnx(self, inputs, output, name):
        return super().onnx(inputs, output, name, count_include_pad=1)


class GlobalAvgPool(Layer):
    """Mean over the spatial axes, ONNX ``GlobalAveragePool``.

    .. math:: y[n, c, 0, 0] = \\frac{1}{HW} \\sum_{h, w} x[n, c, h, w]
    """

    def forward(self, x, train=False):
        self.x_shape = x.shape
        return x.mean(axis=(2, 3), keepdims=True).astype(x.dtype)

    def backward(self, dy):
        n, c, h, w = self.x_shape
        return (np.broadcast_to(dy / np.asarray(h * w, dy.dtype), self.x_shape).copy(),)

    def onnx(self, inputs, output, name):
        return [node("GlobalAveragePool", inputs, [output], name)], []
