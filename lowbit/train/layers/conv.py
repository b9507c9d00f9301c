"""2-D convolution with stride, padding and groups, via im2col + matmul."""
from __future__ import annotations

import numpy as np

from lowbit.train.im2col import col2im, im2col
from lowbit.train.init import he_normal
from lowbit.train.layers.base import Layer
from lowbit.train.layers.onnx_util import node, tensor


class Conv(Layer):
    """Convolution, ONNX ``Conv`` semantics (square kernel, symmetric pad).

    .. math:: y[n, o, h, w] = b_o + \\sum_{c \\in g(o), i, j}
              W[o, c, i, j]\\, x_{pad}[n, c, h s + i, w s + j]

    Parameters
    ----------
    in_ch, out_ch : int
    kernel : int
    stride, pad, groups : int
    rng : numpy.random.Generator
        For He init of W; the bias starts at 0.
    """

    def __init__(self, in_ch, out_ch, kernel, rng, stride=1, pad=0, groups=1, bias=True):
        super().__init__()
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"channels {in_ch}->{out_ch} not divisible by groups={groups}")
        self.k, self.stride, self.pad, self.groups = kernel, stride, pad, groups
        cg = in_ch // groups
        self.params["W"] = he_normal(rng, (out_ch, cg, kernel, kernel), cg * kernel * kernel)
        if bias:
            self.params["b"] = np.zeros(out_ch, np.float32)

    def forward(self, x, train=False):
        W = self.params["W"]
        n, c, h, w = x.shape
        k, s, p, g = self.k, self.stride, self.pad, self.groups
        oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        self.x_shape = x.shape
        cols = im2col(x, k, k, s, p)  # (N, C*K*K, OH*OW), channel-major
        og = W.shape[0] // g
        if g == 1:
            y = np.matmul(W.reshape(W.shape[0], -1), cols)
        else:
            ckk = cols.shape[1] // g
            y = np.empty((n, W.shape[0], oh * ow), dtype=cols.dtype)
            for gi in range(g):
                y[:, gi * og:(gi + 1) * og] = np.matmul(
                    W[gi * og:(gi + 1) * og].reshape(og, -1), cols[:, gi * ckk:(gi + 1) * ckk])
        if "b" in self.params:
            y += self.params["b"][None, :, None]
        self.cols = cols if train else None
        return y.reshape(n, W.shape[0], oh, ow)

    def backward(self, dy):
        W, cols, g = self.params["W"], self.cols, self.groups
        n, o = dy.shape[:2]
        dy = dy.reshape(n, o, -1)
        og, ckk = o // g, cols.shape[1] // g
        if "b" in self.params:
            self.grads["b"] = dy.sum(axis=(0, 2))
        dW = np.empty_like(W)
        # stride 1, one group: dx is a full correlation of dy with the flipped kernel (no scatter)
        fast_dx = self.need_dx and g == 1 and self.stride == 1 and self.pad <= self.k - 1
        dcols = np.empty_like(cols) if self.need_dx and not fast_dx else None
        for gi in range(g):
            dyg = dy[:, gi * og:(gi + 1) * og]
            cg = cols[:, gi * ckk:(gi + 1) * ckk]
            # dW[o, q] = sum_n,p dy[n,o,p] cols[n,q,p]: one GEMM per image, summed (no big transposed copy)
            dW[gi * og:(gi + 1) * og] = np.matmul(dyg, cg.transpose(0, 2, 1)).sum(axis=0).reshape(og, *W.shape[1:])
            if dcols is not None:
                Wg = W[gi * og:(gi + 1) * og].reshape(og, -1)
                dcols[:, gi * ckk:(gi + 1) * ckk] = np.matmul(Wg.T, dyg)
        self.grads["W"] = dW
        self.cols = None
        if fast_dx:
            return (self._dx_transposed(dy),)
        if dcols is None:
            return (None,)
        return (col2im(dcols, self.x_shape, self.k, self.k, self.stride, self.pad),)

    def _dx_transposed(self, dy):
        # dx[n,c,h,w] = sum_o,i,j dy_pad[n,o,h+i,w+j] W[o,c,k-1-i,k-1-j], with dy padded by k-1-p
        W, k, p = self.params["W"], self.k, self.pad
        n, c, h, w = self.x_shape
        oh = h + 2 * p - k + 1
        wf = W[:, :, ::-1, ::-1].transpose(1, 0, 2, 3).reshape(c, -1)
        cols = im2col(dy.reshape(n, W.shape[0], oh, -1), k, k, 1, k - 1 - p)
        return np.matmul(np.ascontiguousarray(wf), cols).reshape(n, c, h, w)

    def onnx(self, inputs, output, name):
        W = self.params["W"]
        ins = [inputs[0], f"{name}.W"]
        inits = [tensor(W, f"{name}.W")]
        if "b" in self.params:
            ins.append(f"{name}.b")
            inits.append(tensor(self.params["b"], f"{name}.b"))
        p = self.pad
        n = node("Conv", ins, [output], name, kernel_shape=[self.k, self.k], strides=[self.stride] * 2,
                 pads=[p, p, p, p], group=self.groups, dilations=[1, 1])
        return [n], inits
